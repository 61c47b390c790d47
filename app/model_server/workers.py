"""How many server processes to run: one per vCPU the task may use.

In order of precedence:
1. `WEB_CONCURRENCY` (the variable gunicorn and uvicorn both honour), when set;
2. the task's CPU limit from the ECS task metadata endpoint (`Limits.CPU` in vCPUs) - on ECS the container
   cannot see the task-level limit in its own cgroup, so this is the reliable source there;
3. the cgroup CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), e.g. `docker
   run --cpus`;
4. the CPUs this process may run on (`os.sched_getaffinity`).
A fractional limit rounds up (0.5 vCPU -> 1 worker) and the result never exceeds the CPUs available.
"""

from __future__ import annotations

import json
import math
import os
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

METADATA_TIMEOUT_SECONDS = 1.0


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def ecs_task_cpu_limit(env: Mapping[str, str]) -> float | None:
    """vCPUs of the task from the ECS task metadata endpoint v4, or None off ECS or without a task limit."""
    base = env.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not base.startswith("http://"):
        return None
    try:
        with urllib.request.urlopen(f"{base}/task", timeout=METADATA_TIMEOUT_SECONDS) as response:
            limits = json.load(response).get("Limits") or {}
        cpu = float(limits["CPU"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cpu if cpu > 0 else None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota, or None when there is no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def worker_count(env: Mapping[str, str] | None = None,
                 ecs_limit: Callable[[Mapping[str, str]], float | None] = ecs_task_cpu_limit,
                 cgroup_limit: Callable[[], float | None] = cgroup_cpu_limit,
                 available: Callable[[], int] = _available_cpus) -> int:
    env = os.environ if env is None else env
    explicit = env.get("WEB_CONCURRENCY", "").strip()
    if explicit:
        try:
            count = int(explicit)
        except ValueError:
            raise ValueError(f"WEB_CONCURRENCY={explicit!r} must be a whole number of at least 1") from None
        if count < 1:
            raise ValueError(f"WEB_CONCURRENCY={explicit!r} must be a whole number of at least 1")
        return count
    cpus = available()
    limit = ecs_limit(env)
    if limit is None:
        limit = cgroup_limit()
    if limit is None:
        return cpus
    return max(1, min(cpus, math.ceil(limit - 1e-9)))
