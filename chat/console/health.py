"""Model and upstream health for the operators' console, from what GhostGPT already keeps:
the backends' own state (readiness, queue, deployments' circuits and probes) and this node's
Prometheus metrics (chat.metrics) — requests and errors, latency and time-to-first-token
percentiles, decode speed, failovers. Counts are since the processes started (what
/metrics says); percentiles are estimated from the histogram buckets as Prometheus's
histogram_quantile does. With several nodes, GHOSTGPT_METRICS_NODES lists the others'
/metrics, and their samples are added to this node's."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any

import httpx
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from chat.backends import registry
from chat.metrics import node_registry
from chat.models import AgentConnection

logger = logging.getLogger(__name__)
NODE_SECONDS = 3.0


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """`q` of a histogram given as sorted (upper bound, cumulative count) pairs; linear
    within the bucket, like Prometheus. None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def _other_nodes() -> list[Any]:
    """The metric families of the nodes in GHOSTGPT_METRICS_NODES; a node that does not
    answer in time is left out (and logged), never a failure of the page."""
    token = settings.GHOSTGPT["METRICS_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    families: list[Any] = []
    for url in settings.GHOSTGPT["METRICS_NODES"]:
        try:
            response = httpx.get(url, headers=headers, timeout=NODE_SECONDS)
            response.raise_for_status()
            families += text_string_to_metric_families(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("metrics of node %s: %s", url, type(exc).__name__)
    return families


class _Samples:
    """The metric samples of this node (every process of it in multiprocess mode) and of the
    other nodes configured, summed, indexed by name and one label."""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for family in [*node_registry().collect(), *_other_nodes()]:
            for sample in family.samples:
                self.values[sample.name].append((sample.labels, sample.value))

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for labels, value in self.values.get(name, []):
            if all(labels.get(k) == v for k, v in match.items()):
                totals[labels.get(label, "")] += value
        return totals

    def buckets(self, name: str, model: str) -> list[tuple[float, float]]:
        counts: dict[float, float] = defaultdict(float)
        for labels, value in self.values.get(f"{name}_bucket", []):
            if labels.get("model") == model:
                counts[float(labels["le"])] += value
        return sorted(counts.items())


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def model_health() -> list[dict[str, Any]]:
    samples = _Samples()
    requests = samples.by("ghostgpt_requests_total", "model")
    server_errors: dict[str, float] = defaultdict(float)
    for labels, value in samples.values.get("ghostgpt_requests_total", []):
        if labels.get("status", "").startswith("5"):
            server_errors[labels.get("model", "")] += value
    upstream_errors = samples.by("ghostgpt_upstream_errors_total", "model")
    failovers = samples.by("ghostgpt_failovers_total", "model")
    decoded = samples.by("ghostgpt_decoded_tokens_total", "model")
    decode_seconds = samples.by("ghostgpt_decode_seconds_total", "model")
    tokens_in = samples.by("ghostgpt_tokens_total", "model", direction="in")
    tokens_out = samples.by("ghostgpt_tokens_total", "model", direction="out")
    agents = _agents_by_model()
    rows = []
    for info, backend in registry.all_models():
        model = info.id
        state, detail = backend.readiness()
        stats = backend.stats() or {}
        ttft = samples.buckets("ghostgpt_time_to_first_token_seconds", model)
        total = samples.buckets("ghostgpt_generation_seconds", model)
        served = requests.get(model, 0.0)
        rows.append(
            {
                "model": model,
                "owned_by": info.owned_by,
                "state": state,
                "detail": detail,
                "requests": int(served),
                "errors": int(server_errors.get(model, 0.0)),
                "error_rate": round(server_errors.get(model, 0.0) / served, 4) if served else None,
                "upstream_errors": int(upstream_errors.get(model, 0.0)),
                "failovers": int(failovers.get(model, 0.0)),
                "ttft_p50": _seconds(_quantile(0.5, ttft)),
                "ttft_p95": _seconds(_quantile(0.95, ttft)),
                "total_p50": _seconds(_quantile(0.5, total)),
                "total_p95": _seconds(_quantile(0.95, total)),
                "tokens_per_second": (
                    round(decoded[model] / decode_seconds[model], 1) if decode_seconds.get(model) else None
                ),
                "tokens_in": int(tokens_in.get(model, 0.0)),
                "tokens_out": int(tokens_out.get(model, 0.0)),
                "running": stats.get("running"),
                "queue": stats.get("waiting"),
                "deployments": [_deployment(d) for d in stats.get("deployments", [])],  # type: ignore[attr-defined]
                "agents": agents.get(model, 0),
            }
        )
    return rows


def _deployment(stats: dict[str, Any]) -> dict[str, Any]:
    keep = ("deployment", "circuit", "probe", "requests", "errors", "latency_ms")
    return {name: stats.get(name) for name in keep}


def _agents_by_model() -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for model_ids in AgentConnection.objects.filter(disconnected_at__isnull=True).values_list("model_ids", flat=True):
        for model in model_ids or []:
            counts[str(model)] += 1
    return counts
