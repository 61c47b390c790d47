"""The server's CloudWatch metrics as Embedded Metric Format lines: the shape the EMF specification requires,
the names and units the stack's dashboard and alarms use, and aggregation that bounds how often a line is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.mmap_dict import MmapedDict

from model_server import metrics
from model_server.emf import MAX_UNCOUNTED, MAX_VALUES, EmfPublisher, two_significant_digits
from model_server.main import create_app
from model_server.model import load_model
from tests.app_support import predict, run, running, trained_model_dir


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.25

    def __call__(self) -> float:
        return self.now


def publisher(**kwargs: Any) -> tuple[EmfPublisher, list[dict[str, Any]], Clock]:
    lines: list[str] = []
    clock = Clock()
    emf = EmfPublisher(write=lines.append, clock=clock, **kwargs)
    return emf, lines, clock  # type: ignore[return-value]


def documents(lines: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def assert_valid_emf(document: dict[str, Any]) -> None:
    """The EMF specification's rules for one document (structured log event)."""
    aws = document["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 10**12  # epoch milliseconds
    assert len(aws["CloudWatchMetrics"]) >= 1
    for directive in aws["CloudWatchMetrics"]:
        assert 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for dimension in dimension_set:
                assert isinstance(document[dimension], str)  # a dimension's value is a string member
        assert 1 <= len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            value = document[definition["Name"]]  # every metric is a member of the root
            assert len(value["Values"]) == len(value["Counts"]) <= 100
            assert all(isinstance(v, float) for v in value["Values"])
            assert all(isinstance(c, int) and c > 0 for c in value["Counts"])


def test_one_line_holds_every_metric_as_values_and_counts_under_the_service_dimension() -> None:
    emf, lines, _ = publisher(namespace="ModelServing", service_name="model-serving-dev")
    for ms in (0.512, 0.518, 0.53, 12.3):
        emf.latency_ms(ms)
    emf.batch_size(1)
    emf.batch_size(1)
    emf.batch_size(17)
    emf.in_flight(3)
    emf.flush()
    (document,) = documents(lines)
    assert_valid_emf(document)
    assert document["_aws"]["Timestamp"] == 1_800_000_000_250
    assert document["_aws"]["CloudWatchMetrics"] == [{
        "Namespace": "ModelServing", "Dimensions": [["ServiceName"]],
        "Metrics": [{"Name": "InferenceLatency", "Unit": "Milliseconds"}, {"Name": "BatchSize", "Unit": "Count"},
                    {"Name": "InFlightRequests", "Unit": "Count"}]}]
    assert document["ServiceName"] == "model-serving-dev"
    assert document["InferenceLatency"] == {"Values": [0.51, 0.52, 0.53, 12.0], "Counts": [1, 1, 1, 1]}
    assert document["BatchSize"] == {"Values": [1.0, 17.0], "Counts": [2, 1]}
    assert document["InFlightRequests"] == {"Values": [3.0], "Counts": [1]}


def test_a_line_is_written_per_interval_only_with_values_and_early_when_a_metric_is_full() -> None:
    emf, lines, clock = publisher(interval_seconds=10)
    emf.tick()
    emf.in_flight(0)
    clock.now += 9
    emf.tick()
    assert lines == []
    clock.now += 1
    emf.tick()
    assert len(lines) == 1
    clock.now += 10
    emf.tick()
    assert len(lines) == 1  # nothing collected: nothing written
    for i in range(MAX_VALUES * 2 + 5):
        emf.batch_size(i + 1)
    assert len(lines) == 1  # a request only appends its value: they are counted every second
    emf.tick()
    assert len(lines) == 3  # written as soon as a metric holds the 100 distinct values EMF allows
    assert sum(documents(lines)[-1]["BatchSize"]["Counts"]) == MAX_VALUES
    for document in documents(lines):
        assert_valid_emf(document)


def test_values_a_busy_worker_records_between_ticks_stay_bounded() -> None:
    emf, lines, _ = publisher()
    for _ in range(MAX_UNCOUNTED * 2 + 1):
        emf.latency_ms(0.25)
    assert len(emf.unrecorded["InferenceLatency"]) < MAX_UNCOUNTED
    emf.flush()
    assert documents(lines)[-1]["InferenceLatency"] == {"Values": [0.25], "Counts": [MAX_UNCOUNTED * 2 + 1]}


def test_metrics_without_values_are_left_out_of_the_line() -> None:
    emf, lines, _ = publisher()
    emf.in_flight(2)
    emf.flush()
    (document,) = documents(lines)
    assert [m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["InFlightRequests"]
    assert "InferenceLatency" not in document


def test_namespace_service_and_interval_come_from_the_environment() -> None:
    emf = EmfPublisher.from_environment({"METRICS_NAMESPACE": "Acme/Models", "METRICS_SERVICE_NAME": "iris-prod",
                                         "METRICS_INTERVAL_SECONDS": "30"})
    assert (emf.namespace, emf.service_name, emf.interval) == ("Acme/Models", "iris-prod", 30)
    default = EmfPublisher.from_environment({})
    assert (default.namespace, default.service_name, default.interval) == ("ModelServing", "model-server", 10)
    with pytest.raises(ValueError, match="METRICS_INTERVAL_SECONDS"):
        EmfPublisher.from_environment({"METRICS_INTERVAL_SECONDS": "0"})


@pytest.mark.parametrize(("value", "rounded"), [(0.0123456, 0.012), (1.26, 1.3), (987.0, 990.0), (0.0, 0.0)])
def test_latencies_keep_two_significant_digits(value: float, rounded: float) -> None:
    assert two_significant_digits(value) == rounded


def test_in_flight_requests_are_the_sum_over_every_worker_of_the_task(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key = '["http_requests_in_flight", "http_requests_in_flight", {}, "Requests being handled now."]'
    for pid, value in ((101, 3.0), (102, 4.0)):
        worker = MmapedDict(str(tmp_path / f"gauge_livesum_{pid}.db"))
        worker.write_value(key, value, 0.0)
        worker.write_value('["other_gauge", "other_gauge", {}, ""]', 50.0, 0.0)
        worker.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert metrics.task_in_flight() == 7.0


def test_the_server_records_each_requests_inference_latency_and_flushes_on_shutdown() -> None:
    lines: list[str] = []
    app = create_app(lambda: load_model(trained_model_dir()), emf=EmfPublisher(write=lines.append))

    async def scenario() -> None:
        async with running(app) as server:
            for _ in range(3):
                assert (await predict(server, {"instances": [[5.1, 3.5, 1.4, 0.2]] * 2}))[0] == 200
            assert lines == []  # nothing per request

    run(scenario())
    (document,) = documents(lines)
    assert_valid_emf(document)
    assert sum(document["InferenceLatency"]["Counts"]) == 3
    assert document["BatchSize"] == {"Values": [2.0], "Counts": [3]}
