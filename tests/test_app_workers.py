"""Worker count: one per vCPU of the task, from WEB_CONCURRENCY, ECS task metadata, the cgroup, or the CPUs."""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_server.workers import cgroup_cpu_limit, ecs_task_cpu_limit, worker_count
from tests.local_http import serving


def count(env: dict[str, str] | None = None, ecs: float | None = None, cgroup: float | None = None,
          cpus: int = 8) -> int:
    return worker_count(env or {}, ecs_limit=lambda _: ecs, cgroup_limit=lambda: cgroup, available=lambda: cpus)


@pytest.mark.parametrize(("ecs", "cgroup", "cpus", "expected"), [
    (2.0, None, 8, 2),      # prod: taskCpu 2048 on a c6i.2xlarge
    (0.5, None, 2, 1),      # dev: taskCpu 512 rounds up to one worker
    (1.5, 4.0, 8, 2),       # the task limit wins over the container's cgroup
    (4.0, None, 2, 2),      # never more workers than CPUs
    (None, 3.0, 8, 3),      # docker run --cpus 3
    (None, None, 6, 6),     # no limit anywhere: every CPU
])
def test_one_worker_per_vcpu_of_the_task(ecs: float | None, cgroup: float | None, cpus: int, expected: int) -> None:
    assert count(ecs=ecs, cgroup=cgroup, cpus=cpus) == expected


def test_web_concurrency_overrides_and_must_be_a_positive_number() -> None:
    assert count({"WEB_CONCURRENCY": "5"}, ecs=2.0) == 5
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="WEB_CONCURRENCY"):
            count({"WEB_CONCURRENCY": bad})


def test_cgroup_v2_and_v1_quotas(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None

    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1) is None
    assert cgroup_cpu_limit(tmp_path / "missing") is None


@pytest.fixture
def metadata_server() -> Iterator[tuple[str, dict[str, object]]]:
    """A stand-in for the ECS task metadata endpoint, on 127.0.0.1."""
    task: dict[str, object] = {}

    def respond(path: str) -> tuple[int, bytes]:
        return 200 if path == "/v4/abc/task" else 404, json.dumps(task).encode()

    with serving(respond) as port:
        yield f"http://127.0.0.1:{port}/v4/abc", task


def test_the_task_cpu_limit_comes_from_ecs_task_metadata(metadata_server: tuple[str, dict[str, object]]) -> None:
    url, task = metadata_server
    env = {"ECS_CONTAINER_METADATA_URI_V4": url}
    task["Limits"] = {"CPU": 2, "Memory": 4096}
    assert ecs_task_cpu_limit(env) == 2.0
    task["Limits"] = {"CPU": 0.25, "Memory": 512}
    assert ecs_task_cpu_limit(env) == 0.25
    task.clear()  # no task-level limit
    assert ecs_task_cpu_limit(env) is None
    assert ecs_task_cpu_limit({}) is None
    assert ecs_task_cpu_limit({"ECS_CONTAINER_METADATA_URI_V4": url + "/missing"}) is None


@pytest.mark.parametrize(("drain", "graceful", "refused"), [("5", "20", False), ("0", "20", False),
                                                          ("20", "20", True), ("30", "20", True), ("-1", "20", True)])
def test_the_drain_must_fit_in_the_graceful_shutdown(drain: str, graceful: str, refused: bool,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Everything gunicorn_conf.py writes to the environment is set here first, so monkeypatch restores it.
    for name, value in {"DRAIN_SECONDS": drain, "GRACEFUL_TIMEOUT": graceful, "WEB_CONCURRENCY": "1",
                        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "MODEL_SERVER_READY_DIR": "",
                        "MODEL_SERVER_WORKERS": ""}.items():
        monkeypatch.setenv(name, value)
    conf = Path(__file__).resolve().parent.parent / "app" / "gunicorn_conf.py"
    if refused:
        with pytest.raises(SystemExit, match=f"DRAIN_SECONDS={float(drain):g} must be at least 0 and below "
                                             f"GRACEFUL_TIMEOUT={graceful}"):
            runpy.run_path(str(conf))
    else:
        assert runpy.run_path(str(conf))["drain_seconds"] == float(drain)
