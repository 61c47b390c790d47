"""Prometheus metrics: requests, latency, requests in flight, predictions, model readiness.

Under gunicorn every worker is a separate process, so prometheus_client runs in multiprocess mode: each worker
writes its samples to files in `PROMETHEUS_MULTIPROC_DIR` (gunicorn_conf.py puts it on the scratch volume,
under the temp directory) and `/metrics` aggregates them, whichever worker answers. Without that variable
(tests, a single process) the default registry is used.

Each sample written there takes a lock and a write to a memory-mapped file, four per request, which the
benchmark measured as a visible share of a request's CPU. So a request only appends (method, route, status,
seconds) to a list, and a few times a second (`publish`, also called before this worker renders /metrics) the
worker counts them and adds the counts to Prometheus: another worker's last fraction of a second may be
missing from a scrape, never lost.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import Counter as Tally
from pathlib import Path

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
from prometheus_client.mmap_dict import MmapedDict

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

IN_FLIGHT = Gauge("http_requests_in_flight", "Requests being handled, sum over the workers (each sets its own "
                  "count every second).", multiprocess_mode="livesum")
# Status recorded for a request whose client closed the connection before any answer was sent (nginx's code):
# nothing was answered, so it is neither a success nor a server error.
CLIENT_CLOSED = 499


# Methods are labels too: anything else a client sends is "other", so made-up methods add no series either.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Not yet published: the answered requests as (method, route, status, seconds), and the instances predicted.
_answered: list[tuple[str, str, int, float]] = []
_predictions = [0]
# The server calls everything here on its event loop; in-process tests also run apps on other threads, so two
# publishers must not count the same requests twice.
_publishing = threading.Lock()
MAX_UNPUBLISHED = 20_000  # published at once beyond this, so memory stays bounded without the publishing loop


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request (published within PUBLISH_SECONDS of main.py)."""
    _answered.append((method, route, status, seconds))
    if len(_answered) >= MAX_UNPUBLISHED:
        publish()


def predicted(instances: int) -> None:
    _predictions[0] += instances


def publish() -> None:
    """Add what was counted since the last call to the Prometheus metrics."""
    # Held to the end, so a render right after a publish elsewhere sees all it added, not part.
    with _publishing:
        # Take only what is there now: an append meanwhile (from another thread) stays for the next call.
        taken = len(_answered)
        answered = _answered[:taken]
        del _answered[:taken]
        predictions, _predictions[0] = _predictions[0], 0
        requests: Tally[tuple[str, str, int]] = Tally()
        # Per (method, route): the count in each latency bucket (the last one +Inf), then the latencies' sum.
        latencies_by_route: dict[tuple[str, str], list[float]] = {}
        for sent_method, route, status, seconds in answered:
            method = sent_method if sent_method in METHODS else OTHER_ROUTE
            requests[(method, route, status)] += 1
            latencies = latencies_by_route.get((method, route))
            if latencies is None:
                latencies = latencies_by_route[(method, route)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            latencies[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= it
            latencies[-1] += seconds
        for (method, route, status), count in requests.items():
            REQUESTS.labels(method, route, str(status)).inc(count)
        for (method, route), latencies in latencies_by_route.items():
            histogram = LATENCY.labels(method, route)
            # Histogram.observe for many values at once: its buckets (+Inf last) and sum, by their own counters.
            for bucket, in_bucket in zip(histogram._buckets, latencies[:-1], strict=True):
                if in_bucket:
                    bucket.inc(in_bucket)
            histogram._sum.inc(latencies[-1])
        if predictions:
            PREDICTIONS.inc(predictions)


def protocol_rejection(status: int) -> None:
    """A request refused before it reached the app (oversized or slow head, invalid HTTP): counted by status."""
    REQUESTS.labels("unknown", OTHER_ROUTE, str(status)).inc()


def task_in_flight() -> float:
    """Requests in flight in the whole task: the sum of every live worker's gauge."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return float(IN_FLIGHT._value.get())  # a single process: its own gauge
    total = 0.0
    for path in Path(directory).glob("gauge_livesum_*.db"):
        try:
            values = MmapedDict.read_all_values_from_file(str(path))
        except (OSError, ValueError):
            continue  # a worker's file that is being created or removed
        total += sum(value for key, value, _, _ in values if key.startswith('["http_requests_in_flight"'))
    return total


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics and its content type."""
    publish()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
