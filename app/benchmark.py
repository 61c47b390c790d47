"""Measure the reference server against a bare ASGI baseline, side by side in one run, with wrk on 127.0.0.1.

    venv/bin/python app/benchmark.py [--workers 1] [--concurrency 1,8,64] [--duration 15] [--repeat 1] [--rows 1]
    venv/bin/python app/benchmark.py --hostile        # what refusing hostile bodies costs the server

Trains the model into a temporary directory and starts, each as the image does (gunicorn, the config file,
one process per --workers, OMP_NUM_THREADS=1) on 127.0.0.1:
- `bare`: `bare_app` below, a plain ASGI app doing the same work as /predict (json.loads, the same model's
  predict_proba, the same response JSON) with no validation, limits or metrics, on uvicorn's own worker;
- `batching off` and `batching on`: the server with BATCH_MAX_SIZE 1, and with the defaults (or
  --batch-max-size / --batch-max-wait-ms).
It waits for /health, warms each up, then for each concurrency runs wrk against each variant in turn for
--duration seconds (so drift on the machine hits all alike), --repeat rounds, and prints the median
requests/s, instances/s and p50/p99 latency per variant, and each server's ratio to `bare` in the same run,
with the server's own CPU time per request (from /proc: other load on the machine barely moves it, unlike
requests/s and latency), as a Markdown table (also JSON with --json). The servers are pinned to --server-cpus and wrk to
--client-cpus, so on a 2-core machine one worker has one core: the numbers per worker are numbers per vCPU.
--cpu-quota 0.5 also caps the servers at half a CPU with a cgroup CPU quota (root), as ECS does for a task of
512 CPU units.

--hostile sends valid 1,000-row bodies, then 1 MiB bodies of empty rows (declared, and chunked without a
length) and 200 kB ones (under the body limit) to the server, one at a time, and reports the server's CPU
time per request (from /proc) and how much its resident memory grew, with the status each answered.
Every run is bounded: wrk stops after --duration seconds, and the script stops the servers with SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
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
BARE, OFF, ON = "bare", "batching off", "batching on"
HOSTILE_REQUESTS = 20


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


# --- the bare baseline: what any server must do for /predict, and nothing else ---------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
_bare_model: list[Any] = []


async def bare_app(scope: Scope, receive: Callable[[], Awaitable[Message]],
                   send: Callable[[Message], Awaitable[None]]) -> None:
    """A plain ASGI app: POST /predict (no checks at all) and GET /health, with the server's model and JSON."""
    if scope["type"] != "http":
        return
    if not _bare_model:
        import numpy as np  # noqa: PLC0415

        from model_server.model import load_model  # noqa: PLC0415

        _bare_model.extend([load_model(Path(os.environ["MODEL_DIR"])), np])
    model, np = _bare_model
    payload: Any = {"status": "ok"}
    if scope["path"] == "/predict":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        rows = np.asarray(json.loads(body)["instances"], dtype=np.float64)
        payload = {"model": {"name": model.info.name, "version": model.info.version},
                   "predictions": model.predictions(model.probabilities(rows))}
    content = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})


# --- running servers and wrk ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(command: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus and shutil.which("taskset") else command


def cpu_limited(command: list[str], quota: float, name: str) -> tuple[list[str], Path | None]:
    """Run `command` in a new cgroup capped at `quota` CPUs (cgroup v1 or v2); the cgroup to remove after."""
    if quota <= 0:
        return command, None
    period = 100_000
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cgroup.controllers")
    if v1.is_dir():
        group = v1 / f"model-server-bench-{os.getpid()}-{name}"
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(int(quota * period)))
    elif v2.is_file():
        group = Path("/sys/fs/cgroup") / f"model-server-bench-{os.getpid()}-{name}"
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


@contextlib.contextmanager
def server(name: str, app: str, env: dict[str, str], args: argparse.Namespace,
           worker_class: str | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--config", str(APP_DIR / "gunicorn_conf.py"), app]
    if worker_class:
        command[5:5] = ["--worker-class", worker_class]
    command, group = cpu_limited(pinned(command, args.server_cpus), args.cpu_quota, name.replace(" ", "-"))
    tmp = Path(env["TMPDIR"]) / name.replace(" ", "-")
    tmp.mkdir()
    process = subprocess.Popen(command, env={**env, "PORT": str(port), "TMPDIR": str(tmp)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the workers too
            process.wait(timeout=10)
        if group is not None:
            group.rmdir()


def base_environment(model_dir: Path, scratch: str, workers: int) -> dict[str, str]:
    env = {**os.environ, "HOST": "127.0.0.1", "WEB_CONCURRENCY": str(workers), "MODEL_DIR": str(model_dir),
           "TMPDIR": scratch, "PYTHONPATH": str(APP_DIR), "DRAIN_SECONDS": "0",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def compare(args: argparse.Namespace, model_dir: Path, scratch: str) -> dict[str, Any]:
    env = base_environment(model_dir, scratch, args.workers)
    batching = {"BATCH_MAX_SIZE": str(args.batch_max_size)} if args.batch_max_size else {}
    if args.batch_max_wait_ms is not None:
        batching["BATCH_MAX_WAIT_MS"] = str(args.batch_max_wait_ms)
    script = Path(scratch) / "predict.lua"
    script.write_text(LUA.format(body=json.dumps({"instances": [ROW] * args.rows})))
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        urls = {
            BARE: stack.enter_context(server(BARE, "benchmark:bare_app", env, args, "uvicorn_worker.UvicornWorker")),
            OFF: stack.enter_context(server(OFF, "model_server.main:create_app()", {**env, "BATCH_MAX_SIZE": "1"},
                                            args)),
            ON: stack.enter_context(server(ON, "model_server.main:create_app()", {**env, **batching}, args)),
        }
        for url, _ in urls.values():
            run_wrk(url, script, 4, args.warmup, args.client_cpus)
        workers = {variant: _worker_pids(process.pid) for variant, (_, process) in urls.items()}
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.repeat):  # rounds, each variant in turn: drift on the machine hits all alike
            for concurrency in args.concurrency:
                for variant, (url, _) in urls.items():
                    cpu = _cpu_seconds(workers[variant])
                    measured = run_wrk(url, script, concurrency, args.duration, args.client_cpus)
                    # The server's own CPU per request: unlike requests/s, other load on the machine barely moves it.
                    measured["cpu_ms_per_request"] = (_cpu_seconds(workers[variant]) - cpu) * 1000 / max(
                        1.0, measured["requests"])
                    runs.setdefault((variant, concurrency), []).append(measured)
    for (variant, concurrency), rounds in runs.items():
        median = {key: statistics.median(m[key] for m in rounds) for key in rounds[0]}
        median.update(non_2xx=sum(m["non_2xx"] for m in rounds), socket_errors=sum(m["socket_errors"] for m in rounds))
        results.append({**median, "variant": variant, "concurrency": concurrency, "rounds": len(rounds),
                        "instances_per_second": median["requests_per_second"] * args.rows})
    by_key = {(r["variant"], r["concurrency"]): r for r in results}
    for r in results:
        bare = by_key[(BARE, r["concurrency"])]
        r["throughput_vs_bare"] = r["requests_per_second"] / bare["requests_per_second"]
        r["p99_vs_bare"] = r["p99_ms"] / bare["p99_ms"]
        r["instances_vs_batching_off"] = r["instances_per_second"] / by_key[(OFF, r["concurrency"])][
            "instances_per_second"]
        r["instances_per_cpu_second"] = 1000 * args.rows / r["cpu_ms_per_request"]
        r["cpu_per_request_vs_bare"] = r["cpu_ms_per_request"] / bare["cpu_ms_per_request"]
    return {"results": results}


def print_comparison(report: dict[str, Any]) -> None:
    print("| connections | variant | requests/s | instances/s | p50 ms | p99 ms | throughput / bare | p99 / bare "
          "| instances/s / batching off | server CPU ms per request | CPU per request / bare | instances per CPU-s "
          "| non-2xx | socket errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report["results"]:
        print(f"| {r['concurrency']} | {r['variant']} | {r['requests_per_second']:.0f} | "
              f"{r['instances_per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['throughput_vs_bare']:.2f} | {r['p99_vs_bare']:.2f} | {r['instances_vs_batching_off']:.2f} | "
              f"{r['cpu_ms_per_request']:.3f} | {r['cpu_per_request_vs_bare']:.2f} | "
              f"{r['instances_per_cpu_second']:.0f} | {r['non_2xx']:.0f} | {r['socket_errors']:.0f} |")


# --- hostile bodies --------------------------------------------------------------------------------------------

def _worker_pids(master: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{master}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return children


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
        total += int(match[1]) if match else 0
    return total / 1024


def _post(url: str, body: bytes, chunked: bool) -> int:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if chunked:
            connection.request("POST", "/predict", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                               headers=headers, encode_chunked=True)
        else:
            connection.request("POST", "/predict", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException):
        return 0  # the server closed the connection while the rest of the body was being sent
    finally:
        connection.close()


def hostile(args: argparse.Namespace, model_dir: Path, scratch: str) -> dict[str, Any]:
    env = base_environment(model_dir, scratch, 1)
    valid = json.dumps({"instances": [ROW] * 1000}).encode()
    empty_rows = b'{"instances": [' + b"[], " * ((1 << 20) // 4 - 8) + b"[]]}"
    under_limit = b'{"instances": [' + b"[], " * 50_000 + b"[]]}"  # 200 kB: under the default limit
    cases = [("valid, 1,000 rows", valid, False), ("1 MiB of empty rows", empty_rows, False),
             ("1 MiB of empty rows, chunked", empty_rows, True), ("200 kB of empty rows", under_limit, False)]
    results = []
    with server("hostile", "model_server.main:create_app()", env, args) as (url, process):
        pids = _worker_pids(process.pid)  # taskset and sh exec their command: this is gunicorn's master
        for name, body, chunked in cases:
            rss, cpu = _rss_mib(pids), _cpu_seconds(pids)
            statuses = {_post(url, body, chunked) for _ in range(HOSTILE_REQUESTS)}
            results.append({"body": name, "bytes": len(body), "statuses": sorted(statuses),
                            "cpu_ms_per_request": (_cpu_seconds(pids) - cpu) * 1000 / HOSTILE_REQUESTS,
                            "rss_growth_mib": _rss_mib(pids) - rss, "health": _health(url)})
    return {"hostile": results}


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return int(response.status)
    except OSError:
        return 0


def print_hostile(report: dict[str, Any]) -> None:
    print("| body | bytes | answered | server CPU ms per request | worker RSS growth MiB | /health after |")
    print("|---|---:|---|---:|---:|---:|")
    for r in report["hostile"]:
        print(f"| {r['body']} | {r['bytes']} | {', '.join(map(str, r['statuses']))} | "
              f"{r['cpu_ms_per_request']:.2f} | {r['rss_growth_mib']:.1f} | {r['health']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated open connections")
    parser.add_argument("--duration", type=int, default=15, help="seconds per concurrency and variant (1-120)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the table shows each variant's median")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1, help="instances per request")
    parser.add_argument("--batch-max-size", type=int, help="BATCH_MAX_SIZE of `batching on` (default: the server's)")
    parser.add_argument("--batch-max-wait-ms", type=float, help="BATCH_MAX_WAIT_MS of `batching on`")
    parser.add_argument("--server-cpus", default="0", help="CPUs for the servers (taskset list; empty: any)")
    parser.add_argument("--client-cpus", default="1", help="CPUs for wrk (taskset list; empty: any)")
    parser.add_argument("--cpu-quota", type=float, default=0.0, help="cap each server at this many CPUs (cgroup)")
    parser.add_argument("--hostile", action="store_true", help="measure hostile bodies instead of throughput")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.hostile and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    args.duration = max(1, min(args.duration, 120))
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    sys.path.insert(0, str(APP_DIR))
    from model_server.train import train  # noqa: PLC0415 - after the path is set

    with tempfile.TemporaryDirectory(prefix="model-server-bench-") as scratch:
        model_dir = Path(scratch) / "model"
        train(model_dir)
        report = hostile(args, model_dir, scratch) if args.hostile else compare(args, model_dir, scratch)
    report.update(machine=machine(), workers=args.workers, rows_per_request=args.rows, cpu_quota=args.cpu_quota,
                  duration_seconds=args.duration, server_cpus=args.server_cpus, client_cpus=args.client_cpus)
    print(f"machine: {report['machine']}; workers: {args.workers}; rows/request: {args.rows}; "
          f"{args.duration} s per run; servers on CPUs {args.server_cpus or 'any'}"
          f"{f' capped at {args.cpu_quota} CPU' if args.cpu_quota else ''}, wrk on {args.client_cpus or 'any'}")
    (print_hostile if args.hostile else print_comparison)(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
