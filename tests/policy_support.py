"""Run the policy pack without the Pulumi CLI: build the validation arguments the engine would send.

Resources come from tests/harness.py (`Registered`, the program run under mocks) or from `fake()` (one
hand-made resource for a unit test). Resource policies see a resource's inputs, stack policies every
resource's state with parents and (property) dependencies linked, wrapped in the SDK's own proxies as the
engine delivers them, so a rule that treats a property as a plain dict or list fails here too.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import os
import select
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pulumi
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policy.rules import BY_NAME, DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES
from tests.harness import PROJECT, PROJECT_DIR, Registered, StackRun

POLICY_DIR = PROJECT_DIR / "policy"


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str
    level: EnforcementLevel

    def __str__(self) -> str:
        return f"{self.policy} [{self.level.value}] {self.urn.rsplit('::', 1)[-1]}: {self.message}"


def _options(resource: Registered) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=resource.protect, ignore_changes=list(resource.ignore_changes),
        delete_before_replace=resource.delete_before_replace or None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
        parent=resource.parent or None)


def resource_args(resource: Registered, config: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    """What the engine sends a resource policy: the type, inputs, URN, logical name and options.

    The SDK's proxy rebuilds every dict and list it wraps, so a policy cannot change the recorded run.
    """
    return ResourceValidationArgs(resource.type, unknown_checking_proxy(resource.inputs),
                                  resource.urn, resource.name, _options(resource), None, config)


def stack_args(resources: Sequence[Registered], config: Mapping[str, Any] | None = None) -> StackValidationArgs:
    """What the engine sends a stack policy: every resource's state, with parent and dependencies linked."""
    converted = {r.urn: PolicyResource(r.type, unknown_checking_proxy(r.state), r.urn, r.name,
                                       _options(r), None, None, [], {}) for r in resources}
    for r in resources:
        policy_resource = converted[r.urn]
        policy_resource.parent = converted.get(r.parent)
        policy_resource.dependencies = [converted[u] for u in r.dependencies if u in converted]
        policy_resource.property_dependencies = {
            key: [converted[u] for u in urns if u in converted] for key, urns in r.property_dependencies.items()}
    return StackValidationArgs(list(converted.values()), config)


def enforcement_levels(config: Mapping[str, Any], policies: Iterable[Policy] = POLICIES) -> dict[str, EnforcementLevel]:
    """Each policy's level under a --policy-pack-config file: its own entry, else `all`, else the pack default."""

    def level(entry: Any) -> EnforcementLevel | None:
        if entry is None:
            return None
        value = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
        return EnforcementLevel(value) if value is not None else None

    default = level(config.get("all"))
    return {p.name: level(config.get(p.name)) or default or p.enforcement_level or DEFAULT_ENFORCEMENT
            for p in policies}


def load_config(stack: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((POLICY_DIR / f"config.{stack}.json").read_text())
    return result


def evaluate(resources: Sequence[Registered], policies: Iterable[Policy] = POLICIES,
             levels: Mapping[str, EnforcementLevel] | None = None) -> list[Violation]:
    """Every violation the pack reports for these resources, as `pulumi preview` would list them."""
    violations: list[Violation] = []
    resource_inputs = [(r, resource_args(r)) for r in resources]
    stack = stack_args(resources)
    for policy in policies:
        level = (levels or {}).get(policy.name, policy.enforcement_level or DEFAULT_ENFORCEMENT)
        if level == EnforcementLevel.DISABLED:
            continue

        def report(message: str, urn: str | None, _policy: Policy = policy, _level: EnforcementLevel = level,
                   _default_urn: str = "") -> None:
            violations.append(Violation(_policy.name, urn or _default_urn, message, _level))

        if isinstance(policy, ResourceValidationPolicy):
            for resource, args in resource_inputs:
                policy.validate(args, functools.partial(report, _default_urn=resource.urn))
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(stack, report)
    return violations


def violated(violations: Iterable[Violation]) -> set[str]:
    return {v.policy for v in violations}


def check(policy_name: str, *resources: Registered) -> list[str]:
    """The messages one policy reports for these resources (each resource alone, or the stack of all)."""
    return [v.message for v in evaluate(resources, [BY_NAME[policy_name]])]


# --- hand-made resources for unit tests --------------------------------------------------------------------

@dataclass
class Fake:
    """Builds `Registered` resources that link to each other by property, like the real program's."""

    stack: str = "unit"
    made: list[Registered] = field(default_factory=list)

    def __call__(self, type_: str, name: str, props: Mapping[str, Any] | None = None, *,
                 links: Mapping[str, Sequence[Registered]] | None = None,
                 depends_on: Sequence[Registered] = (), ignore_changes: Sequence[str] = ()) -> Registered:
        """A resource with these inputs (state = inputs); `links` maps an input to the resources it came from."""
        property_dependencies = {key: [r.urn for r in deps] for key, deps in (links or {}).items()}
        dependencies = [r.urn for r in depends_on] + [u for urns in property_dependencies.values() for u in urns]
        inputs = copy.deepcopy(dict(props or {}))
        resource = Registered(  # state is the inputs object itself, so editing one edits both
            type=type_, name=name, urn=f"urn:pulumi:{self.stack}::{PROJECT}::{type_}::{name}",
            inputs=inputs, state=inputs, parent="", dependencies=dependencies,
            property_dependencies=property_dependencies, provider="", protect=False, retain_on_delete=False,
            delete_before_replace=False, ignore_changes=list(ignore_changes), remote=False)
        self.made.append(resource)
        return resource


def fake(type_: str, name: str = "unit", props: Mapping[str, Any] | None = None, **kwargs: Any) -> Registered:
    return Fake()(type_, name, props, **kwargs)


# --- the real program --------------------------------------------------------------------------------------

def program(stack: str, **overrides: Any) -> StackRun:
    """The program's resources for `stack` under mocks, run once per session per distinct config.

    The session's shared runs of tests/conftest.py ("dev", "prod", "prod-variant", ..., or a stack with
    overrides, which other tests may ask for too). Returns a copy with its own resource list: add or drop
    resources freely, change one through `edit`.
    """
    from tests.conftest import run_with, stack_run  # noqa: PLC0415 - the session cache lives with the fixtures

    shared = run_with(stack, **overrides) if overrides else stack_run(stack)
    return dataclasses.replace(shared, resources=list(shared.resources))


def edit(run: StackRun, type_: str, change: Callable[[dict[str, Any]], None], name: str | None = None) -> Registered:
    """Apply `change` to a copy of the one resource of `type_` (and `name`) in `run`; return the copy.

    Copying only what a test changes keeps the shared runs intact without copying whole runs.
    """
    found = [i for i, r in enumerate(run.resources) if r.type == type_ and (name is None or r.name == name)]
    assert len(found) == 1, f"expected one {type_} {name or ''}, found {[run.resources[i].name for i in found]}"
    resource = run.resources[found[0]] = copy.deepcopy(run.resources[found[0]])
    for props in (resource.inputs, resource.state):
        change(props)
    return resource


def edit_containers(run: StackRun, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to every container of the task definition (containerDefinitions is JSON text)."""

    def rewrite(props: dict[str, Any]) -> None:
        containers = json.loads(props["containerDefinitions"])
        for container in containers:
            change(container)
        props["containerDefinitions"] = json.dumps(containers)

    edit(run, "aws:ecs/taskDefinition:TaskDefinition", rewrite)


def config_path(stack: str) -> Path:
    return POLICY_DIR / f"config.{stack}.json"


# --- the pack served over gRPC, the way the CLI runs it ------------------------------------------------------

LEVELS = {EnforcementLevel.ADVISORY: analyzer_pb2.ADVISORY, EnforcementLevel.MANDATORY: analyzer_pb2.MANDATORY,
          EnforcementLevel.DISABLED: analyzer_pb2.DISABLED, EnforcementLevel.REMEDIATE: analyzer_pb2.REMEDIATE}
PORT_TIMEOUT_SECONDS = 30


@contextlib.contextmanager
def served_pack(python: str | Path, pack_dir: Path, workdir: Path) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The CLI's Python host, `python -m pulumi.policy <engine address> <pack dir>`, started from `workdir`
    without PYTHONPATH; yields a client of the port the pack prints."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = subprocess.Popen([str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(pack_dir)],
                              cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], PORT_TIMEOUT_SECONDS)
        port = server.stdout.readline().strip() if ready else ""
        if not port.isdigit():
            server.kill()
            raise AssertionError(f"the pack did not start: {port!r} {server.communicate()[1]}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        server.kill()
        server.wait()


def assert_serves_every_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert {p.name for p in info.policies} == set(BY_NAME)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}
    assert all("Sources: " in p.description for p in info.policies)


# How the engine sends assets and archives to an analyzer (pulumi/sdk's rpc signatures).
_SPECIAL_SIG, _ASSET_SIG, _ARCHIVE_SIG = ("4dabf18193072939515e22adb298388d", "c44067f5952c0a294b673a41bacd8c17",
                                          "0def7320c3a5731c473e5ecbe6d01bc7")


def _wire(value: object) -> object:
    """A recorded input as the engine puts it on the wire: assets and archives as their signature objects."""
    if isinstance(value, pulumi.AssetArchive):
        return {_SPECIAL_SIG: _ARCHIVE_SIG, "assets": {k: _wire(v) for k, v in value.assets.items()}}
    if isinstance(value, pulumi.FileArchive | pulumi.FileAsset | pulumi.StringAsset):
        kind = _ARCHIVE_SIG if isinstance(value, pulumi.FileArchive) else _ASSET_SIG
        key, content = ("text", value.text) if isinstance(value, pulumi.StringAsset) else ("path", value.path)
        return {_SPECIAL_SIG: kind, key: content}
    if isinstance(value, Mapping):
        return {k: _wire(v) for k, v in value.items()}
    return [_wire(v) for v in value] if isinstance(value, list | tuple) else value


def _struct(values: Mapping[str, object]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(_wire(values))
    return struct


def _grpc_options(resource: Registered) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, ignoreChanges=resource.ignore_changes,
                                                parent=resource.parent)


def assert_serves_what_the_tests_evaluate(analyzer: analyzer_pb2_grpc.AnalyzerStub,
                                          resources: Sequence[Registered], stack: str = "dev") -> set[Any]:
    """Under the stack's config, the server's diagnostics equal the in-process evaluation, level for level;
    returns them."""
    levels = enforcement_levels(load_config(stack))
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
        name: analyzer_pb2.PolicyConfig(enforcementLevel=LEVELS[level]) for name, level in levels.items()}))
    served: set[tuple[str, str, str, int]] = set()
    for r in resources:
        response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(
            type=r.type, properties=_struct(r.inputs), urn=r.urn, name=r.name, options=_grpc_options(r)))
        served |= {(d.policyName, d.urn or r.urn, d.message.split("\n", 1)[1], d.enforcementLevel)
                   for d in response.diagnostics}
    stack_response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(
            type=r.type, properties=_struct(r.state), urn=r.urn, name=r.name, options=_grpc_options(r),
            parent=r.parent, dependencies=r.dependencies, propertyDependencies={
                key: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                for key, urns in r.property_dependencies.items()})
        for r in resources]))
    served |= {(d.policyName, d.urn, d.message.split("\n", 1)[1], d.enforcementLevel)
               for d in stack_response.diagnostics}
    evaluated = {(v.policy, v.urn, v.message, LEVELS[v.level]) for v in evaluate(resources, levels=levels)}
    assert served == evaluated
    return served
