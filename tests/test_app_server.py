"""The real server (gunicorn + uvicorn workers) as a process on 127.0.0.1, as the container runs it.

Where the machine allows a private mount namespace (`unshare -m`, root), the server runs with the root
filesystem read-only and a fresh tmpfs as its only writable place, like the prod task (readOnlyRootFilesystem
with the scratch volume): anything it wrote elsewhere would fail the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.settings import project_schema
from model_server.train import train
from tests.app_support import README_MODEL_DIR, fresh_clone, readme_server_commands
from tests.local_http import serving

pytestmark = pytest.mark.integration  # tests/conftest.py: run by .ci/run, not by the quick suite

START_SECONDS = 30
STOP_SECONDS = 15
DRAIN_SECONDS = 0.3
HEADER_TIMEOUT_SECONDS = 0.3
KEEPALIVE_SECONDS = 1
ISOLATE = """
set -e
mount --make-rprivate /
mount -o remount,bind,ro /
mount -t tmpfs -o mode=1777,size=64m scratch "$TMPDIR"
if touch "$MODEL_DIR/probe" 2>/dev/null; then echo "the root filesystem is still writable" >&2; exit 97; fi
exec "$@"
"""


def _can_isolate() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --make-rprivate / && mount -t tmpfs t /mnt"],
                           capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 2) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def health_check_command(port: int, path: str = "/health") -> str:
    command: str = project_schema()["containerHealthCheckCommand"]["default"]
    return command.replace("{port}", str(port)).replace("{path}", path)


EARLY_SERVER = pytest.StashKey["Server"]()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    scratch: Path
    isolated: bool
    log: Path
    silent: socket.socket | None = None  # a connection that never sends anything (see the hostile test)
    silent_since: float = 0.0
    slow: socket.socket | None = None  # a connection whose request head never ends (see the hostile test)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def master(self) -> int:
        """gunicorn's master: the README's command runs under a shell (and unshare), which may not exec it."""
        pending = [self.process.pid]
        while pending:
            pid = pending.pop(0)
            with contextlib.suppress(OSError):
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if Path(args[0].decode()).name.startswith("python") and any(a.endswith(b"gunicorn") for a in args):
                    return pid
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending += [int(child) for child in (task / "children").read_text().split()]
        raise AssertionError(f"no gunicorn process under {self.process.pid}")


def launch(workdir: Path) -> Server:
    """Train a model (in this process, whose scikit-learn is loaded already; tests/test_app_readme.py runs the
    README's train command) and start the server in the background exactly as app/README.md's "without Docker"
    command does, from a directory laid out like a fresh clone; `wait_until_healthy` waits for it."""
    model_dir, scratch, log = workdir / "model", workdir / "scratch", workdir / "server.log"
    train(model_dir)
    scratch.mkdir()
    clone = fresh_clone(workdir / "clone")
    serve_command = readme_server_commands()[1].replace(README_MODEL_DIR, str(model_dir))
    port, isolated = free_port(), _can_isolate()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2", "GRACEFUL_TIMEOUT": "10",
           "DRAIN_SECONDS": str(DRAIN_SECONDS), "HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_SECONDS),
           "KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
           "METRICS_INTERVAL_SECONDS": "1", "MODEL_DIR": str(model_dir), "TMPDIR": str(scratch),
           "HOME": str(workdir / "home"), "PYTHONDONTWRITEBYTECODE": "1",
           "SERVE": serve_command, "ISOLATE": ISOLATE}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "PYTHONPATH"):  # the README's commands set what they need
        env.pop(name, None)
    serve = 'exec unshare -m -- sh -c "$ISOLATE" sh sh -c "$SERVE"' if isolated else 'exec sh -c "$SERVE"'
    with log.open("wb") as output:
        # Its own process group, so teardown can stop the workers too even if the master is gone.
        process = subprocess.Popen(["sh", "-c", serve], env=env, cwd=clone,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    running = Server(process, port, scratch, isolated, log)
    threading.Thread(target=_open_idle_connections, args=(running,), daemon=True).start()
    return running


def _open_idle_connections(running: Server) -> None:
    """As soon as the server listens, open the two connections the hostile test checks much later, so their
    timeouts run out while other tests run: one that never sends a byte, one whose request head never ends."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            silent = socket.create_connection(("127.0.0.1", running.port), timeout=1)
        except OSError:
            time.sleep(0.05)
            continue
        running.silent, running.silent_since = silent, time.monotonic()
        running.slow = socket.create_connection(("127.0.0.1", running.port), timeout=1)
        running.slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        return


def wait_until_healthy(running: Server) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert running.process.poll() is None, f"the server exited with {running.process.returncode}:\n{running.logs()}"
        assert time.monotonic() < deadline, f"the server was not healthy in time:\n{running.logs()}"
        try:
            if get(running.url + "/health")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for this module; the SIGTERM test, last in the file, stops it. tests/conftest.py starts it
    as soon as collection is done, so its workers boot on the other core while the rest of the suite runs."""
    running = request.config.stash.get(EARLY_SERVER, None) or launch(tmp_path_factory.mktemp("server"))
    try:
        wait_until_healthy(running)
        yield running
    finally:
        stop_group(running.process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left (a failed test must not leave workers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return  # the master and every worker are gone
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # workers exit right after the master


def _connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_serves_with_a_read_only_root_and_writes_only_to_the_scratch_directory(server: Server) -> None:
    if not server.isolated:
        pytest.skip("this machine does not allow a private mount namespace (unshare -m as root)")
    row = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
    for _ in range(4):  # separate connections, so both workers are likely to answer some
        request = urllib.request.Request(server.url + "/predict", data=row,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    # Every worker writes its samples to the scratch volume (within 0.25 s) and any worker reports the sum.
    deadline = time.monotonic() + 5
    while "model_predictions_total 4.0" not in (text := get(server.url + "/metrics")[1]).splitlines():
        assert time.monotonic() < deadline, text
        time.sleep(0.1)

    # The tmpfs exists only in the server's mount namespace; /proc/<pid>/root shows that view.
    scratch = Path(f"/proc/{server.process.pid}/root") / str(server.scratch).lstrip("/")
    assert sorted(p.name for p in scratch.iterdir()) == ["model-server-metrics", "model-server-ready"]
    assert list(server.scratch.iterdir()) == []  # nothing reached the real directory underneath


def test_the_default_container_health_check_passes_only_when_healthy(server: Server, tmp_path: Path) -> None:
    # The image has `python` on its PATH; here it is this interpreter.
    (tmp_path / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    healthy = subprocess.run(["sh", "-c", health_check_command(server.port)], capture_output=True, timeout=10,
                             check=False, env=env)
    assert healthy.returncode == 0, healthy.stderr

    with serving(lambda path: (503, b"")) as loading_port:
        for port in (loading_port, free_port()):  # answering 503, and not listening at all
            failed = subprocess.run(["sh", "-c", health_check_command(port)], capture_output=True, timeout=10,
                                    check=False, env=env)
            assert failed.returncode != 0


def test_the_release_check_passes_the_reference_server_with_the_shipped_smoke_set(server: Server) -> None:
    """The release hook's HTTP part against the real server: every smoke row answered, and answered right."""
    from infra.release import SMOKE_SET  # noqa: PLC0415 - only this test needs the stack side
    from infra.release_check.check import Config, load_smoke, run  # noqa: PLC0415

    config = Config(url=server.url, min_accuracy_percent=100, p99_ms=5000)
    result = run(config, load_smoke(SMOKE_SET))
    assert result.problems(config) == []
    assert result.right == result.labels == 11


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; the one response, or b"" if the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        response = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                response += chunk
                head, _, body = response.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                if length and len(body) >= int(length[1]):
                    break
    return response


def requests_by_status(server: Server) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in get(server.url + "/metrics")[1].splitlines():
        if line.startswith("http_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


HEAD = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def test_hostile_connections_get_their_documented_answer_are_counted_as_such_and_leave_health_at_200(
        server: Server) -> None:
    before = requests_by_status(server)
    oversized_head = exchange(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 17000 + b"\r\n\r\n")
    assert oversized_head.startswith(b"HTTP/1.1 431 "), oversized_head
    assert server.slow is not None
    with server.slow as slow:  # sent part of its head when the server started (timeouts overlap other tests)
        slow.settimeout(5)
        slow_head = slow.recv(65536)
    assert slow_head.startswith(b"HTTP/1.1 408 "), slow_head
    unsupported = exchange(server.port, HEAD + b"Transfer-Encoding: gzip\r\n\r\n" + b"\x1f\x8b" * 20)
    assert unsupported.startswith(b"HTTP/1.1 400 "), unsupported
    gzip_chunked = exchange(server.port, HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                                         b"4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n")
    assert gzip_chunked.startswith(b"HTTP/1.1 400 ") and b"not valid JSON" in gzip_chunked, gzip_chunked
    # A client that gives up halfway through its body: nothing to answer.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as leaving:
        leaving.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"instances": [[5.1')
        time.sleep(0.1)
    overflow = json.dumps({"instances": [[1, 1, 1, 1e308]]}).encode()
    assert b" 422 " in exchange(server.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(overflow) + overflow)

    expected = {"431": 1, "400": 2, "499": 1, "422": 1}  # the 408 was counted before `before`: checked below
    deadline = time.monotonic() + 5
    while True:  # a worker counts a request just after answering it, and notices a client gone when it reads
        after = requests_by_status(server)
        delta = {status: n - before.get(status, 0) for status, n in after.items() if n - before.get(status, 0)}
        if {s: n for s, n in delta.items() if s != "200"} == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {s: n for s, n in delta.items() if s not in ("200", "408")} == expected
    assert after.get("408") == 1
    assert get(server.url + "/health")[0] == 200
    assert server.silent is not None
    with server.silent as silent:  # closed once idle for KEEPALIVE_SECONDS, as a kept-alive connection is
        silent.settimeout(5)
        assert silent.recv(1) == b""
        assert time.monotonic() - server.silent_since >= KEEPALIVE_SECONDS * 0.9
    logs = server.logs()
    assert "Traceback" not in logs and "Exception in ASGI application" not in logs, logs


def test_each_worker_writes_its_metrics_to_stdout_as_emf(server: Server) -> None:
    deadline = time.monotonic() + 5
    while not (lines := [json.loads(line) for line in server.logs().splitlines() if line.startswith('{"_aws"')]):
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.1)
    directive = lines[-1]["_aws"]["CloudWatchMetrics"][0]
    assert (directive["Namespace"], directive["Dimensions"]) == ("ModelServing", [["ServiceName"]])
    assert {"InFlightRequests"} <= {m["Name"] for m in directive["Metrics"]}
    assert lines[-1]["ServiceName"] == "model-server"


def test_sigterm_stops_accepting_and_finishes_the_request_in_flight(server: Server) -> None:
    assert server.process.poll() is None
    body = json.dumps({"instances": [[6.7, 3.0, 5.2, 2.3]]}).encode()
    # A request whose body is still arriving is in flight: the server has started handling it.
    in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=STOP_SECONDS)
    in_flight.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    time.sleep(0.2)

    os.kill(server.master(), signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.1)
    # Draining: still accepting, /health says the task is going (every worker: separate connections).
    assert [get(server.url + "/health") for _ in range(3)] == [(503, '{"status": "draining"}')] * 3
    deadline = time.monotonic() + STOP_SECONDS
    while not _connection_refused(server.port):
        assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
        time.sleep(0.05)
    assert time.monotonic() - signalled >= DRAIN_SECONDS * 0.9

    in_flight.sendall(body[10:])
    response = b""
    while chunk := in_flight.recv(65536):
        response += chunk
    in_flight.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    assert b"connection: close" in head.lower()
    assert json.loads(payload)["predictions"][0]["label"] == "virginica"

    assert server.process.wait(timeout=STOP_SECONDS) == 0, server.logs()
    assert "Handling signal: term" in server.logs()
