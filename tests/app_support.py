"""Helpers for the model server's in-process tests: one trained model per session, and raw ASGI calls for what a
test client cannot do (a client that disconnects, a body that arrives slowly, requests in flight together)."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shlex
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from model_server.main import ModelServer
from model_server.train import train

Message = MutableMapping[str, Any]
LOAD_SECONDS = 10


@functools.cache
def trained_model_dir() -> Path:
    """The reference model, trained once per test session."""
    path = Path(tempfile.mkdtemp(prefix="model-"))
    train(path)
    return path


@asynccontextmanager
async def running(app: ModelServer) -> AsyncIterator[ModelServer]:
    """Run the app's lifespan and wait until its model has loaded (or failed to)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    await asyncio.wait_for(started.wait(), LOAD_SECONDS)
    assert app.state.settled is not None
    await asyncio.wait_for(app.state.settled.wait(), LOAD_SECONDS)
    try:
        yield app
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, LOAD_SECONDS)


def body_messages(body: bytes) -> Callable[[], Awaitable[Message]]:
    """A receive() that delivers `body` in one message."""
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}
    return receive


async def call(app: ModelServer, method: str, path: str, receive: Callable[[], Awaitable[Message]] | None = None,
               headers: dict[str, str] | None = None, body: bytes = b"",
               scope_extra: dict[str, Any] | None = None) -> tuple[int | None, dict[str, str], Any]:
    """One request straight through ASGI: (status or None when nothing was sent, headers, JSON body or None).
    `scope_extra` adds what this server's HTTP layer would (model_server/scope.py)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()], **(scope_extra or {})}
    await app(scope, receive or body_messages(body), send)
    if not sent:
        return None, {}, None
    response_headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    content = b"".join(m.get("body", b"") for m in sent[1:])
    is_json = response_headers.get("content-type") == "application/json"
    return sent[0]["status"], response_headers, json.loads(content) if is_json else content


JSON = {"Content-Type": "application/json"}


async def predict(app: ModelServer, payload: object) -> tuple[int | None, Any]:
    status, _, body = await call(app, "POST", "/predict", headers=JSON, body=json.dumps(payload).encode())
    return status, body


# --- the commands app/README.md documents ------------------------------------------------------------------------

APP_README = Path(__file__).resolve().parent.parent / "app" / "README.md"
README_MODEL_DIR = "/tmp/model"  # where the README's "without Docker" commands train and load the model


def readme_commands() -> list[str]:
    """Every command line in app/README.md's bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", APP_README.read_text(), re.DOTALL):
        for raw in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.split(r"\s+#\s", raw, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def program(command: str) -> str:
    """The program a shell command line runs, after any VAR=value assignments."""
    return next(word for word in shlex.split(command) if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word))


def readme_server_commands() -> tuple[str, str]:
    """The README's "without Docker" pair: train the model, then serve it."""
    (train_command,) = [c for c in readme_commands() if "-m model_server.train" in c]
    (serve_command,) = [c for c in readme_commands() if program(c) == "venv/bin/gunicorn"]
    return train_command, serve_command


def fresh_clone(directory: Path) -> Path:
    """A directory laid out as a fresh clone is after the top-level README's install command: the repository's
    files, and `venv/` (the environment running these tests, which that command creates in CI)."""
    directory.mkdir(parents=True, exist_ok=True)
    root = APP_README.parent.parent
    for name in ("app", "tools", "infra", "Pulumi.yaml"):
        (directory / name).symlink_to(root / name)
    (directory / "venv").symlink_to(sys.prefix)
    return directory


def run(coroutine: Awaitable[Any]) -> Any:
    """asyncio.run without its side effect on the thread's event loop (it leaves none set, and the Pulumi
    tests that run later in the session ask for the current one)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()
