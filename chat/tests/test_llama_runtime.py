"""Loading the embedded model's runtime (chat/backends/llama_runtime.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chat.backends.llama_runtime import LlamaRuntime
from chat.backends.registry import bundled_model_path


def test_loading_the_model_leaves_the_process_stdout_and_stderr_alone(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # The model loads in a background thread while the server starts and serves: pointing
    # file descriptors 1 and 2 at /dev/null meanwhile silenced every other thread's logs.
    redirected: list[int] = []
    dup2 = os.dup2

    def recording_dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        redirected.append(fd2)
        return dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", recording_dup2)
    runtime = LlamaRuntime.load(Path(bundled_model_path()), n_ctx=256, n_threads=1)
    assert runtime is not None
    assert not {1, 2} & set(redirected)
    assert "llama_model_loader" not in capfd.readouterr().err  # llama.cpp's info lines stay quiet
