"""The release check (infra/release_check/check.py) against tiny servers on 127.0.0.1: a right model passes; wrong
answers, failed requests, slow answers and an unreachable listener fail the hook. tests/test_app_server.py runs
it against the real reference server too."""

import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from infra.release import SMOKE_SET
from infra.release_check import check
from tests.local_http import serving

SMOKE = check.load_smoke(SMOKE_SET)
ANSWERS = {tuple(row): label for case in SMOKE["requests"] for row, label in zip(case["instances"], case["labels"],
                                                                                   strict=True)}
LABELS = len(ANSWERS)


def model(label_of: Callable[[list[float]], str], delay: Callable[[], float] = lambda: 0.0,
          status: Callable[[], int] = lambda: 200) -> Callable[[str, bytes], tuple[int, bytes]]:
    """A /predict that labels each row with `label_of`, after `delay()` seconds, with HTTP `status()`."""

    def respond(path: str, body: bytes) -> tuple[int, bytes]:
        assert path == "/predict"
        time.sleep(delay())
        rows = json.loads(body)["instances"]
        return status(), json.dumps({"model": {"name": "m", "version": "1"}, "predictions": [
            {"label": label_of(row), "probabilities": {}} for row in rows]}).encode()

    return respond


def right(row: list[float]) -> str:
    return ANSWERS[tuple(row)]


def config(port: int, **overrides: float) -> check.Config:
    values = {"min_accuracy_percent": 90.0, "p99_ms": 1000.0, "timeout_seconds": 2.0, **overrides}
    return check.Config(url=f"http://127.0.0.1:{port}", **values)


Respond = Callable[[str, bytes], tuple[int, bytes]]
_current: list[Respond] = []


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """One server for the module; each test sets how it answers."""
    def respond(path: str, body: bytes) -> tuple[int, bytes]:
        return _current[-1](path, body)

    with serving(lambda _: (404, b""), respond) as listening:
        yield listening


@pytest.fixture
def outcome(port: int) -> Callable[..., tuple[check.Result, list[str]]]:
    def run(respond: Respond, **overrides: float) -> tuple[check.Result, list[str]]:
        _current.append(respond)
        cfg = config(port, **overrides)
        result = check.run(cfg, SMOKE)
        return result, result.problems(cfg)

    return run


Outcome = Callable[..., tuple[check.Result, list[str]]]


def test_a_right_model_passes(outcome: Outcome) -> None:
    result, problems = outcome(model(right))
    assert problems == []
    assert (result.right, result.labels, len(result.latencies_ms)) == (LABELS, LABELS, len(SMOKE["requests"]))


def test_wrong_answers_below_the_threshold_fail_and_above_it_pass(outcome: Outcome) -> None:
    setosa = sum(label == "setosa" for label in ANSWERS.values())
    _, problems = outcome(model(lambda _: "setosa"))
    assert problems == [f"{setosa} of {LABELS} labels right ({100 * setosa / LABELS:.1f}%), below 90%"]
    _, lenient = outcome(model(lambda _: "setosa"), min_accuracy_percent=100 * setosa / LABELS)
    assert lenient == []


def test_a_failed_request_fails_whatever_the_accuracy(outcome: Outcome) -> None:
    calls = iter(range(100))
    _, problems = outcome(model(right, status=lambda: 503 if next(calls) == 1 else 200), min_accuracy_percent=0)
    assert len(problems) == 1 and problems[0].startswith("request 1 answered HTTP 503")


def test_an_answer_without_one_prediction_per_row_fails(outcome: Outcome) -> None:
    def respond(path: str, body: bytes) -> tuple[int, bytes]:
        return 200, json.dumps({"predictions": [{"label": "setosa"}]}).encode()  # one, whatever was sent

    _, problems = outcome(respond, min_accuracy_percent=0)
    assert problems and all("predictions for 3 rows" in p for p in problems)


def test_slow_answers_fail_on_p99_and_pass_within_it(outcome: Outcome) -> None:
    calls = iter(range(100))
    slow = model(right, delay=lambda: 0.05 if next(calls) == 0 else 0.0)  # one slow request: the p99 of five
    result, problems = outcome(slow, p99_ms=30)
    assert result.p99_ms >= 50 and problems == [f"p99 latency {result.p99_ms:.0f} ms exceeds 30 ms"]
    _, within = outcome(model(right), p99_ms=1000)
    assert within == []


def test_a_request_slower_than_its_timeout_fails(outcome: Outcome) -> None:
    calls = iter(range(100))
    _, problems = outcome(model(right, delay=lambda: 0.06 if next(calls) == 0 else 0.0), timeout_seconds=0.03,
                          p99_ms=60000, min_accuracy_percent=0)
    # The next request may queue behind the slow one on this one-thread server and time out as well.
    assert problems[0].startswith("request 0 failed: ") and all("timed out" in p for p in problems)


def test_an_unreachable_test_listener_fails() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = config(port)
    result = check.run(cfg, SMOKE)
    problems = result.problems(cfg)
    assert len(problems) == len(SMOKE["requests"]) + 1  # every request, then the accuracy
    assert all("ConnectionRefusedError" in p for p in problems[:-1])


@pytest.mark.parametrize(("label_of", "status"), [(right, "SUCCEEDED"), (lambda _: "virginica", "FAILED")])
def test_the_handler_answers_ecs_with_a_hook_status(label_of: Callable[[list[float]], str], status: str, port: int,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(check, "SMOKE_FILE", SMOKE_SET)  # packaged beside check.py as smoke.json
    _current.append(model(label_of))
    for key, value in {"TEST_URL": f"http://127.0.0.1:{port}/", "MIN_ACCURACY_PERCENT": "90",
                       "P99_MS": "1000"}.items():
        monkeypatch.setenv(key, value)
    answer = check.handler({"serviceArn": "arn:aws:ecs:us-east-1:1:service/c/s"})
    assert answer == {"hookStatus": status}
    logged = json.loads(capsys.readouterr().out)
    assert logged["service"] == "arn:aws:ecs:us-east-1:1:service/c/s" and logged["requests"] == len(SMOKE["requests"])
    assert bool(logged["problems"]) == (status == "FAILED")
