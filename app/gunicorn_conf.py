"""gunicorn settings for the model server: `gunicorn --config gunicorn_conf.py 'model_server.main:create_app()'`.

gunicorn supervises one uvicorn worker process per vCPU (model_server/workers.py) and restarts any that dies.
On SIGTERM each worker answers /health with 503 for DRAIN_SECONDS while still serving, then stops accepting
and finishes its in-flight requests; gunicorn allows GRACEFUL_TIMEOUT seconds for all of it, then exits. Keep
that below the task's containerStopTimeoutSeconds (ECS sends SIGKILL when that runs out). The server writes
only under the temp directory (TMPDIR, default /tmp: the task's scratch volume), so it runs with a read-only
root filesystem.

Environment (all optional): PORT (8080), HOST (0.0.0.0), WEB_CONCURRENCY (workers), GRACEFUL_TIMEOUT (20 s),
DRAIN_SECONDS (5 s, below GRACEFUL_TIMEOUT), WORKER_TIMEOUT (60 s), KEEPALIVE_SECONDS (130 s: above the ALB
idle timeout, or the ALB may reuse a connection the server is closing and answer 502; also how long a new
connection may stay silent), LOG_LEVEL (info), ACCESS_LOG (false), PROMETHEUS_MULTIPROC_DIR (default: a
directory under the temp directory). The app's and the worker's own variables: app/README.md.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from model_server.worker import DEFAULT_DRAIN_SECONDS
from model_server.workers import worker_count

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{int(os.environ.get('PORT', '8080'))}"
workers = worker_count()
worker_class = "model_server.worker.ModelServerWorker"
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
drain_seconds = float(os.environ.get("DRAIN_SECONDS", "") or DEFAULT_DRAIN_SECONDS)
if not 0 <= drain_seconds < graceful_timeout:
    raise SystemExit(f"DRAIN_SECONDS={drain_seconds:g} must be at least 0 and below GRACEFUL_TIMEOUT="
                     f"{graceful_timeout}: the drain is part of the graceful shutdown")
timeout = int(os.environ.get("WORKER_TIMEOUT", "60"))
keepalive = int(os.environ.get("KEEPALIVE_SECONDS", "130"))
loglevel = os.environ.get("LOG_LEVEL", "info")
errorlog = "-"
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
# Writable places only: the heartbeat files under the temp directory, and no control socket (gunicorn >= 25
# would create $HOME/.gunicorn/gunicorn.ctl, which a read-only root filesystem refuses).
worker_tmp_dir = tempfile.gettempdir()
control_socket_disable = True

# Set before any worker imports prometheus_client, so every worker writes its samples where /metrics reads.
metrics_dir = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                                         str(Path(tempfile.gettempdir()) / "model-server-metrics")))
# Each worker marks itself ready here once its model has loaded; /health is 200 only when all have.
ready_dir = Path(tempfile.gettempdir()) / "model-server-ready"
os.environ["MODEL_SERVER_READY_DIR"] = str(ready_dir)
os.environ["MODEL_SERVER_WORKERS"] = str(workers)


def on_starting(server: Any) -> None:
    # Files of an earlier run in the same directories would be counted in this one.
    for directory in (metrics_dir, ready_dir):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    server.log.info("%d worker(s), graceful timeout %d s, metrics in %s", workers, graceful_timeout, metrics_dir)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess  # noqa: PLC0415 - only once a worker has run

    multiprocess.mark_process_dead(worker.pid)
    (ready_dir / str(worker.pid)).unlink(missing_ok=True)
