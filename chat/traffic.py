"""Live traffic for the operators' console: every web process samples what it sees —
requests answered since the last sample, SSE streams open, generations queued for an
embedded model, agents connected — every GHOSTGPT_TRAFFIC_SAMPLE_SECONDS on its own
thread, and stores one TrafficSample row per sample (chat.console.selectors.traffic_series
sums the processes). The values are read from this process's own Prometheus metrics
(chat.metrics), so the chart and /metrics cannot disagree. Samples are aligned to whole
intervals, so the processes of a node write the same timestamps; rows older than two hours
are deleted as new ones arrive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from django.db import close_old_connections

from chat.metrics import AGENTS, LIVE_STREAMS, QUEUE_DEPTH, REQUESTS
from chat.models import TrafficSample

logger = logging.getLogger(__name__)
KEEP = timedelta(hours=2)


def _sum(metric: object, suffix: str = "") -> float:
    """This process's value of a metric, all labels summed (`collect()` reads this
    process's values in multiprocess mode too)."""
    total = 0.0
    for family in metric.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name == family.name + suffix:
                total += sample.value
    return total


class TrafficSampler:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.process = f"{socket.gethostname()}:{os.getpid()}"[:100]
        self._stop = threading.Event()
        self._requests = _sum(REQUESTS, "_total")
        self._last = time.time()
        self.thread = threading.Thread(target=self._run, name="traffic-sampler", daemon=True)

    def start(self) -> TrafficSampler:
        if self.interval > 0:
            self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval - time.time() % self.interval):
            try:
                self.sample()
            except Exception:  # the database may be away for a moment; the next sample retries
                logger.exception("traffic sample failed")
            finally:
                close_old_connections()

    def sample(self) -> TrafficSample:
        now = time.time()
        at = round(now / self.interval) * self.interval if self.interval > 0 else now  # woken a hair early
        requests = _sum(REQUESTS, "_total")
        sample = TrafficSample.objects.create(
            at=datetime.fromtimestamp(at, tz=UTC),
            process=self.process,
            seconds=max(now - self._last, 0.001),
            requests=max(int(requests - self._requests), 0),
            streams=max(int(_sum(LIVE_STREAMS)), 0),
            queue=max(int(_sum(QUEUE_DEPTH)), 0),
            agents=max(int(_sum(AGENTS)), 0),
        )
        self._requests, self._last = requests, now
        TrafficSample.objects.filter(at__lt=sample.at - KEEP).delete()
        return sample
