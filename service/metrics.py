"""``GET /metrics``: the service in Prometheus text, with prometheus_client.

Per app (its own registry, so two apps in one process do not share counts): requests and their latency
by route template (``/v1/profiles/{profile}/search``, never the raw path: one series per endpoint, not
per profile or id) and status; queries per encoded batch; and, read when scraped, the adapters held in
memory and their bytes, and each loaded index's rows.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    def __init__(self, resources: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("qualia_http_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("qualia_http_request_seconds", "time to answer an HTTP request", ["endpoint", "method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.batch = Histogram("qualia_encode_batch_queries", "queries encoded together in one batch",
                               buckets=BATCH_BUCKETS, registry=self.registry)  # fmt: skip
        self.registry.register(_ResourceCollector(resources))
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # (endpoint, method, status) -> its children

    def observe(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        """One request answered. Each series' children are looked up once (``labels`` checks and locks at
        every call); endpoints are route templates, so the series are few."""
        series = self._series.get((endpoint, method, status))
        if series is None:
            series = self._series[(endpoint, method, status)] = (self.requests.labels(endpoint, method, status),
                                                                  self.latency.labels(endpoint, method))  # fmt: skip
        series[0].inc()
        series[1].observe(seconds)

    def answer(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _ResourceCollector:
    """What the service holds, read at scrape time."""

    def __init__(self, resources: Any) -> None:
        self.resources = resources

    def collect(self):
        adapters = GaugeMetricFamily("qualia_adapters_loaded", "profiles' adapters held in memory (unmerged)")
        adapters.add_metric([], len(self.resources.adapters))
        adapter_bytes = GaugeMetricFamily("qualia_adapter_bytes", "bytes of the adapters held in memory")
        adapter_bytes.add_metric([], self.resources.adapters.nbytes)
        rows = GaugeMetricFamily("qualia_index_rows", "rows of each loaded index", labels=["profile", "modality"])
        for profile, index in self.resources.loaded_indexes().items():
            for modality, count in (index.manifest.get("count_by_modality") or {}).items():
                rows.add_metric([profile, modality], count)
        yield from (adapters, adapter_bytes, rows)


def _endpoint(scope: Scope) -> str:
    """The template of the route that answered (the router records it in the scope), else "unmatched":
    404s of unknown paths are one series, whatever the path."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(_endpoint(scope), scope.get("method", ""), str(status["code"]),
                                 time.perf_counter() - started)  # fmt: skip


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text: requests and latency by endpoint and status, queries per batch, adapters, indexes."""
    return request.app.state.metrics.answer()
