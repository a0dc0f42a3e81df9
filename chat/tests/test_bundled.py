"""The bundled model file (chat/backends/bundled.py): the Q8_0 encoding derived from the
package's Q4_1 file, once, safely when several processes start together."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.backends import bundled
from chat.backends.llama_runtime import LlamaRuntime
from chat.backends.registry import bundled_model_path

ROOT = Path(__file__).resolve().parents[2]


def file_type(path: Path) -> str:
    """What llama.cpp reads the file as, e.g. 'llama ?B Q8_0'."""
    import llama_cpp
    from llama_cpp import _internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = False
    model = _internals.LlamaModel(path_model=str(path), params=params, verbose=True)
    try:
        return model.desc()
    finally:
        model.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_q4_1_is_the_shipped_file_as_it_is(tmp_path: Path) -> None:
    assert bundled.bundled_model_path("q4_1", [tmp_path]) == bundled.shipped_path()
    assert not list(tmp_path.iterdir())  # nothing derived
    assert bundled.shipped_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "Q4_1" in file_type(bundled.shipped_path())


def test_an_unknown_encoding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="q8_0, q4_1"):
        bundled.bundled_model_path("q2_k", [tmp_path])


def test_q8_0_is_derived_once_into_the_first_writable_directory_and_then_reused(tmp_path: Path) -> None:
    first, second = tmp_path / "ro-file", tmp_path / "cache"
    first.write_text("a file where a directory should be")  # mkdir fails: the next one is used
    path = bundled.bundled_model_path("q8_0", [first, second])
    assert path == second / bundled.derived_name()
    assert "Q8_0" in file_type(path)
    assert sorted(p.name for p in second.iterdir()) == sorted([path.name, path.name + ".lock"])  # no temporary left
    stamp = path.stat().st_mtime_ns
    assert bundled.bundled_model_path("q8_0", [first, second]) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not derived again


def test_a_file_already_in_a_later_directory_is_used_without_deriving(tmp_path: Path) -> None:
    empty, holding = tmp_path / "empty", tmp_path / "holding"
    holding.mkdir()
    (holding / bundled.derived_name()).write_bytes(b"GGUF")
    assert bundled.bundled_model_path("q8_0", [empty, holding]) == holding / bundled.derived_name()
    assert not empty.exists()


def test_the_derived_file_is_the_same_bytes_every_time_and_the_installed_one(tmp_path: Path) -> None:
    one = bundled.derive(bundled.shipped_path(), tmp_path / "one" / "model.gguf")
    two = bundled.derive(bundled.shipped_path(), tmp_path / "two" / "model.gguf")
    assert sha256(one) == sha256(two)
    installed = bundled.install_dir() / bundled.derived_name()
    assert installed.is_file(), "`make install` derives the Q8_0 file into the virtual environment"
    assert sha256(installed) == sha256(one)


def test_processes_starting_together_derive_one_file(tmp_path: Path) -> None:
    # Four model processes start at once on a machine where `make install` did not derive it.
    code = (
        "import logging, sys; from pathlib import Path; from chat.backends import bundled; "
        "logging.basicConfig(level=logging.INFO); print(bundled.bundled_model_path('q8_0', [Path(sys.argv[1])]))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    expected = tmp_path / bundled.derived_name()
    assert {out.decode().strip() for out, _ in outputs} == {str(expected)}
    assert sum("Derived" in err.decode() for _, err in outputs) == 1  # the others waited, then found it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([expected.name, expected.name + ".lock"])
    assert "Q8_0" in file_type(expected)


def test_a_failed_derivation_leaves_nothing_and_the_shipped_file_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_model = tmp_path / "broken.gguf"
    not_a_model.write_bytes(b"not a GGUF file")
    with pytest.raises(OSError, match="llama_model_quantize"):
        bundled.derive(not_a_model, tmp_path / "out" / "model.gguf")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.gguf.lock"]  # no partial file

    monkeypatch.setattr(bundled, "shipped_path", lambda: not_a_model)  # the quantizer refuses it
    with caplog.at_level(logging.WARNING, logger="chat.backends.bundled"):
        assert bundled.bundled_model_path("q8_0", [tmp_path / "cache"]) == not_a_model
    assert "could not be derived" in caplog.text
    assert not (tmp_path / "cache" / bundled.derived_name()).exists()


def test_the_setting_chooses_the_encoding(settings: object, tmp_path: Path) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "BUNDLED_ENCODING": "q4_1"}  # type: ignore[attr-defined]
    assert bundled_model_path() == str(bundled.shipped_path())
    settings.GHOSTGPT = {**settings.GHOSTGPT, "BUNDLED_ENCODING": "q8_0"}  # type: ignore[attr-defined]
    assert "Q8_0" in file_type(Path(bundled_model_path()))
    runtime = LlamaRuntime.load(Path(bundled_model_path()), n_ctx=256, n_threads=1)
    assert runtime is not None


def test_a_bad_encoding_setting_stops_the_process_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "ghostgpt.settings", "GHOSTGPT_BUNDLED_ENCODING": "f"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert ImproperlyConfigured.__name__ in result.stderr
    assert "GHOSTGPT_BUNDLED_ENCODING must be one of q8_0, q4_1" in result.stderr
