"""The HTTP API: GET /health, POST /predict, GET /metrics, as a plain ASGI app.

No web framework: three routes do not need one, and every layer between the socket and the model costs
latency (app/benchmark.py compares this app with a bare ASGI app doing the same work, in the same run).

The model loads in a background thread once the process starts serving, so /health can answer 503 while it
loads and 200 once it has loaded (the ALB and container health checks route traffic only to a loaded task).
Under gunicorn each worker loads its own copy, and /health answers for the whole task: 200 only when every
worker has loaded (each marks itself ready in a shared directory on the scratch volume). A request that
reaches a worker still loading (one gunicorn just restarted) waits for the model, up to PREDICT_WAIT_SECONDS.
Once SIGTERM has arrived (model_server/worker.py), /health answers 503 "draining" while requests finish.

POST /predict answers every client mistake with a 4xx whose JSON body says what is wrong (ERRORS lists them),
checks the cheap things first (declared length, bracket and comma counts) so a hostile body costs little,
then validates the rest in one pass of pydantic-core (request_model: shape, row length, each feature's
limit), and never sends a non-finite number: values beyond what the model can score are refused (model.py
derives the limits), and a model output that is not finite anyway is a 422 for that request only (the JSON
encoder refuses it: json_response).

gunicorn starts it with `model_server.main:create_app()` (see gunicorn_conf.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from model_server import metrics
from model_server.batching import Batcher, BatchSettings, Runner
from model_server.emf import EmfPublisher
from model_server.model import LoadedModel, load_model
from model_server.scope import (
    ANSWERED,
    BODY_COMPLETE,
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DISCARD_BYTES,
    REQUESTS_IN_FLIGHT,
)

DEFAULT_MODEL_DIR = "/opt/model"
MAX_INSTANCES = 1000
MAX_LISTED_ERRORS = 10
RETRY_AFTER_SECONDS = "5"
DEFAULT_PREDICT_WAIT_SECONDS = 10.0
# The longest JSON a float64 can need (sign, 17 significant digits, exponent): the widest valid value.
WIDEST_NUMBER = -2.2250738585072014e-308
# Set by gunicorn_conf.py: where workers mark themselves ready, and how many there are.
READY_DIR_ENV, WORKERS_ENV = "MODEL_SERVER_READY_DIR", "MODEL_SERVER_WORKERS"
PUBLISH_SECONDS = 0.25  # Prometheus counts reach /metrics within this (see metrics.py)
EMF_SAMPLE_SECONDS = 1.0

# Every error /predict answers, by status: the body's "detail" and whether it lists "errors" (loc, msg, type).
# app/README.md documents this table and a test checks the server against it.
ERRORS: dict[int, tuple[str, bool]] = {
    400: ("the body is not valid JSON", True),
    408: ("the body did not arrive within {timeout:g} s", False),
    413: ("the body is larger than {limit} bytes; send at most 1000 instances per request", False),
    415: ("send the body as JSON with the header Content-Type: application/json", False),
    422: ('the body must be {"instances": [[number, ...], ...]} with 1 to 1000 rows of finite numbers', True),
    503: ("the model is not loaded yet", False),
}

UNSCORABLE = "the model cannot score these instances"

log = logging.getLogger("model_server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

def request_model(feature_limits: tuple[float, ...]) -> type[BaseModel]:
    """The /predict body for a model with these per-feature limits (model.py; inf where it has none): 1 to
    MAX_INSTANCES rows, each exactly one finite number per feature, in the order the model names them (GET /health
    lists them), within the feature's limit. pydantic-core checks all of it in one pass over the JSON."""
    values = tuple(Annotated[float, Field(strict=True, allow_inf_nan=False)] if limit == math.inf else
                   Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-limit, le=limit)]
                   for limit in feature_limits)
    row = tuple.__class_getitem__(values)  # tuple[value_0, value_1, ...]: fixed length
    instances = Field(min_length=1, max_length=MAX_INSTANCES, description="One row of numbers per instance.")
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"),
                        instances=(list[row], instances))  # type: ignore[valid-type]


@functools.cache
def largest_valid_body(feature_count: int) -> int:
    """Bytes of the largest valid request, in json.dumps's layout with the widest numbers, doubled for any
    other layout (indentation, spaces): the default body limit, 212,030 bytes for the reference model's 4 features."""
    widest = {"instances": [[WIDEST_NUMBER] * feature_count] * MAX_INSTANCES}
    return 2 * len(json.dumps(widest))


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: bytes = b"application/json",
                 headers: tuple[tuple[bytes, bytes], ...] = ()):
        self.status, self.body, self.content_type, self.headers = status, body, content_type, headers

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", self.content_type), (b"content-length", b"%d" % len(self.body)),
                                *self.headers]})
        await send({"type": "http.response.body", "body": self.body})


def json_response(status: int, payload: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    # allow_nan=False: a non-finite number can never reach a client (it would not be JSON either).
    return Response(status, json.dumps(payload, allow_nan=False).encode(), headers=headers)


class ClientError(Exception):
    """A request the server will not serve, answered with `status` and a message saying why."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                 headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers

    def response(self) -> Response:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors:
            body["errors"] = self.errors[:MAX_LISTED_ERRORS]
        return json_response(self.status, body, self.headers)


def _refused_by_model(error: ValueError) -> ClientError:
    """The 422 for finite, well-formed rows the model itself refused (scikit-learn's own checks)."""
    return ClientError(422, UNSCORABLE, [{"loc": ["instances"], "msg": str(error)[:200], "type": "unscorable"}])


def _not_finite(probabilities: Any) -> ClientError:
    """The 422 for the rows whose probabilities are not finite (json_response refused to send them)."""
    import numpy as np  # noqa: PLC0415

    rows = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
    return ClientError(422, UNSCORABLE, [{"loc": ["instances", int(i)], "msg": "the model's output is not finite",
                                          "type": "unscorable"} for i in rows])


class ClientGoneError(Exception):
    """The client closed the connection before its request had arrived: there is no one to answer."""


CLOSE = ((b"connection", b"close"),)
RETRY = ((b"retry-after", RETRY_AFTER_SECONDS.encode()),)


@dataclass
class ModelState:
    model: LoadedModel | None = None
    error: str | None = None
    load_seconds: float | None = None
    settled: asyncio.Event | None = None  # set once loading has succeeded or failed


class Readiness:
    """Whether every worker of this server has loaded the model (a single process: just this one)."""

    def __init__(self, directory: str, workers: int):
        self.directory = Path(directory) if directory else None
        self.workers = workers

    @classmethod
    def from_environment(cls) -> Readiness:
        return cls(os.environ.get(READY_DIR_ENV, ""), int(os.environ.get(WORKERS_ENV, "1")))

    def mark_ready(self) -> None:
        if self.directory is not None:
            (self.directory / str(os.getpid())).touch()

    def ready_workers(self) -> int:
        if self.directory is None:
            return self.workers
        try:
            return sum(1 for marker in self.directory.iterdir() if marker.name.isdigit())
        except OSError:
            return 0


def _is_json(content_type: str) -> bool:
    if content_type == "application/json":
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def _body(receive: Receive, limit: int, dropped_by_server: bool) -> bytes:
    """The request's body, refused (413) once it is over `limit` bytes. Sent without a length, it may go on: this
    server's HTTP layer drops the rest, up to DISCARD_BYTES (worker.py), so that its sender sees the 413; under
    another server (`dropped_by_server` false) the connection closes instead, as nothing would bound the rest."""
    parts = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not more and not parts and len(body) <= limit:
            return body  # the usual case: the whole body in one message, not copied
        parts += body
        if len(parts) > limit:
            raise ClientError(413, ERRORS[413][0].format(limit=limit), headers=() if dropped_by_server else CLOSE)
        if not more:
            return bytes(parts)


def _listed(errors: list[Any]) -> list[dict[str, Any]]:
    # No "input" field: echoing a client's payload back is noise and may be large.
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_LISTED_ERRORS]]


def _invalid(error: ValidationError, model: LoadedModel) -> ClientError:
    """The answer to a body request_model refused, most basic mistake first: not JSON (400); not the documented
    shape (422, the shape's message); a row with the wrong number of values (422, naming the features in order);
    values beyond the model's limits (422, naming the limits)."""
    errors = error.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return ClientError(400, ERRORS[400][0], _listed(errors))
    counts: dict[int, int] = {}  # row index: how many values it has, for the rows with the wrong number
    beyond, other = [], []
    for e in errors:
        kind, loc = e["type"], e["loc"]
        if kind == "too_long" and len(loc) == 2:  # a row with too many values
            counts[int(loc[1])] = int(e["ctx"]["actual_length"])
        elif kind == "missing" and len(loc) == 3:  # a row with too few: its input is the row
            counts[int(loc[1])] = len(e["input"])
        elif kind in ("greater_than_equal", "less_than_equal") and len(loc) == 3:
            beyond.append(e)
        else:
            other.append(e)
    if other:
        return ClientError(422, ERRORS[422][0], _listed(other))
    features, names = model.feature_count, model.info.feature_names
    if counts:
        return ClientError(422, f"each instance must have {features} values, in this order: " + ", ".join(names),
                           [{"loc": ["instances", i], "msg": f"has {n} values, expected {features}",
                             "type": "feature_count"} for i, n in sorted(counts.items())][:MAX_LISTED_ERRORS])
    limits = model.feature_limits or ()
    too_large = []
    for e in beyond[:MAX_LISTED_ERRORS]:
        row, feature = int(e["loc"][1]), int(e["loc"][2])
        too_large.append({"loc": ["instances", row, feature], "type": "too_large",
                          "msg": f"|{e['input']:g}| is above {limits[feature]:.3g}, the most {names[feature]} can be"})
    return ClientError(422, "values too large for the model to score (its scores would overflow): each |value| must "
                            "be at most " + ", ".join(f"{name} {limit:.3g}" for name, limit in zip(names, limits,
                                                                                                 strict=True)),
                       too_large)


def _body_headers(scope: Scope) -> tuple[str, str, bool]:
    """The request's Content-Type and Content-Length ("" when absent), and whether it sent Expect (a client
    waiting for 100 Continue before its body), in one pass over its headers."""
    content_type = content_length = ""
    expects = False
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = bytes(value).decode("latin-1")
        elif key == b"content-length":
            content_length = bytes(value).decode("latin-1")
        elif key == b"expect":
            expects = True
    return content_type, content_length, expects


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
        log.propagate = False


class ModelServer:
    """The ASGI app (see the module docstring); `create_app` builds it from the environment."""

    def __init__(self, loader: Callable[[], LoadedModel], max_body_bytes: int | None, readiness: Readiness,
                 predict_wait_seconds: float, batch: BatchSettings, emf: EmfPublisher,
                 body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS):
        self.loader, self.max_body_bytes, self.readiness = loader, max_body_bytes, readiness
        self.predict_wait, self.batch_settings, self.emf = predict_wait_seconds, batch, emf
        self.body_timeout = body_timeout_seconds
        self.state = ModelState()
        self.draining = False
        self.runner: Runner | None = None
        self.batcher: Batcher | None = None
        self.in_flight = 0  # requests this process is handling
        self.request_model: type[BaseModel] | None = None  # request_model for the loaded model
        self._reading: dict[asyncio.Task[Any], float] = {}  # requests reading their body, by deadline
        self._overdue: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []

    def drain(self) -> None:
        """SIGTERM arrived: /health answers 503 from now on, while requests in flight finish."""
        self.draining = True

    # --- ASGI entry points -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                metrics.MODEL_LOADED.set(0)
                self.state.settled = asyncio.Event()
                self._background = [asyncio.create_task(self._load()), asyncio.create_task(self._publish()),
                                    asyncio.create_task(self._expire_slow_bodies())]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # The server has stopped accepting and finished the requests in flight by now.
                for task in self._background:
                    task.cancel()
                self.emf.flush()
                metrics.publish()
                if self.runner is not None:
                    self.runner.close()
                log.info("shut down")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _load(self) -> None:
        state = self.state
        started = time.perf_counter()

        def load_and_measure() -> LoadedModel:
            model = self.loader()
            model.calibrate()
            return model

        try:
            model = await asyncio.to_thread(load_and_measure)
        except Exception as error:  # any failure keeps /health at 503 with the reason, and is logged
            state.error = f"{type(error).__name__}: {error}"
            log.error("model failed to load: %s", state.error)
            return
        finally:
            if state.settled is not None:
                state.settled.set()
        self.request_model = request_model(model.feature_limits or (math.inf,) * model.feature_count)
        self.runner = Runner(model, self.batch_settings.inline_max_ms, self.emf.batch_size)
        self.batcher = Batcher(self.runner, self.batch_settings) if self.batch_settings.enabled else None
        state.model, state.load_seconds = model, round(time.perf_counter() - started, 3)
        metrics.MODEL_LOADED.set(1)
        # What is loaded now (the model, numpy, scikit-learn, pydantic) lives as long as the process: leave it
        # out of garbage collection, which would otherwise walk it again and again while requests come in.
        gc.collect()
        gc.freeze()
        self.readiness.mark_ready()
        per_call, per_row = model.cost_ms
        log.info("model %s v%s loaded in %.3f s; one call costs %.3f ms + %.4f ms per row, run on the loop up to "
                 "%g ms; batching %s", model.info.name, model.info.version, state.load_seconds, per_call, per_row,
                 self.batch_settings.inline_max_ms,
                 f"up to {self.batch_settings.max_size} instances, {self.batch_settings.max_wait_ms:g} ms"
                 if self.batch_settings.enabled else "off")

    async def _publish(self) -> None:
        """Publish this worker's counts to Prometheus every PUBLISH_SECONDS; every EMF_SAMPLE_SECONDS also its
        requests in flight, and sample the task's for EMF, which writes its line when due."""
        sampled = time.monotonic()
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            try:
                metrics.publish()
                if time.monotonic() - sampled >= EMF_SAMPLE_SECONDS:
                    sampled = time.monotonic()
                    metrics.IN_FLIGHT.set(self.in_flight)
                    self.emf.in_flight(metrics.task_in_flight())
                    self.emf.tick()
            except Exception:  # metrics must never take the server down
                log.exception("publishing metrics failed")

    async def _expire_slow_bodies(self) -> None:
        """Cancel the requests whose body is overdue (cheaper than a timer per request: see _read_body)."""
        while True:
            await asyncio.sleep(min(1.0, self.body_timeout / 4))
            now = time.monotonic()
            for task, deadline in list(self._reading.items()):
                if now >= deadline and task not in self._overdue:
                    self._overdue.add(task)
                    task.cancel()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, route = scope["method"], scope["path"]
        if route not in metrics.ROUTES:
            route = metrics.OTHER_ROUTE
        status = metrics.CLIENT_CLOSED
        self.in_flight += 1
        try:
            try:
                if route == "/predict" and method == "POST":  # the hot path first
                    response = await self._predict(scope, receive)
                else:
                    response = self._route(method, route)
            except ClientError as error:
                response = error.response()
            except ClientGoneError:
                if ANSWERED in scope:  # the HTTP layer answered it (and counted it) when the body broke the protocol
                    status = 0
                    return
                log.info("%s %s: the client closed the connection before sending the whole request",
                         method, scope["path"])
                return
            except Exception:
                log.exception("unhandled error in %s %s", method, scope["path"])
                response = json_response(500, {"detail": "internal error"})
            status = response.status
            await response.send(send)
        finally:
            self.in_flight -= 1
            if status:
                metrics.observe(method, route, status, time.perf_counter() - started)

    def _route(self, method: str, route: str) -> Response:
        """Every request but POST /predict."""
        allowed = {"/health": "GET", "/predict": "POST", "/metrics": "GET"}.get(route)
        if allowed is None:
            return json_response(404, {"detail": "Not Found"})
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            return json_response(405, {"detail": "Method Not Allowed"}, ((b"allow", allowed.encode()),))
        if route == "/health":
            return self._health()
        content, content_type = metrics.render()
        return Response(200, content, content_type.encode())

    # --- routes ------------------------------------------------------------------------------------------------

    def _health(self) -> Response:
        state = self.state
        if self.draining:
            return json_response(503, {"status": "draining"}, CLOSE)
        if state.error is not None:
            return json_response(503, {"status": "failed", "detail": state.error})
        ready = self.readiness.ready_workers()
        if state.model is None or ready < self.readiness.workers:
            return json_response(503, {"status": "loading", "workers_ready": ready if state.model else 0,
                                       "workers": self.readiness.workers}, RETRY)
        info = state.model.info
        return json_response(200, {"status": "ok", "model": {"name": info.name, "version": info.version},
                                   "features": list(info.feature_names), "classes": list(info.class_names),
                                   "workers": self.readiness.workers})

    async def _predict(self, scope: Scope, receive: Receive) -> Response:
        model, runner = self.state.model, self.runner
        if model is None or runner is None:
            model, runner = await self._loaded_model()
        content_type, declared, expects = _body_headers(scope)
        if not _is_json(content_type):
            raise ClientError(415, ERRORS[415][0])
        batcher = self.batcher
        if batcher is None:
            rows = self._rows(await self._read_body(scope, receive, declared, model, expects), model)
            started = time.perf_counter()
            try:
                probabilities = await runner.probabilities(rows)
            except ValueError as error:
                raise _refused_by_model(error) from None
        else:
            in_flight = scope.get(REQUESTS_IN_FLIGHT)
            # A batch may wait for this request only if its body is here: one still arriving (it may trickle, up
            # to the body deadline) would hold every batch for the maximum wait.
            coming = in_flight is None or BODY_COMPLETE in scope
            if coming:
                batcher.arrive()
            try:
                rows = self._rows(await self._read_body(scope, receive, declared, model, expects), model)
            except BaseException:
                if coming:
                    batcher.leave()  # it will not submit: a batch must not wait for it
                raise
            started = time.perf_counter()
            # In flight and able to join a batch soon: not the requests still receiving their bodies.
            joinable = None if in_flight is None else len(in_flight) - len(self._reading)
            try:
                probabilities = await batcher.score(rows, joinable, arrived=coming)
            except ValueError as error:
                raise _refused_by_model(error) from None
        self.emf.latency_ms((time.perf_counter() - started) * 1000)
        predictions = model.predictions(probabilities)
        info = model.info
        try:
            response = json_response(200, {"model": {"name": info.name, "version": info.version},
                                           "predictions": predictions})
        except ValueError:  # a non-finite probability (possible only for a model without derived limits)
            raise _not_finite(probabilities) from None
        metrics.predicted(len(predictions))
        return response

    async def _loaded_model(self) -> tuple[LoadedModel, Runner]:
        """The model once it has loaded (waiting up to PREDICT_WAIT_SECONDS for a worker still loading), or 503."""
        state = self.state
        if state.model is None and state.settled is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.settled.wait(), self.predict_wait)
        if state.model is None or self.runner is None:
            raise ClientError(503, ERRORS[503][0], headers=RETRY)
        return state.model, self.runner

    def body_limit(self, model: LoadedModel) -> int:
        return self.max_body_bytes or largest_valid_body(model.feature_count)

    async def _read_body(self, scope: Scope, receive: Receive, declared: str, model: LoadedModel,
                         expects: bool = False) -> bytes:
        limit = self.body_limit(model)
        if declared.isdigit() and int(declared) > limit:
            # Answered before reading any of it. Closing at once while the client still sends makes its TCP stack
            # reset the connection, and the client (or the ALB, as a 502) may never see the 413: a body of up to
            # DISCARD_BYTES is left to the HTTP layer to read and drop (in C, cheaply), a larger one is cut off.
            # A client that sent Expect may, refused before 100 Continue, skip its body and send its next request:
            # that request would be dropped as body, so its connection closes instead.
            raise ClientError(413, ERRORS[413][0].format(limit=limit),
                              headers=CLOSE if expects or int(declared) > DISCARD_BYTES else ())
        if BODY_COMPLETE in scope:  # the HTTP layer has the whole body already: no deadline to keep
            return await _body(receive, limit, dropped_by_server=True)
        task = asyncio.current_task()
        assert task is not None
        self._reading[task] = time.monotonic() + self.body_timeout  # _expire_slow_bodies enforces it
        try:
            return await _body(receive, limit, dropped_by_server=REQUESTS_IN_FLIGHT in scope)
        except asyncio.CancelledError:
            if task not in self._overdue:
                raise
            task.uncancel()
            raise ClientError(408, ERRORS[408][0].format(timeout=self.body_timeout), headers=CLOSE) from None
        finally:
            del self._reading[task]
            self._overdue.discard(task)

    def _rows(self, body: bytes, model: LoadedModel) -> Any:
        """The validated (rows, features) array of a /predict body, or a ClientError saying what is wrong."""
        import numpy as np  # noqa: PLC0415

        features = model.feature_count
        shape = ERRORS[422][0]
        # Cheap counts first: a valid body has one '[' per row plus one, and fewer commas than values. Any body
        # beyond either is invalid whatever else it holds, so a body of empty rows is refused without parsing.
        if body.count(b"[") > MAX_INSTANCES + 1 or body.count(b",") > MAX_INSTANCES * features:
            raise ClientError(422, shape, [{"loc": ["instances"], "type": "too_long",
                                            "msg": f"should have at most {MAX_INSTANCES} rows of {features} values; "
                                                   "the body holds more"}])
        assert self.request_model is not None  # set with the model
        try:
            payload = self.request_model.model_validate_json(body)
        except ValidationError as error:
            raise _invalid(error, model) from None
        return np.asarray(payload.instances, dtype=np.float64)  # type: ignore[attr-defined]


def create_app(loader: Callable[[], LoadedModel] | None = None, max_body_bytes: int | None = None,
               readiness: Readiness | None = None, predict_wait_seconds: float | None = None,
               batch: BatchSettings | None = None, emf: EmfPublisher | None = None,
               body_timeout_seconds: float | None = None) -> ModelServer:
    """The ASGI app. `loader` defaults to loading MODEL_DIR (default /opt/model, where the image trains it);
    every other argument defaults to its environment variable (app/README.md lists them)."""
    _configure_logging()
    env = os.environ
    if loader is None:
        model_dir = Path(env.get("MODEL_DIR", DEFAULT_MODEL_DIR))

        def loader() -> LoadedModel:
            return load_model(model_dir)

    return ModelServer(
        loader,
        max_body_bytes or int(env.get("MAX_BODY_BYTES", "0") or 0) or None,
        readiness or Readiness.from_environment(),
        float(env.get("PREDICT_WAIT_SECONDS", DEFAULT_PREDICT_WAIT_SECONDS))
        if predict_wait_seconds is None else predict_wait_seconds,
        batch or BatchSettings.from_environment(env),
        emf or EmfPublisher.from_environment(env),
        float(env.get("BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS))
        if body_timeout_seconds is None else body_timeout_seconds,
    )
