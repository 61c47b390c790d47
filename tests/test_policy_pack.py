"""The pack as the Pulumi CLI sees it: its project file, its entry point, its config files and its README.

The CLI's Python host runs `python -m pulumi.policy <engine> policy/`, reads the port the pack prints and
talks gRPC to it (GetAnalyzerInfo, Configure, Analyze per resource, AnalyzeStack). One test does exactly
that with the dev stack's resources and checks the server reports what the in-process evaluation reports,
so the arguments tests/policy_support.py builds are the ones the engine would send.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel

from infra.settings.schema import load_yaml
from policy import generate
from policy.rules import BY_NAME
from tests.harness import PROJECT_DIR
from tests.policy_support import (
    POLICY_DIR,
    assert_serves_every_policy,
    assert_serves_what_the_tests_evaluate,
    config_path,
    enforcement_levels,
    load_config,
    program,
    served_pack,
)

# What the pack's own modules may import: the standard library, pulumi and pulumi-policy (policy/requirements.txt).
PACK_DEPENDENCIES = {"pulumi", "pulumi_policy"}


def test_policy_project_file_declares_a_python_pack() -> None:
    project = load_yaml((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(project["version"]))
    assert project["description"]


def test_entry_point_only_builds_the_pack_from_the_rules_package() -> None:
    """__main__.py blocks in PolicyPack(...), so it is read here, never imported. The CLI runs it with the pack's
    directory as sys.path[0], so it imports `rules` as a top-level package."""
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    keywords = {k.arg: k.value for k in calls[0].keywords}
    assert isinstance(keywords["policies"], ast.Name) and keywords["policies"].id == "POLICIES"
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "rules"
                for a in n.names}
    assert {"POLICIES", "PACK_NAME"} <= imported
    assert "policy.__main__" not in sys.modules


def _absolute_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("module", sorted((POLICY_DIR / "rules").rglob("*.py")), ids=lambda p: p.name)
def test_pack_modules_import_only_themselves_and_the_pack_runtime(module: Path) -> None:
    """A published pack has no repository around it: no `policy.`, `infra.` or `tests.` imports."""
    foreign = _absolute_imports(module) - PACK_DEPENDENCIES - set(sys.stdlib_module_names) - {"__future__"}
    assert foreign == set(), f"{module} imports {foreign}"


def test_pack_copies_and_tables_are_generated_from_their_sources() -> None:
    """rules/shared/ holds unchanged copies of infra/ files; the READMEs' table and counts come from the pack."""
    files = generate.expected_files()
    assert {path.name for path in files} >= {"secret_patterns.py", "instance_types.py", "instance_types.json"}
    assert generate.stale(files) == [], "run: python -m policy.generate"


def test_policy_table_lists_every_policy_with_its_sources() -> None:
    table = (POLICY_DIR / "README.md").read_text().split(generate.TABLE_BEGIN)[1].split(generate.TABLE_END)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*\| ([^|]+) \|$", table, re.M)}
    assert list(rows) == list(BY_NAME)
    assert all(sources.strip() for sources in rows.values())


def test_pack_runtime_requirements_match_the_pinned_ones() -> None:
    def pins(path: Path) -> dict[str, str]:
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return dict(line.split("==") for line in lines if "==" in line)

    pack = pins(POLICY_DIR / "requirements.txt")
    project = {**pins(PROJECT_DIR / "requirements.txt"), **pins(PROJECT_DIR / "requirements-dev.txt")}
    assert pack and all(project.get(name) == version for name, version in pack.items()), (pack, project)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_config_file_names_only_real_policies_and_levels(stack: str) -> None:
    config = load_config(stack)
    assert set(config) <= {"all", *BY_NAME}
    for value in config.values():
        EnforcementLevel(value["enforcementLevel"] if isinstance(value, dict) else value)
    assert (PROJECT_DIR / f"Pulumi.{stack}.yaml").exists(), "one policy config per stack"


def test_prod_config_makes_every_policy_mandatory() -> None:
    assert set(enforcement_levels(load_config("prod")).values()) == {EnforcementLevel.MANDATORY}


@pytest.mark.parametrize(("readme", "section"), [
    (POLICY_DIR / "README.md", r"## Dev exceptions\n(.*?)\n## "),
    (POLICY_DIR.parent / "README.md", r"deliberate exceptions set to advisory.*?\n\n(.*?)\n\n"),
])
def test_dev_config_only_relaxes_to_advisory_and_the_readmes_explain_each_exception(readme: Path,
                                                                                    section: str) -> None:
    levels = enforcement_levels(load_config("dev"))
    assert set(levels.values()) == {EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY}
    exceptions = re.search(section, readme.read_text(), re.S)
    assert exceptions, f"{readme} needs the list of dev exceptions"
    listed = set(re.findall(r"^- `([a-z0-9-]+)` - .+$", exceptions.group(1), re.M))
    assert listed == {name for name, level in levels.items() if level == EnforcementLevel.ADVISORY}


def test_readme_documents_every_policy_and_the_preview_commands() -> None:
    readme = (POLICY_DIR / "README.md").read_text()
    for stack in ("dev", "prod"):
        assert f"pulumi preview --policy-pack policy --policy-pack-config policy/config.{stack}.json" in readme
        assert config_path(stack).exists()


# --- the pack served over gRPC, the way the CLI runs it ------------------------------------------------------

@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    with served_pack(sys.executable, POLICY_DIR, tmp_path_factory.mktemp("cli")) as stub:
        yield stub


@pytest.mark.integration  # a subprocess: run by .ci/run (pytest -m integration)
def test_cli_loads_the_pack_with_every_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    assert_serves_every_policy(analyzer)


@pytest.mark.integration  # a subprocess: run by .ci/run (pytest -m integration)
def test_served_pack_reports_what_the_tests_evaluate(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """dev stack, dev config: the server's diagnostics equal the in-process evaluation, level for level."""
    assert assert_serves_what_the_tests_evaluate(analyzer, program("dev").resources)
