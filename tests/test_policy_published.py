"""The pack as `pulumi policy publish` ships it and Pulumi Cloud enforcement installs it: the policy/ directory
alone, in a directory named after the pack, with a fresh virtual environment made from policy/requirements.txt
(where PulumiPolicy.yaml says), served by the CLI's Python host and asked over gRPC.

Slow (creates a virtualenv and installs from PyPI; pip's cache makes reruns quicker), so it is marked
`published`: the default run deselects it (pyproject.toml) and `.ci/run` runs `pytest -m published`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pulumi.runtime.proto import analyzer_pb2_grpc

from policy.rules import PACK_NAME
from tests.policy_support import (
    POLICY_DIR,
    assert_serves_every_policy,
    assert_serves_what_the_tests_evaluate,
    program,
    served_pack,
)

pytestmark = pytest.mark.published
INSTALL_TIMEOUT_SECONDS = 600


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of policy/ in <tmp>/<pack name>/ with its own virtualenv, nothing of the repository around it."""
    pack = tmp_path_factory.mktemp("policies") / PACK_NAME
    shutil.copytree(POLICY_DIR, pack, ignore=shutil.ignore_patterns("venv", ".venv", "__pycache__", "*.pyc"))
    venv = pack / yaml.safe_load((pack / "PulumiPolicy.yaml").read_text())["runtime"]["options"]["virtualenv"]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT_SECONDS)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", "requirements.txt"], cwd=pack, check=True, timeout=INSTALL_TIMEOUT_SECONDS)
    return pack


@pytest.fixture(scope="module")
def analyzer(published: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    with served_pack(published / "venv" / "bin" / "python", published, tmp_path_factory.mktemp("cli")) as stub:
        yield stub


def test_published_copy_has_nothing_of_the_repository(published: Path) -> None:
    python = published / "venv" / "bin" / "python"
    for module in ("infra", "policy", "tests"):
        found = subprocess.run([str(python), "-c", f"import importlib.util as u; print(u.find_spec('{module}'))"],
                               cwd=published.parent, capture_output=True, text=True, check=True).stdout.strip()
        assert found == "None", f"{module} is importable in the published pack's venv: {found}"


def test_published_pack_starts_with_every_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    assert_serves_every_policy(analyzer)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_published_pack_reports_what_the_tests_evaluate(analyzer: analyzer_pb2_grpc.AnalyzerStub,
                                                        stack: str) -> None:
    served = assert_serves_what_the_tests_evaluate(analyzer, program(stack).resources, stack)
    assert bool(served) == (stack == "dev")  # dev reports its advisory exceptions, prod nothing
