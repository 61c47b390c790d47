"""Measure the reference server's throughput and latency on this machine with wrk, on 127.0.0.1 only.

    python app/benchmark.py [--workers 1] [--concurrency 1,4,16,64] [--duration 15] [--rows 1]

Trains the model into a temporary directory, starts the server as the image does (gunicorn + uvicorn workers)
on 127.0.0.1, waits for /health, warms up, then runs wrk (Debian package `wrk`) against POST /predict at each
concurrency for a fixed time and prints requests/s and p50/p99 latency, in total and per worker, as a
Markdown table (and as JSON with --json). The server is pinned to --server-cpus and wrk to --client-cpus, so
on a 2-core machine one worker gets a core of its own: the per-worker numbers are per-vCPU numbers.
--cpu-quota 0.5 also caps the server at half a CPU with a cgroup CPU quota (run as root), as ECS does for a
task of 512 CPU units.
Every run is bounded: wrk stops after --duration seconds, and the script stops the server with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).resolve().parent
START_SECONDS = 60
ROW = [5.1, 3.5, 1.4, 0.2]
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, latency percentiles (ms), and error counts from `wrk --latency` output."""
    result: dict[str, float] = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])}  # type: ignore[index]
    for percentile in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.MULTILINE)
        result[f"p{percentile}_ms"] = _ms(match[1]) if match else float("nan")
    result["requests"] = float(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = float(non_2xx[1]) if non_2xx else 0.0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = float(sum(int(n) for n in errors.groups())) if errors else 0.0
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(command: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus and shutil.which("taskset") else command


def cpu_limited(command: list[str], quota: float) -> tuple[list[str], Path | None]:
    """Run `command` in a new cgroup capped at `quota` CPUs (cgroup v1 or v2); the cgroup to remove after."""
    if quota <= 0:
        return command, None
    period = 100_000
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cgroup.controllers")
    if v1.is_dir():
        group = v1 / f"model-server-bench-{os.getpid()}"
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(int(quota * period)))
    elif v2.is_file():
        group = Path("/sys/fs/cgroup") / f"model-server-bench-{os.getpid()}"
        group.mkdir()
        (group / "cpu.max").write_text(f"{int(quota * period)} {period}")
    else:
        raise SystemExit("--cpu-quota needs a writable cgroup CPU controller")
    return ["sh", "-c", f'echo $$ > {group / "cgroup.procs"} && exec "$@"', "sh", *command], group


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become healthy in time")


def run_wrk(url: str, script: Path, concurrency: int, duration: int, cpus: str) -> dict[str, float]:
    command = pinned(["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "5s", "--latency",
                      "-s", str(script), url + "/predict"], cpus)
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True)
    return parse_wrk(done.stdout)


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return {"nproc": os.cpu_count(), "cpu_model": model[1].strip() if model else "unknown",
            "cpu_mhz": mhz[1].strip() if mhz else "unknown", "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated open connections")
    parser.add_argument("--duration", type=int, default=15, help="seconds per concurrency (at most 120)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1, help="instances per request")
    parser.add_argument("--server-cpus", default="0", help="CPUs for the server (taskset list; empty: any)")
    parser.add_argument("--client-cpus", default="1", help="CPUs for wrk (taskset list; empty: any)")
    parser.add_argument("--cpu-quota", type=float, default=0.0, help="cap the server at this many CPUs (cgroup)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    duration = max(1, min(args.duration, 120))
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    sys.path.insert(0, str(APP_DIR))
    from model_server.train import train  # noqa: PLC0415 - after the path is set

    with tempfile.TemporaryDirectory(prefix="model-server-bench-") as scratch:
        model_dir = Path(scratch) / "model"
        train(model_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(args.workers),
               "MODEL_DIR": str(model_dir), "TMPDIR": scratch, "PYTHONPATH": str(APP_DIR),
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command, group = cpu_limited(pinned([sys.executable, "-m", "gunicorn", "--config",
                                             str(APP_DIR / "gunicorn_conf.py"), "model_server.main:create_app()"],
                                            args.server_cpus), args.cpu_quota)
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            wait_healthy(url, server)
            script = Path(scratch) / "predict.lua"
            script.write_text(LUA.format(body=json.dumps({"instances": [ROW] * args.rows})))
            run_wrk(url, script, 4, args.warmup, args.client_cpus)
            results = []
            for concurrency in concurrencies:
                measured = run_wrk(url, script, concurrency, duration, args.client_cpus)
                measured["concurrency"] = concurrency
                measured["per_worker_rps"] = measured["requests_per_second"] / args.workers
                results.append(measured)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)  # the workers too
                server.wait(timeout=10)
            if group is not None:
                group.rmdir()

    report = {"machine": machine(), "workers": args.workers, "rows_per_request": args.rows, "cpu_quota": args.cpu_quota,
              "duration_seconds": duration, "server_cpus": args.server_cpus, "client_cpus": args.client_cpus,
              "results": results}
    print(f"machine: {report['machine']}; workers: {args.workers}; rows/request: {args.rows}; "
          f"{duration} s per concurrency; server on CPUs {args.server_cpus or 'any'}"
          f"{f' capped at {args.cpu_quota} CPU' if args.cpu_quota else ''}, wrk on {args.client_cpus or 'any'}")
    print("| connections | requests/s | requests/s per worker | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['concurrency']} | {r['requests_per_second']:.0f} | {r['per_worker_rps']:.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']:.0f} | {r['socket_errors']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
