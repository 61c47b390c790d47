"""The model server's HTTP contract, in process: health, predictions, client mistakes, metrics, model loading."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from model_server.batching import BatchSettings
from model_server.main import MAX_INSTANCES, Readiness, create_app
from model_server.model import METADATA_FILE, MODEL_FILE, LoadedModel, ModelLoadError, load_model
from model_server.train import train
from tests.app_support import JSON, call, run, running, trained_model_dir

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
HEALTH_WAIT_SECONDS = 10


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return trained_model_dir()


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: load_model(model_dir), max_body_bytes=64 * 1024,
                               batch=BatchSettings(max_size=1))) as test_client:
        wait_until_healthy(test_client)
        yield test_client


def wait_until_healthy(client: TestClient) -> None:
    deadline = time.monotonic() + HEALTH_WAIT_SECONDS
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.01)


def predict(client: TestClient, body: object) -> tuple[int, dict]:
    response = client.post("/predict", json=body)
    return response.status_code, response.json()


def test_health_is_503_while_the_model_loads_and_200_once_it_has(model_dir: Path) -> None:
    release = threading.Event()

    def slow_loader() -> LoadedModel:
        assert release.wait(HEALTH_WAIT_SECONDS)
        return load_model(model_dir)

    with TestClient(create_app(slow_loader, predict_wait_seconds=0.05)) as client:
        loading = client.get("/health")
        assert (loading.status_code, loading.json()) == (503, {"status": "loading", "workers_ready": 0, "workers": 1})
        assert loading.headers["retry-after"] == "5"
        status, body = predict(client, {"instances": [SETOSA]})
        assert status == 503 and body["detail"] == "the model is not loaded yet"

        release.set()
        wait_until_healthy(client)
        health = client.get("/health").json()
        assert health["status"] == "ok"
        assert health["model"] == {"name": "iris-logistic-regression", "version": "1"}
        assert health["features"] == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
        assert predict(client, {"instances": [SETOSA]})[0] == 200


def test_a_request_that_arrives_while_the_model_loads_waits_for_it(model_dir: Path) -> None:
    release = threading.Event()

    def slow_loader() -> LoadedModel:
        assert release.wait(HEALTH_WAIT_SECONDS)
        return load_model(model_dir)

    with TestClient(create_app(slow_loader, predict_wait_seconds=HEALTH_WAIT_SECONDS)) as client:
        threading.Timer(0.03, release.set).start()
        started = time.monotonic()
        status, body = predict(client, {"instances": [SETOSA]})
        assert status == 200 and body["predictions"][0]["label"] == "setosa"
        assert time.monotonic() - started >= 0.025


def test_health_answers_for_every_worker_of_the_server(model_dir: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    with TestClient(create_app(lambda: load_model(model_dir), readiness=Readiness(str(ready), 2))) as client:
        deadline = time.monotonic() + HEALTH_WAIT_SECONDS
        while not list(ready.iterdir()):  # this worker marks itself ready once loaded
            assert time.monotonic() < deadline
            time.sleep(0.01)
        waiting = client.get("/health")
        assert (waiting.status_code, waiting.json()) == (503, {"status": "loading", "workers_ready": 1, "workers": 2})
        (ready / "424242").touch()  # the other worker has loaded
        assert client.get("/health").status_code == 200


def test_a_model_that_fails_to_load_keeps_health_at_503_with_the_reason(tmp_path: Path) -> None:
    with TestClient(create_app(lambda: load_model(tmp_path), predict_wait_seconds=1)) as client:
        deadline = time.monotonic() + HEALTH_WAIT_SECONDS
        while (health := client.get("/health").json())["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert health["status"] == "failed"
        assert "model.joblib does not exist" in health["detail"]
        assert client.get("/health").status_code == 503
        assert predict(client, {"instances": [SETOSA]})[0] == 503


def test_predicts_labels_and_probabilities(client: TestClient) -> None:
    status, body = predict(client, {"instances": [SETOSA, VIRGINICA]})
    assert status == 200
    assert body["model"] == {"name": "iris-logistic-regression", "version": "1"}
    assert [p["label"] for p in body["predictions"]] == ["setosa", "virginica"]
    for prediction in body["predictions"]:
        assert set(prediction["probabilities"]) == {"setosa", "versicolor", "virginica"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert max(prediction["probabilities"], key=prediction["probabilities"].get) == prediction["label"]


def test_integers_and_json_charset_are_accepted(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"instances": [[5, 3, 1, 0]]}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "setosa"


@pytest.mark.parametrize(("body", "message"), [
    ({}, "Field required"),
    ({"instances": []}, "at least 1"),
    ({"instances": [SETOSA], "extra": 1}, "Extra inputs"),
    ({"instances": SETOSA}, "valid array"),
    ({"instances": [[5.1, 3.5, 1.4]]}, "has 3 values, expected 4"),
    ({"instances": [[*SETOSA, 1.0]]}, "has 5 values, expected 4"),
    ({"instances": [["5.1", 3.5, 1.4, 0.2]]}, "valid number"),
    ({"instances": [[True, 3.5, 1.4, 0.2]]}, "valid number"),
    ({"instances": [[None, 3.5, 1.4, 0.2]]}, "valid number"),
    ({"instances": [[{"a": 1}, 3.5, 1.4, 0.2]]}, "valid number"),
    ({"instances": [SETOSA] * (MAX_INSTANCES + 1)}, f"at most {MAX_INSTANCES}"),
    ([SETOSA], "should be an object"),
    ("instances", "should be an object"),
])
def test_bad_shapes_are_422_with_a_message(client: TestClient, body: object, message: str) -> None:
    status, answer = predict(client, body)
    assert status == 422, answer
    assert answer["detail"]
    assert any(message in error["msg"] for error in answer["errors"]), answer


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422(client: TestClient, number: str) -> None:
    response = client.post("/predict", content=f'{{"instances": [[{number}, 3.5, 1.4, 0.2]]}}'.encode(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text


def test_the_wrong_feature_count_names_the_features_in_order(client: TestClient) -> None:
    status, body = predict(client, {"instances": [SETOSA, [1.0], VIRGINICA, []]})
    assert status == 422
    assert body["detail"] == ("each instance must have 4 values, in this order: sepal_length_cm, sepal_width_cm, "
                              "petal_length_cm, petal_width_cm")
    assert [e["loc"] for e in body["errors"]] == [["instances", 1], ["instances", 3]]


@pytest.mark.parametrize(("instances", "detail", "locs"), [
    ([[1e308, 1, 1, 1], [1.0], ["x", 1, 1, 1]], "body must be", [["instances", 2, 0]]),  # shape before all else
    ([[1e308, 1, 1, 1], [1.0], [*SETOSA, 1]], "each instance must have 4", [["instances", 1], ["instances", 2]]),
    ([SETOSA, [1e308, 1, -1e308, 1], [1, 1, 1, 1e308]], "values too large",
     [["instances", 1, 0], ["instances", 1, 2], ["instances", 2, 3]]),
    ([[1e308, 1, 1, 1]] * 12, "values too large", [["instances", i, 0] for i in range(10)]),  # at most 10 listed
    ([[1.0]] * 12, "each instance must have 4", [["instances", i] for i in range(10)]),
    ([["x", 1, 1, 1]] * 12, "body must be", [["instances", i, 0] for i in range(10)]),
])
def test_the_most_basic_mistake_is_answered_first_with_every_place_it_occurs(
        client: TestClient, instances: list[Any], detail: str, locs: list[list[Any]]) -> None:
    status, body = predict(client, {"instances": instances})
    assert status == 422
    assert detail in body["detail"]
    assert [e["loc"] for e in body["errors"]] == locs


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"instances": [[1,2,3,4]]', b"\xff\xfe", b"[1,]"])
def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/predict", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "the body is not valid JSON"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", content=json.dumps({"instances": [SETOSA]}).encode(), headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]


def test_a_body_over_the_limit_is_413_whether_or_not_its_length_is_declared(client: TestClient) -> None:
    big = json.dumps({"instances": [SETOSA] * 4000}).encode()  # over the 64 KiB the fixture allows
    declared = client.post("/predict", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    streamed = client.post("/predict", content=iter([big[:40000], big[40000:]]),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert "larger than 65536 bytes" in streamed.json()["detail"]


def test_wrong_paths_and_methods_are_4xx(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405
    assert client.post("/health").status_code == 405
    assert client.get("/nope").status_code == 404


@pytest.mark.parametrize("max_size", [1, 64], ids=["batching off", "batching on"])
def test_random_junk_never_gets_a_server_error(model_dir: Path, max_size: int) -> None:
    rng = random.Random(6)
    atoms = ["[", "]", "{", "}", ",", ":", '"instances"', "1", "-2.5e3", "null", "true", '"x"', " ", "NaN", "1e400",
             "1e308", "[1, 2, 3, 4]", "[1e308, 1, 1, 1]"]
    bodies = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 12))).encode() for _ in range(300)]

    async def scenario() -> list[tuple[bytes, Any]]:
        async with running(create_app(lambda: load_model(model_dir), batch=BatchSettings(max_size=max_size))) as app:
            return [(raw, await call(app, "POST", "/predict", headers=JSON, body=raw)) for raw in bodies]

    for raw, (status, _, body) in run(scenario()):
        assert status is not None and (400 <= status < 500 or status == 200), (raw, status, body)


def test_metrics_count_requests_by_route_and_status_and_time_them(client: TestClient) -> None:
    def sample(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.split(" ", 1)[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    ok = 'http_requests_total{method="POST",route="/predict",status="200"}'
    bad = 'http_requests_total{method="POST",route="/predict",status="422"}'
    other = 'http_requests_total{method="GET",route="other",status="404"}'
    made_up = 'http_requests_total{method="other",route="other",status="404"}'
    before = client.get("/metrics").text
    predict(client, {"instances": [SETOSA, VIRGINICA, SETOSA]})
    predict(client, {"instances": [[1.0]]})
    client.get("/wp-admin/../random")
    for method in ("BREW", "PROPFIND", "X-SCAN"):  # made-up methods share one series
        client.request(method, "/nope")
    response = client.get("/metrics")
    after = response.text

    assert response.headers["content-type"].startswith("text/plain; version=")
    assert sample(after, ok) == sample(before, ok) + 1
    assert sample(after, bad) == sample(before, bad) + 1
    assert sample(after, other) == sample(before, other) + 1
    assert sample(after, made_up) == sample(before, made_up) + 3
    assert sample(after, "model_predictions_total") == sample(before, "model_predictions_total") + 3
    count = 'http_request_duration_seconds_count{method="POST",route="/predict"}'
    assert sample(after, count) == sample(before, count) + 2
    assert sample(after, "model_loaded") == 1.0


def test_loading_refuses_a_model_file_that_does_not_match_its_metadata(model_dir: Path, tmp_path: Path) -> None:
    for name in (MODEL_FILE, METADATA_FILE):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / MODEL_FILE).write_bytes((model_dir / MODEL_FILE).read_bytes() + b"tampered")
    with pytest.raises(ModelLoadError, match="SHA-256"):
        load_model(tmp_path)

    (tmp_path / MODEL_FILE).write_bytes((model_dir / MODEL_FILE).read_bytes())
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    (tmp_path / METADATA_FILE).write_text(json.dumps({**metadata, "sklearn_version": "0.1"}))
    with pytest.raises(ModelLoadError, match=r"trained with scikit-learn 0\.1 "):
        load_model(tmp_path)

    (tmp_path / METADATA_FILE).write_text("{")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(tmp_path)


def test_training_is_reproducible(model_dir: Path, tmp_path: Path) -> None:
    info = train(tmp_path)
    assert info.model_sha256 == json.loads((model_dir / METADATA_FILE).read_text())["model_sha256"]
    assert info.test_accuracy >= 0.9


def test_latencies_counted_between_publications_land_in_the_histogram_as_observe_would_put_them() -> None:
    from model_server import metrics  # noqa: PLC0415

    def samples() -> dict[str, float]:
        text = metrics.render()[0].decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("http_request_duration_seconds") and 'route="/metrics"' in line
                and 'method="PUT"' in line}

    before = samples()
    for seconds in (0.003, 0.003, 0.0251, 99.0):
        metrics.observe("PUT", "/metrics", 405, seconds)
    after = samples()

    def delta(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    bucket = 'http_request_duration_seconds_bucket{le="%s",method="PUT",route="/metrics"}'
    assert [delta(bucket % le) for le in ("0.0025", "0.005", "0.025", "0.05", "10.0", "+Inf")] == [0, 2, 2, 3, 3, 4]
    assert delta('http_request_duration_seconds_count{method="PUT",route="/metrics"}') == 4
    assert delta('http_request_duration_seconds_sum{method="PUT",route="/metrics"}') == pytest.approx(99.0311)


def published(method: str) -> float:
    """http_requests_total for `method` /metrics answered 405, as /metrics renders it (publishing first)."""
    from model_server import metrics  # noqa: PLC0415

    count = f'http_requests_total{{method="{method}",route="/metrics",status="405"}}'
    text = metrics.render()[0].decode()
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(count)), 0.0)


def test_a_worker_that_answers_faster_than_it_publishes_keeps_its_unpublished_requests_bounded() -> None:
    from model_server import metrics  # noqa: PLC0415

    before = published("PATCH")
    for _ in range(metrics.MAX_UNPUBLISHED + 1):
        metrics.observe("PATCH", "/metrics", 405, 0.001)
    assert len(metrics._answered) < metrics.MAX_UNPUBLISHED
    assert published("PATCH") - before == metrics.MAX_UNPUBLISHED + 1


def test_requests_are_published_exactly_once_while_another_thread_publishes() -> None:
    """In-process tests run apps (and their publishing loops) on other threads while a test counts requests."""
    import sys  # noqa: PLC0415

    from model_server import metrics  # noqa: PLC0415

    before = published("DELETE")
    stop = threading.Event()

    def publish_until_stopped() -> None:
        while not stop.is_set():
            metrics.publish()

    other = threading.Thread(target=publish_until_stopped)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so the two publishers interleave
    try:
        other.start()
        for _ in range(30_000):
            metrics.observe("DELETE", "/metrics", 405, 0.001)
    finally:
        stop.set()
        other.join()
        sys.setswitchinterval(interval)
    assert published("DELETE") - before == 30_000
