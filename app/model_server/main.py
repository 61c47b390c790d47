"""The HTTP API: GET /health, POST /predict, GET /metrics.

The model loads in a background thread once the process starts serving, so /health can answer 503 while it
loads and 200 once it has loaded (the ALB and container health checks route traffic only to a loaded task).
Under gunicorn each worker loads its own copy, and /health answers for the whole task: 200 only when every
worker has loaded (each marks itself ready in a shared directory on the scratch volume). A request that
reaches a worker still loading (one gunicorn just restarted) waits for the model, up to PREDICT_WAIT_SECONDS.

POST /predict reads a bounded JSON body, validates it with pydantic and answers every client mistake with a
4xx and a message saying what is wrong: 400 malformed JSON, 413 body too large, 415 not JSON, 422 valid JSON
of the wrong shape; 503 when the model is not loaded (yet, or at all).

gunicorn starts it with `model_server.main:create_app()` (see gunicorn_conf.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from model_server import metrics
from model_server.model import LoadedModel, load_model

DEFAULT_MODEL_DIR = "/opt/model"
MAX_INSTANCES = 1000
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: 1000 rows of a few features fit many times over
MAX_LISTED_ERRORS = 10
RETRY_AFTER_SECONDS = "5"
DEFAULT_PREDICT_WAIT_SECONDS = 10.0
# Set by gunicorn_conf.py: where workers mark themselves ready, and how many there are.
READY_DIR_ENV, WORKERS_ENV = "MODEL_SERVER_READY_DIR", "MODEL_SERVER_WORKERS"

log = logging.getLogger("model_server")

FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    """Rows of feature values, in the order the model names them (GET /health lists them)."""

    model_config = ConfigDict(extra="forbid")
    instances: list[list[FiniteNumber]] = Field(min_length=1, max_length=MAX_INSTANCES,
                                                description="One row of numbers per instance to classify.")


class PredictionOut(BaseModel):
    label: str
    probabilities: dict[str, float]


class ModelOut(BaseModel):
    name: str
    version: str


class PredictResponse(BaseModel):
    model: ModelOut
    predictions: list[PredictionOut]


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


def _problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


class ClientError(Exception):
    """A request the server will not serve, answered with `status` and a message saying why."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = ClientError(413, f"the body is larger than {limit} bytes; send at most {MAX_INSTANCES} "
                                 "instances per request")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    # No "input" field: echoing a client's payload back is noise and may be large.
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in error.errors(include_url=False)[:MAX_LISTED_ERRORS]]


def _parse(body: bytes, model: LoadedModel) -> PredictRequest:
    try:
        payload = PredictRequest.model_validate_json(body)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise ClientError(400, "the body is not valid JSON", _validation_errors(error)) from None
        raise ClientError(422, 'the body must be {"instances": [[number, ...], ...]} with 1 to '
                               f"{MAX_INSTANCES} rows of finite numbers", _validation_errors(error)) from None
    expected = model.feature_count
    wrong = [{"loc": ["instances", i], "msg": f"has {len(row)} values, expected {expected}", "type": "feature_count"}
             for i, row in enumerate(payload.instances) if len(row) != expected]
    if wrong:
        raise ClientError(422, f"each instance must have {expected} values, in this order: "
                               + ", ".join(model.info.feature_names), wrong[:MAX_LISTED_ERRORS])
    return payload


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
        log.propagate = False


def create_app(loader: Callable[[], LoadedModel] | None = None, max_body_bytes: int | None = None,
               readiness: Readiness | None = None, predict_wait_seconds: float | None = None) -> FastAPI:
    """The ASGI app. `loader` defaults to loading MODEL_DIR (default /opt/model, where the image trains it)."""
    _configure_logging()
    if loader is None:
        model_dir = Path(os.environ.get("MODEL_DIR", DEFAULT_MODEL_DIR))

        def loader() -> LoadedModel:
            return load_model(model_dir)

    body_limit = max_body_bytes or int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
    predict_wait = (float(os.environ.get("PREDICT_WAIT_SECONDS", DEFAULT_PREDICT_WAIT_SECONDS))
                    if predict_wait_seconds is None else predict_wait_seconds)
    readiness = readiness or Readiness.from_environment()
    state = ModelState()

    async def load() -> None:
        started = time.perf_counter()
        try:
            model = await run_in_threadpool(loader)
        except Exception as error:  # any failure keeps /health at 503 with the reason, and is logged
            state.error = f"{type(error).__name__}: {error}"
            log.error("model failed to load: %s", state.error)
            return
        finally:
            if state.settled is not None:
                state.settled.set()
        state.model, state.load_seconds = model, round(time.perf_counter() - started, 3)
        metrics.MODEL_LOADED.set(1)
        readiness.mark_ready()
        log.info("model %s v%s loaded in %.3f s", model.info.name, model.info.version, state.load_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        metrics.MODEL_LOADED.set(0)
        state.settled = asyncio.Event()
        loading = asyncio.create_task(load())
        yield
        # Shutdown: the server has stopped accepting and finished in-flight requests by now.
        if not loading.done():
            loading.cancel()
        log.info("shut down")

    app = FastAPI(title="model server", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.model_state = state

    @app.get("/health", responses={503: {"description": "The model is loading or failed to load."}})
    async def health() -> JSONResponse:
        if state.error is not None:
            return JSONResponse({"status": "failed", "detail": state.error}, status_code=503)
        ready = readiness.ready_workers()
        if state.model is None or ready < readiness.workers:
            return JSONResponse({"status": "loading", "workers_ready": ready if state.model else 0,
                                 "workers": readiness.workers},
                                status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
        info = state.model.info
        return JSONResponse({"status": "ok", "model": {"name": info.name, "version": info.version},
                             "features": list(info.feature_names), "classes": list(info.class_names),
                             "workers": readiness.workers})

    request_schema = {"content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
                      "required": True}

    @app.post("/predict", response_model=PredictResponse, openapi_extra={"requestBody": request_schema},
              responses={400: {"description": "Malformed JSON"}, 413: {"description": "Body too large"},
                         415: {"description": "Not JSON"}, 422: {"description": "Wrong shape or values"},
                         503: {"description": "Model not loaded"}})
    async def predict(request: Request) -> Response:
        if state.model is None and state.settled is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.settled.wait(), predict_wait)
        model = state.model
        if model is None:
            raise ClientError(503, "the model is not loaded yet", headers={"Retry-After": RETRY_AFTER_SECONDS})
        if not _is_json(request.headers.get("content-type", "")):
            raise ClientError(415, "send the body as JSON with the header Content-Type: application/json")
        payload = _parse(await _read_body(request, body_limit), model)
        predictions = await run_in_threadpool(model.predict, payload.instances)
        metrics.PREDICTIONS.inc(len(predictions))
        response = PredictResponse(
            model=ModelOut(name=model.info.name, version=model.info.version),
            predictions=[PredictionOut(label=p.label, probabilities=p.probabilities) for p in predictions])
        return Response(response.model_dump_json(), media_type="application/json")

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    @app.exception_handler(ClientError)
    async def client_error(_: Request, error: ClientError) -> JSONResponse:
        return _problem(error.status, error.detail, error.errors, error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=error)
        return _problem(500, "internal error")

    app.add_middleware(metrics.MetricsMiddleware)
    return app
