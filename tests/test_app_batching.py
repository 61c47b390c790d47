"""Adaptive micro-batching and where the model runs: a lone request goes at once, concurrent ones share a model
call, a batch respects its size and wait bounds, and each request keeps its own result or error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import numpy as np
import pytest

from model_server.batching import Batcher, BatchSettings, Runner
from model_server.emf import EmfPublisher
from model_server.main import create_app
from model_server.model import LoadedModel, load_model
from model_server.scope import BODY_COMPLETE, REQUESTS_IN_FLIGHT
from tests.app_support import JSON, Message, call, run, running, trained_model_dir

SETOSA = [5.1, 3.5, 1.4, 0.2]


class Recorder:
    """A stand-in model: probabilities of 1/3 each; records each call."""

    feature_limits: tuple[float, ...] | None = (10.0,) * 4

    def __init__(self, cost_ms: float = 0.01):
        self.calls: list[int] = []
        self.threads: list[str] = []
        self.cost_ms = (cost_ms, 0.0)

    def estimated_ms(self, rows: int) -> float:
        return self.cost_ms[0]

    def probabilities(self, rows: Any) -> Any:
        self.calls.append(len(rows))
        self.threads.append(threading.current_thread().name)
        return np.full((len(rows), 3), 1 / 3)


def batcher(model: Recorder, **settings: Any) -> Batcher:
    return Batcher(Runner(model, inline_max_ms=2.0), BatchSettings(**settings))  # type: ignore[arg-type]


def rows(n: int, first: float = 1.0) -> Any:
    return np.array([[first, 2.0, 3.0, 4.0]] * n)


def test_a_lone_request_goes_at_once_however_long_the_batch_may_wait() -> None:
    model = Recorder()

    async def scenario() -> float:
        b = batcher(model, max_size=64, max_wait_ms=60_000)
        b.arrive()
        started = time.perf_counter()
        result = await b.score(rows(1))
        assert result.shape == (1, 3)
        return time.perf_counter() - started

    assert run(scenario()) < 1.0
    assert model.calls == [1]


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows() -> None:
    model = Recorder()

    async def scenario() -> list[Any]:
        b = batcher(model, max_size=64, max_wait_ms=60_000)
        for _ in range(4):
            b.arrive()  # four requests in flight, reading their bodies
        return list(await asyncio.gather(b.score(rows(1)), b.score(rows(3)), b.score(rows(2)), b.score(rows(1))))

    results = run(scenario())
    assert model.calls == [7]  # the last one to submit closed the batch: nobody else was in flight
    assert [len(r) for r in results] == [1, 3, 2, 1]


def test_a_batch_never_exceeds_its_size_and_requests_wait_while_the_model_is_busy() -> None:
    model = Recorder()

    async def scenario() -> None:
        b = batcher(model, max_size=4, max_wait_ms=2_000)
        for _ in range(6):
            b.arrive()
        await asyncio.gather(*(b.score(rows(n)) for n in (2, 2, 1, 3, 1, 5)))

    run(scenario())
    assert model.calls == [4, 4, 1, 5]  # a request larger than the maximum still goes, alone
    assert sum(model.calls) == 14


def test_a_batch_waits_at_most_its_maximum_for_a_request_still_in_flight() -> None:
    model = Recorder()

    async def scenario() -> float:
        b = batcher(model, max_size=64, max_wait_ms=50)
        b.arrive()
        b.arrive()  # this one never submits (a slow client)
        started = time.perf_counter()
        await b.score(rows(1))
        return time.perf_counter() - started

    waited = run(scenario())
    assert 0.04 <= waited < 1.0
    assert model.calls == [1]


class NanForMinusOne:
    """An estimator the server cannot derive limits for: NaN probabilities for a row whose first value is -1."""

    def predict_proba(self, rows: Any) -> Any:
        out = np.full((len(rows), 3), 1 / 3)
        out[rows[:, 0] == -1] = np.nan
        return out


def test_a_lone_request_the_model_cannot_score_is_422_on_the_spot_too() -> None:
    info = load_model(trained_model_dir()).info
    app = create_app(lambda: LoadedModel(NanForMinusOne(), info), batch=BatchSettings(max_size=64))

    async def scenario() -> Any:
        async with running(app) as server:
            alone = {REQUESTS_IN_FLIGHT: {"this request"}, BODY_COMPLETE: True}
            return await call(server, "POST", "/predict", headers=JSON, scope_extra=alone,
                              body=json.dumps({"instances": [SETOSA, [-1, 1, 1, 1]]}).encode())

    status, _, body = run(scenario())
    assert status == 422 and [e["loc"] for e in body["errors"]] == [["instances", 1]]


@pytest.mark.parametrize("max_size", [1, 64], ids=["batching off", "batching on"])
def test_an_unscorable_row_fails_only_its_own_request(max_size: int) -> None:
    lines: list[str] = []
    info = load_model(trained_model_dir()).info
    app = create_app(lambda: LoadedModel(NanForMinusOne(), info), emf=EmfPublisher(write=lines.append),
                     batch=BatchSettings(max_size=max_size, max_wait_ms=1000))
    gate = asyncio.Event()

    def gated(instances: list[Any]) -> Any:
        async def receive() -> Message:
            await gate.wait()  # every request is in flight before any body arrives
            return {"type": "http.request", "body": json.dumps({"instances": instances}).encode(), "more_body": False}
        return receive

    async def scenario() -> list[Any]:
        async with running(app) as server:
            assert server.state.model is not None and server.state.model.feature_limits is None
            pending = [asyncio.create_task(call(server, "POST", "/predict", gated(instances), JSON))
                       for instances in ([SETOSA, SETOSA], [SETOSA, [-1, 1, 1, 1]], [SETOSA])]
            await asyncio.sleep(0.01)
            gate.set()
            return list(await asyncio.gather(*pending))

    (ok, _, ok_body), (bad, _, bad_body), (also_ok, _, _) = run(scenario())
    assert (ok, bad, also_ok) == (200, 422, 200)
    assert bad_body["errors"] == [{"loc": ["instances", 1], "msg": "the model's output is not finite",
                                   "type": "unscorable"}]
    assert ok_body["predictions"][0]["probabilities"] == {name: 0.333333 for name in info.class_names}
    batch_sizes = json.loads(lines[-1])["BatchSize"]
    assert batch_sizes == ({"Values": [5.0], "Counts": [1]} if max_size > 1  # one call for all three
                           else {"Values": [1.0, 2.0], "Counts": [1, 2]})


@pytest.mark.parametrize(("cost_ms", "runs_on"), [(0.3, "MainThread"), (5.0, "model_0")])
def test_the_model_runs_on_the_loop_when_its_measured_cost_is_small_else_on_its_own_thread(
        cost_ms: float, runs_on: str) -> None:
    model = Recorder(cost_ms)
    runner = Runner(model, inline_max_ms=2.0)  # type: ignore[arg-type]
    run(runner.probabilities(rows(1)))
    runner.close()
    assert model.threads == [runs_on]


def test_calibration_measures_the_real_model_within_its_budget() -> None:
    loaded = load_model(trained_model_dir())
    started = time.perf_counter()
    per_call, per_row = loaded.calibrate(budget_ms=5, repeats=3)
    assert per_call > 0 and per_row >= 0
    assert loaded.estimated_ms(1000) == pytest.approx(per_call + 1000 * per_row)
    assert time.perf_counter() - started < 1.0  # a few calls of at most the budget each, not 1,000-row ones


def test_batching_settings_come_from_the_environment_and_bad_values_are_refused() -> None:
    assert BatchSettings.from_environment({}) == BatchSettings(64, 2.0, 2.0)
    assert BatchSettings.from_environment({"BATCH_MAX_SIZE": "1"}).enabled is False
    assert BatchSettings.from_environment({"BATCH_MAX_SIZE": "16", "BATCH_MAX_WAIT_MS": "0.5",
                                           "PREDICT_INLINE_MAX_MS": "0"}) == BatchSettings(16, 0.5, 0.0)
    for name, bad in [("BATCH_MAX_SIZE", "0"), ("BATCH_MAX_SIZE", "2.5"), ("BATCH_MAX_WAIT_MS", "-1"),
                      ("BATCH_MAX_WAIT_MS", "soon"), ("PREDICT_INLINE_MAX_MS", "inf")]:
        with pytest.raises(ValueError, match=name):
            BatchSettings.from_environment({name: bad})


def test_through_the_server_concurrent_requests_are_batched_and_answered_individually() -> None:
    lines: list[str] = []
    app = create_app(lambda: load_model(trained_model_dir()), batch=BatchSettings(max_size=64, max_wait_ms=1000),
                     emf=EmfPublisher(write=lines.append))
    gate = asyncio.Event()

    def gated(row: list[float]) -> Any:
        async def receive() -> Message:
            await gate.wait()  # every request is in flight before any body arrives
            return {"type": "http.request", "body": json.dumps({"instances": [row]}).encode(), "more_body": False}
        return receive

    async def scenario() -> tuple[list[Any], float]:
        async with running(app) as server:
            pending = [asyncio.create_task(call(server, "POST", "/predict", gated(row), JSON))
                       for row in (SETOSA, [6.7, 3.0, 5.2, 2.3], [1e308, 1, 1, 1], SETOSA)]
            await asyncio.sleep(0.01)
            started = time.perf_counter()
            gate.set()
            return list(await asyncio.gather(*pending)), time.perf_counter() - started

    answers, took = run(scenario())
    assert took < 0.5  # the refused request made nobody wait for it (the wait is 1 s)
    assert [status for status, _, _ in answers] == [200, 200, 422, 200]
    assert [a[2]["predictions"][0]["label"] for a in answers if a[0] == 200] == ["setosa", "virginica", "setosa"]
    document = json.loads(lines[-1])
    assert document["BatchSize"] == {"Values": [3.0], "Counts": [1]}  # one model call for the three valid ones
    assert sum(document["InferenceLatency"]["Counts"]) == 3



def test_a_request_alone_in_the_process_is_scored_on_the_spot_without_yielding_the_loop() -> None:
    model = Recorder()

    async def scenario() -> Any:
        b = batcher(model, max_size=64, max_wait_ms=60_000)
        b.arrive()
        score = b.score(rows(1), requests_in_flight=1)
        with pytest.raises(StopIteration) as done:  # finished at its first step: no future, no loop iteration
            score.send(None)
        assert b.expected == 0 and not b.pending
        return done.value.value

    assert run(scenario()).shape == (1, 3)
    assert model.calls == [1]


def test_a_request_with_others_in_flight_is_not_alone_even_before_they_have_started() -> None:
    model = Recorder()

    async def scenario() -> Any:
        b = batcher(model, max_size=64, max_wait_ms=60_000)
        b.arrive()
        # The other request's bytes arrived with this one's: in flight at the HTTP layer, not yet in the app.
        score = b.score(rows(1), requests_in_flight=2)
        waiting_for = score.send(None)  # it yields to the loop: the other may still join its batch
        assert isinstance(waiting_for, asyncio.Future) and model.calls == []
        await asyncio.sleep(0)  # the batch goes after the requests ready in this loop iteration
        with pytest.raises(StopIteration) as done:
            score.send(None)
        return done.value.value

    assert run(scenario()).shape == (1, 3)
    assert model.calls == [1]


def test_a_batch_smaller_than_lately_waits_for_the_rest_up_to_its_maximum_wait() -> None:
    model = Recorder()

    async def scenario() -> list[float]:
        b = batcher(model, max_size=64, max_wait_ms=80)

        async def requests(count: int, late: int = 0) -> float:
            started = time.perf_counter()
            for _ in range(count):
                b.arrive()

            async def one_late() -> Any:
                await asyncio.sleep(0.01)
                b.arrive()
                return await b.score(rows(1))

            await asyncio.gather(*(b.score(rows(1)) for _ in range(count)), *(one_late() for _ in range(late)))
            return time.perf_counter() - started

        return [await requests(3), await requests(2, late=1), await requests(2)]

    all_together, one_late, fewer = run(scenario())
    assert model.calls == [3, 3, 2]  # the two waited for the third, which came 10 ms later
    assert one_late >= 0.01 and fewer >= 0.08  # nobody came for the last two: they went at the maximum wait
    assert all_together < 0.08  # every request in flight had joined: no wait


def test_requests_left_over_from_a_full_batch_go_next_at_once() -> None:
    model = Recorder()

    async def scenario() -> float:
        b = batcher(model, max_size=4, max_wait_ms=2_000)
        for _ in range(6):
            b.arrive()
        started = time.perf_counter()
        await asyncio.gather(*(b.score(rows(1)) for _ in range(6)))
        return time.perf_counter() - started

    assert run(scenario()) < 1.0  # not the 2 s maximum wait
    assert model.calls == [4, 2]


def test_requests_that_never_submit_do_not_make_later_batches_wait() -> None:
    model = Recorder()

    async def scenario() -> list[float]:
        b = batcher(model, max_size=64, max_wait_ms=2_000)
        waited = []
        for _ in range(3):
            for _ in range(4):
                b.arrive()
            b.leave()  # refused (a 422, say) or its client left
            b.leave()
            started = time.perf_counter()
            await asyncio.gather(b.score(rows(1)), b.score(rows(1)))
            waited.append(time.perf_counter() - started)
        return waited

    assert max(run(scenario())) < 1.0  # not the 2 s maximum wait
    assert model.calls == [2, 2, 2]


def test_a_request_too_large_to_share_a_batch_never_waits_for_a_partner() -> None:
    model = Recorder()

    async def scenario() -> float:
        b = batcher(model, max_size=64, max_wait_ms=2_000)
        for _ in range(2):
            b.arrive()
        await asyncio.gather(b.score(rows(40)), b.score(rows(40)))  # two can never share a batch of 64
        b.arrive()
        started = time.perf_counter()
        await b.score(rows(40))  # alone again: as many as the largest batch lately, one
        return time.perf_counter() - started

    assert run(scenario()) < 1.0  # not the 2 s maximum wait
    assert model.calls == [40, 40, 40]


@pytest.mark.parametrize("with_others", [0, 2], ids=["alone", "with two others"])
def test_a_request_still_receiving_its_body_holds_no_batch(with_others: int) -> None:
    """A client trickling its body (up to the body deadline) is neither waited for nor counted as in flight."""
    app = create_app(lambda: load_model(trained_model_dir()), batch=BatchSettings(max_size=64, max_wait_ms=60_000))
    body = json.dumps({"instances": [SETOSA]}).encode()

    async def trickle() -> Message:
        if not trickled.is_set():
            trickled.set()
            return {"type": "http.request", "body": body[:5], "more_body": True}
        await asyncio.Event().wait()  # the rest never comes (until the body deadline)
        raise AssertionError

    trickled = asyncio.Event()

    async def scenario() -> list[int | None]:
        async with running(app) as server:
            in_flight: set[asyncio.Task[Any]] = set()

            def start(receive: Any, extra: dict[str, Any]) -> asyncio.Task[Any]:
                task = asyncio.create_task(call(server, "POST", "/predict", receive=receive, headers=JSON,
                                                body=body, scope_extra={REQUESTS_IN_FLIGHT: in_flight, **extra}))
                in_flight.add(task)
                return task

            slow = start(trickle, {})
            await trickled.wait()
            complete = [start(None, {BODY_COMPLETE: True}) for _ in range(1 + with_others)]
            try:  # without waiting for the maximum wait (60 s) for the trickling request
                answers = await asyncio.wait_for(asyncio.gather(*complete), 5)
            finally:
                slow.cancel()
            return [status for status, _, _ in answers]

    assert run(scenario()) == [200] * (1 + with_others)


@pytest.mark.parametrize("limits", [(10.0,) * 4, None], ids=["derived limits", "no derived limits"])
@pytest.mark.parametrize(("cost_ms", "batched"), [(0.01, False), (50.0, False), (0.01, True), (50.0, True)],
                         ids=["on the loop", "on the model thread", "a batch on the loop", "a batch on the thread"])
def test_scikit_learns_finiteness_checks_are_skipped_only_within_limits_derived_from_the_model(
        cost_ms: float, batched: bool, limits: tuple[float, ...] | None) -> None:
    import sklearn  # noqa: PLC0415

    class Checking(Recorder):
        feature_limits = limits

        def probabilities(self, rows: Any) -> Any:
            assumed.append(sklearn.get_config()["assume_finite"])
            return super().probabilities(rows)

    async def scenario() -> None:
        if not batched:
            await runner.probabilities(rows(1))
            return
        b = Batcher(runner, BatchSettings(max_size=64, max_wait_ms=1))
        for _ in range(2):
            b.arrive()
        await asyncio.gather(b.score(rows(1)), b.score(rows(2)))

    assumed: list[bool] = []
    model = Checking(cost_ms=cost_ms)
    runner = Runner(model, inline_max_ms=2.0)  # type: ignore[arg-type]
    try:
        run(scenario())
    finally:
        runner.close()
    assert assumed == [limits is not None] and model.calls == [3 if batched else 1]
    assert sklearn.get_config()["assume_finite"] is False  # for that call only


@pytest.mark.parametrize("max_size", [1, 64], ids=["batching off", "batching on"])
def test_a_value_a_model_without_derived_limits_cannot_take_is_422_not_a_prediction(max_size: int) -> None:
    """A forest casts its input to float32: 1e300 is finite for the server, infinite for the model."""
    from sklearn.datasets import load_iris  # noqa: PLC0415
    from sklearn.ensemble import RandomForestClassifier  # noqa: PLC0415

    data = load_iris()
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(data.data, data.target)
    info = load_model(trained_model_dir()).info
    app = create_app(lambda: LoadedModel(forest, info), batch=BatchSettings(max_size=max_size))

    async def scenario() -> list[int | None]:
        async with running(app) as server:
            assert server.state.model is not None and server.state.model.feature_limits is None
            return [(await call(server, "POST", "/predict", headers=JSON,
                                body=json.dumps({"instances": [row]}).encode()))[0]
                    for row in ([1e300, 3.0, 1.4, 0.2], SETOSA)]

    assert run(scenario()) == [422, 200]
