"""The pack as the Pulumi CLI sees it: its project file, its entry point, its config files and its README.

The CLI's Python host runs `python -m pulumi.policy <engine> policy/`, reads the port the pack prints and
talks gRPC to it (GetAnalyzerInfo, Configure, Analyze per resource, AnalyzeStack). One test does exactly
that with the dev stack's resources and checks the server reports what the in-process evaluation reports,
so the arguments tests/policy_support.py builds are the ones the engine would send.
"""

from __future__ import annotations

import ast
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel

from policy.rules import BY_NAME, PACK_NAME
from tests.harness import PROJECT_DIR, Registered
from tests.policy_support import POLICY_DIR, config_path, enforcement_levels, evaluate, load_config, program

LEVELS = {EnforcementLevel.ADVISORY: analyzer_pb2.ADVISORY, EnforcementLevel.MANDATORY: analyzer_pb2.MANDATORY,
          EnforcementLevel.DISABLED: analyzer_pb2.DISABLED, EnforcementLevel.REMEDIATE: analyzer_pb2.REMEDIATE}
PORT_TIMEOUT_SECONDS = 30


def test_policy_project_file_declares_a_python_pack() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(project["version"]))
    assert project["description"]


def test_entry_point_only_builds_the_pack_from_the_rules_module() -> None:
    """__main__.py blocks in PolicyPack(...), so it is read here, never imported."""
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    keywords = {k.arg: k.value for k in calls[0].keywords}
    assert isinstance(keywords["policies"], ast.Name) and keywords["policies"].id == "POLICIES"
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "policy.rules"
                for a in n.names}
    assert {"POLICIES", "PACK_NAME"} <= imported
    assert "policy.__main__" not in sys.modules


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
    assert [name for name in BY_NAME if f"`{name}`" not in readme] == []
    for stack in ("dev", "prod"):
        assert f"pulumi preview --policy-pack policy --policy-pack-config policy/config.{stack}.json" in readme
        assert config_path(stack).exists()


# --- the pack served over gRPC, the way the CLI runs it ------------------------------------------------------

@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # The CLI's python host: `python -m pulumi.policy <engine address> <pack dir>`, from elsewhere.
    server = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(POLICY_DIR)],
                              cwd=tmp_path_factory.mktemp("cli"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], PORT_TIMEOUT_SECONDS)
        port = server.stdout.readline().strip() if ready else ""
        if not port.isdigit():
            server.kill()
            pytest.fail(f"the pack did not start: {port!r} {server.communicate()[1]}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        server.kill()
        server.wait()


def test_cli_loads_the_pack_with_every_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert {p.name for p in info.policies} == set(BY_NAME)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}
    assert all("Sources: " in p.description for p in info.policies)


def _struct(values: dict[str, object]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _options(resource: Registered) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, ignoreChanges=resource.ignore_changes,
                                                parent=resource.parent)


def test_served_pack_reports_what_the_tests_evaluate(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """dev stack, dev config: the server's diagnostics equal the in-process evaluation, level for level."""
    levels = enforcement_levels(load_config("dev"))
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
        name: analyzer_pb2.PolicyConfig(enforcementLevel=LEVELS[level]) for name, level in levels.items()}))
    resources = program("dev").resources

    served: set[tuple[str, str, str, int]] = set()
    for r in resources:
        response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(
            type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name, options=_options(r)))
        served |= {(d.policyName, d.urn or r.urn, d.message.split("\n", 1)[1], d.enforcementLevel)
                   for d in response.diagnostics}
    stack = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(
            type=r.type, properties=_struct(r.state), urn=r.urn, name=r.name, options=_options(r), parent=r.parent,
            dependencies=r.dependencies, propertyDependencies={
                key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                for key, urns in r.property_dependencies.items()})
        for r in resources]))
    served |= {(d.policyName, d.urn, d.message.split("\n", 1)[1], d.enforcementLevel) for d in stack.diagnostics}

    evaluated = {(v.policy, v.urn, v.message, LEVELS[v.level]) for v in evaluate(resources, levels=levels)}
    assert evaluated and served == evaluated
