"""Inputs that try to break or tire the model server, in process: overflowing numbers, outsized and slow bodies,
clients that leave, draining, and a proxy in the environment. Each must get its documented answer."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from infra.settings import project_schema
from model_server import main as server_main
from model_server.batching import BatchSettings
from model_server.main import MAX_INSTANCES, ModelServer, create_app, largest_valid_body
from model_server.model import LoadedModel, feature_limits, load_model
from tests.app_support import JSON, Message, call, predict, run, running, trained_model_dir
from tests.harness import PROJECT_DIR
from tests.local_http import serving

SETOSA = [5.1, 3.5, 1.4, 0.2]


def model() -> LoadedModel:
    return load_model(trained_model_dir())


def app(**kwargs: Any) -> ModelServer:
    return create_app(lambda: load_model(trained_model_dir()), **kwargs)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- numbers the model cannot score ----------------------------------------------------------------------------

def test_the_raw_model_overflows_on_finite_numbers_so_a_limit_is_needed() -> None:
    raw = model().estimator
    with np.errstate(all="ignore"):
        assert np.isnan(raw.predict_proba(np.array([[1, 1, 1, 1e308]]))).all()  # 200 with nulls, before
        with pytest.raises(ValueError, match="infinity"):
            raw.predict_proba(np.array([[1, 1e308, 1, 1]]))  # a 500, before


def test_the_limits_come_from_the_models_own_scaling() -> None:
    fitted = model().estimator
    scaler, classifier = fitted.steps[0][1], fitted.steps[-1][1]
    limits = np.array(feature_limits(fitted))
    # The same model for inputs 1e-100 times smaller (the scaler's mean and scale shrink alike): its values may
    # only be 1e-100 times as large.
    smaller = copy.deepcopy(fitted)
    smaller.steps[0][1].mean_, smaller.steps[0][1].scale_ = scaler.mean_ * 1e-100, scaler.scale_ * 1e-100
    assert np.array(feature_limits(smaller)) == pytest.approx(limits * 1e-100, rel=1e-9)
    assert feature_limits(classifier) is not None  # no scaler: the coefficients alone still bound the values
    assert feature_limits(object()) is None  # nothing to derive from: the server checks the outputs instead


def test_at_the_limits_every_sign_combination_scores_finite_numbers() -> None:
    loaded = model()
    limits = np.array(loaded.feature_limits)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=loaded.feature_count)))
    assert np.isfinite(loaded.probabilities(signs * limits)).all()


def test_values_beyond_the_limit_are_422_naming_the_value_and_at_the_limit_200() -> None:
    loaded = model()
    limits = loaded.feature_limits
    assert limits is not None

    async def scenario() -> None:
        async with running(app(batch=BatchSettings(max_size=1))) as server:
            status, body = await predict(server, {"instances": [list(limits)]})
            assert status == 200
            assert all(isinstance(p, float) for p in body["predictions"][0]["probabilities"].values())
            for feature, limit in enumerate(limits):
                for value in (float(np.nextafter(limit, np.inf)), -1e308, sys.float_info.max):
                    row = [*SETOSA]
                    row[feature] = value
                    status, body = await predict(server, {"instances": [SETOSA, row]})
                    assert status == 422, body
                    assert body["errors"][0]["loc"] == ["instances", 1, feature]
                    assert loaded.info.feature_names[feature] in body["errors"][0]["msg"]

    run(scenario())


class Fragile:
    """A model with no derivable limits: NaN for rows starting with a negative value, ValueError above 1e300."""

    def predict_proba(self, rows: Any) -> Any:
        if (rows[:, 0] > 1e300).any():
            raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
        out = np.full((len(rows), 3), 1 / 3)
        out[rows[:, 0] < 0] = np.nan
        return out


@pytest.mark.parametrize("batch", [1, 64], ids=["batching off", "batching on"])
def test_a_model_output_that_is_not_finite_is_422_for_that_request_only(batch: int) -> None:
    info = model().info
    fragile = create_app(lambda: LoadedModel(Fragile(), info), batch=BatchSettings(max_size=batch, max_wait_ms=50))

    async def scenario() -> None:
        async with running(fragile) as server:
            answers = await asyncio.gather(predict(server, {"instances": [SETOSA]}),
                                           predict(server, {"instances": [SETOSA, [-1.0, 1, 1, 1]]}),
                                           predict(server, {"instances": [[1e301, 1, 1, 1]]}),
                                           predict(server, {"instances": [SETOSA]}))
            assert [status for status, _ in answers] == [200, 422, 422, 200]
            assert answers[1][1]["errors"][0]["loc"] == ["instances", 1]
            assert "too large" in answers[2][1]["errors"][0]["msg"]
            assert "null" not in json.dumps(answers[0][1])

    run(scenario())


# --- bodies ----------------------------------------------------------------------------------------------------

def _never_read() -> Any:
    async def receive() -> Message:
        raise AssertionError("the body was read")
    return receive


EMPTY_ROWS = b'{"instances": [' + b"[], " * ((1 << 20) // 4 - 8) + b"[]]}"  # the 1 MiB hostile body


def test_the_body_limit_is_twice_the_largest_valid_request_and_that_request_fits() -> None:
    features = model().feature_count
    widest = json.dumps({"instances": [[-2.2250738585072014e-308] * features] * MAX_INSTANCES}, indent=1).encode()
    assert len(widest) <= largest_valid_body(features) < len(EMPTY_ROWS) / 4

    async def scenario() -> None:
        async with running(app(batch=BatchSettings(max_size=1))) as server:
            status, _, body = await call(server, "POST", "/predict", headers=JSON, body=widest)
            assert status == 200 and len(body["predictions"]) == MAX_INSTANCES

    run(scenario())


@pytest.mark.parametrize(("declared", "expect", "closes"), [(len(EMPTY_ROWS), False, False),
                                                           (server_main.DISCARD_BYTES + 1, False, True),
                                                           (len(EMPTY_ROWS), True, True)])
def test_a_declared_oversized_body_is_413_before_any_of_it_is_read(declared: int, expect: bool, closes: bool) -> None:
    """A body up to DISCARD_BYTES is left for the HTTP layer to drop so that the client sees the 413; beyond that,
    or when the client waits for 100 Continue (it may never send the body), the connection is closed."""
    async def scenario() -> None:
        async with running(app()) as server:
            headers = {**JSON, "Content-Length": str(declared), **({"Expect": "100-continue"} if expect else {})}
            status, response_headers, body = await call(server, "POST", "/predict", _never_read(), headers)
            assert status == 413 and ("connection" in response_headers) == closes
            assert body["detail"] == server_main.ERRORS[413][0].format(limit=largest_valid_body(4))

    run(scenario())


def test_an_undeclared_oversized_body_is_413_once_the_limit_is_passed() -> None:
    chunks = [EMPTY_ROWS[i:i + 65536] for i in range(0, len(EMPTY_ROWS), 65536)]
    read: list[int] = []

    async def receive() -> Message:
        read.append(1)
        return {"type": "http.request", "body": chunks[len(read) - 1], "more_body": len(read) < len(chunks)}

    async def scenario() -> None:
        async with running(app()) as server:
            status, headers, _ = await call(server, "POST", "/predict", receive, JSON)
            # Closed: under another server nothing bounds the rest (worker.py drops it: test_app_protocol.py).
            assert status == 413 and headers["connection"] == "close"
        assert len(read) * 65536 <= largest_valid_body(4) + 65536  # stopped right after the limit

    run(scenario())


@pytest.mark.parametrize("raw", [b'{"instances": [' + b"[]," * 5000 + b"[]]}",
                                 b'{"instances": [[' + b"1," * 5000 + b"1]]}",
                                 b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b"}"])
def test_bodies_with_too_many_rows_or_values_are_422_without_parsing(raw: bytes,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the body was parsed")

    async def scenario() -> None:
        async with running(app()) as server:
            monkeypatch.setattr(server.request_model, "model_validate_json", refuse)
            status, _, body = await call(server, "POST", "/predict", headers=JSON, body=raw)
            assert status == 422
            assert body["errors"][0]["msg"].startswith(f"should have at most {MAX_INSTANCES} rows")

    run(scenario())


def test_a_body_that_arrives_too_slowly_is_408_and_closes_the_connection() -> None:
    async def trickle() -> Message:
        await asyncio.sleep(0.02)
        return {"type": "http.request", "body": b"{", "more_body": True}

    async def scenario() -> None:
        async with running(app(body_timeout_seconds=0.04)) as server:
            status, headers, body = await call(server, "POST", "/predict", trickle, JSON)
            assert (status, headers["connection"]) == (408, "close")
            assert body["detail"] == "the body did not arrive within 0.04 s"

    run(scenario())


def test_a_client_that_leaves_mid_body_is_counted_as_499_not_500_and_not_logged_as_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    messages: Iterator[Message] = iter([{"type": "http.request", "body": b'{"instances": [[5.1', "more_body": True},
                                        {"type": "http.disconnect"}])

    async def leave() -> Message:
        return next(messages)

    closed = 'http_requests_total{method="POST",route="/predict",status="499"}'
    failed = 'http_requests_total{method="POST",route="/predict",status="500"}'

    async def scenario() -> None:
        async with running(app()) as server:
            before = (await call(server, "GET", "/metrics"))[2].decode()
            with caplog.at_level(logging.INFO, logger="model_server"):
                assert (await call(server, "POST", "/predict", leave, JSON))[0] is None  # nothing was sent
            after = (await call(server, "GET", "/metrics"))[2].decode()
            assert metric(after, closed) == metric(before, closed) + 1
            assert metric(after, failed) == metric(before, failed)
            assert (await call(server, "GET", "/health"))[0] == 200

    run(scenario())
    assert [r.levelname for r in caplog.records if "closed the connection" in r.message] == ["INFO"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- draining --------------------------------------------------------------------------------------------------

def test_health_is_503_while_draining_and_predictions_still_answer() -> None:
    async def scenario() -> None:
        async with running(app()) as server:
            assert (await call(server, "GET", "/health"))[0] == 200
            server.drain()
            status, headers, body = await call(server, "GET", "/health")
            assert (status, body, headers["connection"]) == (503, {"status": "draining"}, "close")
            assert (await predict(server, {"instances": [SETOSA]}))[0] == 200

    run(scenario())


# --- the container health check and proxies ---------------------------------------------------------------------

PROXY_SETTINGS = {
    "HTTP_PROXY without NO_PROXY": {"HTTP_PROXY": "{proxy}"},
    "http_proxy with an unrelated NO_PROXY": {"http_proxy": "{proxy}", "NO_PROXY": "example.com,10.0.0.0/8"},
}


@pytest.mark.integration  # a subprocess: run by .ci/run (pytest -m integration)
def test_the_default_container_health_check_never_goes_through_a_proxy() -> None:
    """The stack's default check reaches the server even when the task sets a proxy: the command itself opens
    the URL without proxies, so it holds in any image with python, and the reference image's Python
    (PYTHONPATH=/opt/model-server, where app/sitecustomize.py lands) bypasses proxies for loopback besides."""
    with serving(lambda path: (200, b"ok")) as healthy, serving(lambda path: (502, b"proxy")) as proxy:
        command = project_schema()["containerHealthCheckCommand"]["default"]
        command = command.replace("{port}", str(healthy)).replace("{path}", "/health").replace("python", sys.executable)
        base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "no_proxy", "pythonpath")}
        runs = {}
        for name, settings in [*PROXY_SETTINGS.items(), ("without the image's site customisation", {})]:
            env = {**base, "PYTHONPATH": str(PROJECT_DIR / "app") if settings else "",
                   **{k: v.format(proxy=f"http://127.0.0.1:{proxy}") for k, v in
                      (settings or PROXY_SETTINGS["HTTP_PROXY without NO_PROXY"]).items()}}
            runs[name] = subprocess.Popen(["sh", "-c", command], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE)
        codes = {name: run.wait(timeout=20) for name, run in runs.items()}
    # With or without the image's site customisation, the check never asks the proxy (which answers 502).
    assert codes == {**dict.fromkeys(PROXY_SETTINGS, 0), "without the image's site customisation": 0}
    # ...and the image has it where its Python finds it.
    dockerfile = (PROJECT_DIR / "app" / "Dockerfile").read_text()
    assert re.search(r"^COPY .*\bsitecustomize\.py /opt/model-server/$", dockerfile, re.MULTILINE)
    assert "PYTHONPATH=/opt/model-server " in dockerfile
    assert "!sitecustomize.py" in (PROJECT_DIR / "app" / ".dockerignore").read_text().splitlines()
