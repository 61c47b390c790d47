"""The release check: ECS runs it as a Lambda lifecycle hook once the green revision holds all test traffic.

It sends every request of the smoke set (smoke.json beside this file, app/smoke/requests.json in the repository)
to the test listener and answers ECS with {"hookStatus": "SUCCEEDED"} only when every request answered 200 with
one prediction per row, at least MIN_ACCURACY_PERCENT of the labels came back right, and the p99 latency stayed
within P99_MS. Anything else answers FAILED, and ECS rolls the release back before production traffic moves.

Standard library only (urllib), so the package is this file and the smoke set.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMOKE_FILE = Path(__file__).resolve().parent / "smoke.json"
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Config:
    url: str  # the test listener, e.g. http://<alb dns>:9000
    min_accuracy_percent: float
    p99_ms: float
    timeout_seconds: float = REQUEST_TIMEOUT_SECONDS

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        return cls(url=env["TEST_URL"].rstrip("/"), min_accuracy_percent=float(env["MIN_ACCURACY_PERCENT"]),
                   p99_ms=float(env["P99_MS"]),
                   timeout_seconds=float(env.get("REQUEST_TIMEOUT_SECONDS", REQUEST_TIMEOUT_SECONDS)))


@dataclass
class Result:
    failures: list[str] = field(default_factory=list)  # requests that did not answer as the contract says
    latencies_ms: list[float] = field(default_factory=list)
    right: int = 0
    labels: int = 0

    @property
    def accuracy_percent(self) -> float:
        return 100.0 * self.right / self.labels if self.labels else 0.0

    @property
    def p99_ms(self) -> float:
        """Nearest-rank p99 (with a few requests, the slowest)."""
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0

    def problems(self, config: Config) -> list[str]:
        found = list(self.failures)
        if self.labels and self.accuracy_percent < config.min_accuracy_percent:
            found.append(f"{self.right} of {self.labels} labels right ({self.accuracy_percent:.1f}%), below "
                         f"{config.min_accuracy_percent:g}%")
        if self.p99_ms > config.p99_ms:
            found.append(f"p99 latency {self.p99_ms:.0f} ms exceeds {config.p99_ms:g} ms")
        if not self.labels and not found:
            found.append("the smoke set has no labelled rows")
        return found


def load_smoke(path: Path | None = None) -> dict[str, Any]:
    smoke: dict[str, Any] = json.loads((path or SMOKE_FILE).read_text())
    return smoke


def _tls() -> ssl.SSLContext:
    """The certificate chain is verified; its names are not: the URL is the load balancer's own DNS name, which
    the stack's certificate (issued for the service's domain) does not list."""
    context = ssl.create_default_context()
    context.check_hostname = False
    return context


def _post(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    context = _tls() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def run(config: Config, smoke: dict[str, Any]) -> Result:
    result = Result()
    url = config.url + smoke.get("path", "/predict")
    for index, case in enumerate(smoke["requests"]):
        labels = list(case["labels"])
        result.labels += len(labels)
        started = time.perf_counter()
        try:
            status, body = _post(url, json.dumps({"instances": case["instances"]}).encode(), config.timeout_seconds)
        except (OSError, ValueError) as error:  # refused, unreachable, timed out, reset
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            result.failures.append(f"request {index} failed: {type(reason).__name__}: {reason}")
            continue
        finally:
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            result.failures.append(f"request {index} answered HTTP {status}: {body[:200]!r}")
            continue
        try:
            answered = [p["label"] for p in json.loads(body)["predictions"]]
        except (ValueError, KeyError, TypeError):
            result.failures.append(f"request {index} answered 200 without predictions: {body[:200]!r}")
            continue
        if len(answered) != len(labels):
            result.failures.append(f"request {index} answered {len(answered)} predictions for {len(labels)} rows")
            continue
        result.right += sum(got == want for got, want in zip(answered, labels, strict=True))
    return result


def handler(event: dict[str, Any], context: object = None) -> dict[str, str]:
    """The ECS lifecycle hook: SUCCEEDED lets the release continue, FAILED rolls it back."""
    config = Config.from_environment()
    result = run(config, load_smoke())
    problems = result.problems(config)
    # One line each for the function's log group: what was checked and why it failed.
    print(json.dumps({"service": event.get("serviceArn"), "revision": event.get("targetServiceRevisionArn"),
                      "url": config.url, "requests": len(result.latencies_ms), "accuracyPercent":
                      round(result.accuracy_percent, 1), "p99Ms": round(result.p99_ms, 1), "problems": problems}))
    return {"hookStatus": "FAILED" if problems else "SUCCEEDED"}
