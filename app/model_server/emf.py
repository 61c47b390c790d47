"""CloudWatch metrics without an agent: Embedded Metric Format (EMF) lines on stdout.

The task's `awslogs` log driver sends stdout to CloudWatch Logs, which turns each EMF line into metric data
points. To cost nothing per request, each worker aggregates in memory and writes one line at most every
METRICS_INTERVAL_SECONDS (10), or sooner once a metric has collected MAX_VALUES distinct values, using EMF's
`Values`/`Counts` arrays (a value and how many times it was seen). Latencies are rounded to two significant
digits first, so a busy interval still fits a few lines.

Metrics, in namespace METRICS_NAMESPACE (default ModelServing) with the one dimension ServiceName =
METRICS_SERVICE_NAME (default model-server):
- InferenceLatency (Milliseconds): per /predict request, from handing its rows to the model (batch wait
  included) to having its probabilities;
- BatchSize (Count): instances per model call (1 per request with batching off);
- InFlightRequests (Count): requests the whole task is handling, sampled every second by each worker
  (each sample is the task's total, so the Average statistic is the per-task value target tracking needs).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_NAMESPACE = "ModelServing"
DEFAULT_SERVICE_NAME = "model-server"
DIMENSION = "ServiceName"
LATENCY, BATCH_SIZE, IN_FLIGHT = "InferenceLatency", "BatchSize", "InFlightRequests"
UNITS = {LATENCY: "Milliseconds", BATCH_SIZE: "Count", IN_FLIGHT: "Count"}
DEFAULT_INTERVAL_SECONDS = 10.0
MAX_VALUES = 100  # EMF allows at most 100 values in one metric's array
MAX_UNCOUNTED = 10_000  # values kept uncounted at most (counted at once beyond), so memory stays bounded


def two_significant_digits(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 0.0
    return round(value, 1 - math.floor(math.log10(value)))


class EmfPublisher:
    """Aggregates metric values and writes them as EMF JSON lines through `write` (one line per call)."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, service_name: str = DEFAULT_SERVICE_NAME,
                 interval_seconds: float = DEFAULT_INTERVAL_SECONDS, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.namespace, self.service_name, self.interval = namespace, service_name, interval_seconds
        self.write = write or _stdout_line
        self.clock = clock
        self.values: dict[str, Counter[float]] = {name: Counter() for name in UNITS}
        # Per request only an append: values are rounded and counted in `_count`, before any line is written.
        self.unrecorded: dict[str, list[float]] = {name: [] for name in UNITS}
        self.last_flush = clock()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> EmfPublisher:
        env = os.environ if env is None else env
        interval = float(env.get("METRICS_INTERVAL_SECONDS", "") or DEFAULT_INTERVAL_SECONDS)
        if not 0 < interval <= 60:
            raise ValueError(f"METRICS_INTERVAL_SECONDS={interval} must be above 0 and at most 60")
        return cls(env.get("METRICS_NAMESPACE", "") or DEFAULT_NAMESPACE,
                   env.get("METRICS_SERVICE_NAME", "") or DEFAULT_SERVICE_NAME, interval)

    def record(self, name: str, value: float) -> None:
        unrecorded = self.unrecorded[name]
        unrecorded.append(value)
        if len(unrecorded) >= MAX_UNCOUNTED:
            self._count()

    def _count(self) -> None:
        """Round and count the values recorded since the last call; a metric that reaches MAX_VALUES distinct
        values has a line written at once."""
        for name, unrecorded in self.unrecorded.items():
            values = self.values[name]
            for value in unrecorded:
                values[two_significant_digits(value) if name == LATENCY else float(value)] += 1
                if len(values) >= MAX_VALUES:
                    self._write()
            unrecorded.clear()

    def latency_ms(self, milliseconds: float) -> None:
        self.record(LATENCY, milliseconds)

    def batch_size(self, rows: int) -> None:
        self.record(BATCH_SIZE, rows)

    def in_flight(self, requests: float) -> None:
        self.record(IN_FLIGHT, requests)

    def tick(self) -> None:
        """Flush if the interval has passed (called every second)."""
        self._count()
        if self.clock() - self.last_flush >= self.interval:
            self._write()

    def flush(self) -> None:
        self._count()
        self._write()

    def _write(self) -> None:
        self.last_flush = self.clock()
        line = self.document()
        for values in self.values.values():
            values.clear()
        if line is not None:
            self.write(json.dumps(line, separators=(",", ":")))

    def document(self) -> dict[str, Any] | None:
        """The EMF document of the values counted so far, or None when there are none."""
        present = [name for name, values in self.values.items() if values]
        if not present:
            return None
        document: dict[str, Any] = {
            "_aws": {"Timestamp": int(self.clock() * 1000), "CloudWatchMetrics": [{
                "Namespace": self.namespace, "Dimensions": [[DIMENSION]],
                "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in present]}]},
            DIMENSION: self.service_name,
        }
        for name in present:
            values = sorted(self.values[name].items())
            document[name] = {"Values": [v for v, _ in values], "Counts": [c for _, c in values]}
        return document


def _stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
