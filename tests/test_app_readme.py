"""app/README.md says what a fresh clone can run and what the server answers: both are checked here.

The "without Docker" serve command is what tests/test_app_server.py runs for its real server; the others (the
training, the benchmark, the promotion tool) are run here with --help, from a directory laid out like a fresh
clone, exactly as written otherwise."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from model_server import worker
from model_server.main import ERRORS, create_app, largest_valid_body
from model_server.model import load_model
from model_server.scope import DISCARD_BYTES
from tests.app_support import (
    APP_README,
    call,
    fresh_clone,
    program,
    readme_commands,
    readme_server_commands,
    run,
    running,
    trained_model_dir,
)

# Commands that need Docker or an AWS account: not run here (.ci/run lints the Dockerfile; the stack tests cover
# what pulumi deploys).
NEEDS_DOCKER_OR_CLOUD = ("docker", "curl", "pulumi")


def as_help(command: str) -> str:
    """The command up to its script or module (`venv/bin/python tools/x.py`, `... -m model_server.train`),
    without the arguments (which may need the cloud, or write files)."""
    words = shlex.split(command)
    end = next(i + 1 if word.endswith(".py") else i + 2 for i, word in enumerate(words) if word.endswith(".py")
               or word == "-m")
    return " ".join(words[:end])


def test_every_documented_command_runs_from_the_venv_the_install_creates() -> None:
    commands = readme_commands()
    assert len(commands) >= 6
    for command in commands:
        runs = program(command)
        assert runs.startswith("venv/bin/") or runs in NEEDS_DOCKER_OR_CLOUD, command
        assert not re.search(r"(^|[\s;&|(])(python3?|gunicorn|pip)\s", command), f"bare interpreter in: {command}"
    assert set(readme_server_commands()) <= set(commands)


@pytest.mark.integration  # subprocesses: run by .ci/run (pytest -m integration)
def test_each_documented_python_command_runs_as_written(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "clone")
    serve = readme_server_commands()[1]
    # The promotion tool needs AWS (tests/test_promote_image.py runs its command line against moto).
    runnable = [c for c in readme_commands()
                if program(c).startswith("venv/bin/") and c != serve and "tools/promote_image.py" not in c]
    assert {program(c) for c in runnable} == {"venv/bin/python"}
    for script in ("-m model_server.train", "app/benchmark.py"):
        assert any(script in c for c in runnable), script
    runs = {command: subprocess.Popen(["sh", "-c", f"{as_help(command)} --help"], cwd=clone, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for command in runnable}
    for command, process in runs.items():
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0 and output.startswith("usage:"), (command, output)


def test_the_documented_error_answers_are_the_ones_the_server_sends() -> None:
    """Each row of the README's error table is ERRORS' message for that status (the API tests send them)."""
    text = APP_README.read_text()
    rows = dict(re.findall(r"^\s*\| (\d{3}) \| (.+?) \|", text, re.MULTILINE))
    for status, (detail, lists_errors) in ERRORS.items():
        documented = rows[str(status)]
        assert f"`{detail}`" in documented, (status, documented)
        assert ('"errors"' in documented) == lists_errors, (status, documented)


def test_the_documented_default_body_limit_is_the_one_the_server_derives() -> None:
    assert f"{largest_valid_body(4):,} bytes" in APP_README.read_text()


@pytest.mark.parametrize(("documented", "value"), [
    ("`MAX_HEADER_BYTES` ({})", worker.DEFAULT_MAX_HEADER_BYTES),
    ("`HEADER_TIMEOUT_SECONDS` ({:g})", worker.DEFAULT_HEADER_TIMEOUT_SECONDS),
    ("at most {} pipelined requests wait", worker.MAX_PIPELINED),
    ("dropped so that the client sees the answer, up to {} MiB", DISCARD_BYTES // 2**20),
])
def test_the_documented_connection_bounds_are_the_servers(documented: str, value: float) -> None:
    assert documented.format(value) in " ".join(APP_README.read_text().split())


@pytest.mark.parametrize(("status", "content_type", "body"), [
    (400, "application/json", b"{"),
    (415, "text/plain", b'{"instances": [[1, 2, 3, 4]]}'),
    (422, "application/json", b'{"instances": []}'),
])
def test_the_server_sends_the_documented_error_body(status: int, content_type: str, body: bytes) -> None:
    """408, 413 and 503 are checked the same way where they are provoked (test_app_hostile.py, test_app_api.py)."""
    async def scenario() -> tuple[int | None, Any]:
        async with running(create_app(lambda: load_model(trained_model_dir()))) as server:
            answer = await call(server, "POST", "/predict", headers={"Content-Type": content_type}, body=body)
            return answer[0], answer[2]

    answered, payload = run(scenario())
    detail, lists_errors = ERRORS[status]
    assert (answered, payload["detail"], "errors" in payload) == (status, detail, lists_errors)
