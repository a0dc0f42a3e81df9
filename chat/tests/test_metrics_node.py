"""Multiprocess metrics on one node: a process killed without a word (SIGKILL, OOM) leaves its
live gauges behind; the next serving process drops them, while the counters stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess

from chat.metrics import serve_as_one_of_the_node

CHILD = """
import os
from prometheus_client import Counter, Gauge
Gauge("ghostgpt_live_streams", "x", multiprocess_mode="livesum").set(5)
Counter("ghostgpt_requests", "x").inc(3)
os._exit(0)  # no atexit: as after a SIGKILL
"""


def samples(folder: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return {s.name: s.value for family in registry.collect() for s in family.samples}


def test_a_dead_process_live_gauges_are_dropped_and_its_counters_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run([sys.executable, "-c", CHILD], env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, check=True)
    assert samples(tmp_path) == {"ghostgpt_live_streams": 5.0, "ghostgpt_requests_total": 3.0}
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    serve_as_one_of_the_node()
    assert samples(tmp_path) == {"ghostgpt_requests_total": 3.0}
