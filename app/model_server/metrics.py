"""Prometheus metrics: requests, latency, predictions, model readiness.

Under gunicorn every worker is a separate process, so prometheus_client runs in multiprocess mode: each worker
writes its samples to files in `PROMETHEUS_MULTIPROC_DIR` (gunicorn_conf.py puts it on the scratch volume,
under the temp directory) and `/metrics` aggregates them, whichever worker answers. Without that variable
(tests, a single process) the default registry is used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

# Labelled by route, never by raw path: a scanner probing random URLs must not create unbounded series.
ROUTES = frozenset({"/health", "/predict", "/metrics"})
OTHER_ROUTE = "other"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("http_requests_total", "HTTP requests answered, by method, route and status code.",
                   ("method", "route", "status"))
LATENCY = Histogram("http_request_duration_seconds", "Time from request to the end of the response, by route.",
                    ("method", "route"), buckets=LATENCY_BUCKETS)
PREDICTIONS = Counter("model_predictions_total", "Instances the model predicted (a request may carry several).")
MODEL_LOADED = Gauge("model_loaded", "1 once this process has loaded the model, else 0 (minimum over workers).",
                     multiprocess_mode="livemin")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response and times it, errors included."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started is answered with a 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else OTHER_ROUTE
            method = scope["method"]
            LATENCY.labels(method, route).observe(time.perf_counter() - start)
            REQUESTS.labels(method, route, str(status)).inc()


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
