"""Every tools/ command the docs show runs as written from a fresh clone, after the README's install command.

The docs write them as `venv/bin/python tools/<name>.py ...` from the repository root: the venv's python has
the pinned packages (a bare `python` may not), and the script must find its own imports without an installed
package or PYTHONPATH. Each documented tool is started that way with `--help`, which needs no cloud.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.harness import PROJECT_DIR

pytestmark = pytest.mark.integration  # tests/conftest.py: run by .ci/run, not by the quick suite

# Any way of starting a tools/ module: `python tools/x.py`, `venv/bin/python -m tools.x`, ...
TOOL_COMMAND = re.compile(r"(?P<python>[\w./-]*python3?)\s+(?:-m\s+tools\.(?P<module>\w+)|tools/(?P<script>\w+)\.py)")
DOCUMENTED_FORM = "venv/bin/python tools/{}.py"


def documented_commands() -> dict[str, list[str]]:
    """Each command as written -> the Markdown documents that show it."""
    found: dict[str, list[str]] = {}
    documents = [p for p in PROJECT_DIR.rglob("*.md") if "venv" not in p.parts and "node_modules" not in p.parts]
    for path in documents:
        for match in TOOL_COMMAND.finditer(path.read_text()):
            found.setdefault(match.group(0), []).append(str(path.relative_to(PROJECT_DIR)))
    return found


def test_the_docs_start_every_tool_with_the_venv_python_as_a_script() -> None:
    commands = documented_commands()
    assert "venv/bin/python tools/promote_image.py" in commands
    assert "venv/bin/python tools/verify_deployment.py" in commands
    wrong = {command: where for command, where in commands.items()
             if not re.fullmatch(r"venv/bin/python tools/\w+\.py", command)}
    assert not wrong, f"write these as {DOCUMENTED_FORM.format('<name>')}: {wrong}"


def start_each_documented_tool() -> dict[str, subprocess.Popen[str]]:
    """`venv/bin/python tools/<name>.py --help` for each documented tool, from the repository root."""
    scripts = sorted({m.group("script") or m.group("module")
                      for command in documented_commands() if (m := TOOL_COMMAND.match(command))})
    venv_python = PROJECT_DIR / "venv" / "bin" / "python"
    # In a fresh clone (.ci/run) the README's venv is there; a worktree sharing another venv uses this one.
    python = str(venv_python) if venv_python.exists() else sys.executable
    # No PYTHONPATH and none of pytest's sys.path: only what the script sets up itself.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    return {name: subprocess.Popen([python, f"tools/{name}.py", "--help"], cwd=PROJECT_DIR, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in scripts}


# Started while the suite collects, so the interpreters start on the other core while the stack tests run.
STARTED = start_each_documented_tool()


def test_every_documented_tool_starts_from_the_repository_root() -> None:
    assert {"promote_image", "verify_deployment"} <= set(STARTED)
    for name, process in STARTED.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"tools/{name}.py --help: {err}"
        assert out.startswith(f"usage: {name}"), out
