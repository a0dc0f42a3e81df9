"""Prometheus metrics (the official `prometheus_client`). One process: the default
registry. Several (`make up`): set PROMETHEUS_MULTIPROC_DIR to a directory every process of
the node shares, and `/metrics` aggregates them (gauges sum the live processes).

`/metrics` answers loopback clients (the client address as resolved through trusted proxies,
so nginx on loopback does not make every visitor local) or a bearer `GHOSTGPT_METRICS_TOKEN`.
"""

from __future__ import annotations

import atexit
import hmac
import os
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from chat.network import client_address

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("ghostgpt_requests_total", "HTTP requests answered.", ["route", "method", "status", "model"])
RESPONSE_START = Histogram(
    "ghostgpt_response_start_seconds",
    "From the request to its response head (a whole JSON answer; a stream's headers).",
    ["route"],
    buckets=LATENCY,
)
FIRST_TOKEN = Histogram(
    "ghostgpt_time_to_first_token_seconds", "From the request to the first generated token.", ["model"], buckets=LATENCY
)
GENERATION = Histogram(
    "ghostgpt_generation_seconds", "From the request to the end of its generation.", ["model"], buckets=LATENCY
)
TOKENS = Counter("ghostgpt_tokens_total", "Tokens billed.", ["model", "direction"])
COST = Counter("ghostgpt_cost_total", "Money billed, in the configured currency.", ["model"])
UPSTREAM_ERRORS = Counter("ghostgpt_upstream_errors_total", "Failed upstream attempts.", ["model", "upstream"])
RESPONSE_CACHE = Counter(
    "ghostgpt_response_cache_total", "Requests that asked for the response cache, by result.", ["model", "result"]
)
FAILOVERS = Counter("ghostgpt_failovers_total", "Requests served by another deployment after a failure.", ["model"])
LIVE_STREAMS = Gauge("ghostgpt_live_streams", "SSE responses streaming now.", multiprocess_mode="livesum")
AGENTS = Gauge("ghostgpt_agents_connected", "Dial-in agents connected now.", multiprocess_mode="livesum")
QUEUE_DEPTH = Gauge(
    "ghostgpt_queue_depth",
    "Generations waiting for an embedded model instance.",
    ["model"],
    multiprocess_mode="livesum",
)
DECODED_TOKENS = Counter("ghostgpt_decoded_tokens_total", "Tokens decoded by the embedded model.", ["model"])
DECODE_SECONDS = Counter(
    "ghostgpt_decode_seconds_total",
    "Seconds the embedded model spent generating (decode tokens/s = rate of tokens / rate of this).",
    ["model"],
)
CIRCUIT_OPEN = Gauge(
    "ghostgpt_upstream_circuit_open",
    "1 while an upstream deployment's circuit is open (skipped after repeated failures).",
    ["deployment"],
    multiprocess_mode="livemax",
)
JOBS = Counter("ghostgpt_jobs_total", "Tool jobs finished.", ["tool", "outcome"])
JOB_SECONDS = Histogram("ghostgpt_job_seconds", "Tool job run time.", ["tool"], buckets=(*LATENCY, 300, 600))


def allowed(request: HttpRequest) -> bool:
    token = settings.GHOSTGPT["METRICS_TOKEN"]
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    address = client_address(request.META)
    return address is not None and address.is_loopback


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse(
            '{"error": {"message": "Metrics are served to loopback clients or with GHOSTGPT_METRICS_TOKEN.", '
            '"type": "permission_error", "param": null, "code": "forbidden"}}',
            status=403,
            content_type="application/json",
        )
    return HttpResponse(generate_latest(node_registry()), content_type=CONTENT_TYPE_LATEST)


def node_registry() -> CollectorRegistry:
    """This node's metrics: this process's, or every process's of the node in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def serve_as_one_of_the_node() -> None:
    """In multiprocess mode, for a serving process: the live gauges of processes of the node
    that died without saying so (SIGKILL, OOM) are dropped now, and this process's are
    dropped when it exits, so `livesum`/`livemax` count live processes only. Counters and
    histograms of dead processes stay: what they counted happened."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    dead = set()
    for path in Path(folder).glob("gauge_live*_*.db"):
        named = path.stem.rsplit("_", 1)[-1]
        if named.isdigit() and int(named) != os.getpid() and not _alive(int(named)):
            dead.add(int(named))
    for pid in dead:
        multiprocess.mark_process_dead(pid, folder)
    atexit.register(multiprocess.mark_process_dead, os.getpid(), folder)
