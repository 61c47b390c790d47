"""Run the real `__main__.py` under Pulumi mocks and record every resource it registers.

Config is assembled the way the Pulumi CLI does it: Pulumi.yaml's defaults, then the stack file (when the
stack has one; `stack_file` reads another copy of it, e.g. one a test edited), then the test's overrides.
Each recorded resource carries its inputs, the state the mock returned, its parent, its dependencies and its
resource options.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc
from pulumi.runtime import resource as pulumi_resource_runtime
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.settings import ROOT, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.settings import project_schema
from infra.settings.schema import load_yaml
from tools.readme_tables import config_text

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT = load_yaml((PROJECT_DIR / "Pulumi.yaml").read_text())["name"]
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
AMI_ID = "ami-0123456789abcdef0"
ELB_ACCOUNT_ARN = "arn:aws:iam::127311923021:root"
ECR_PASSWORD = "mock-ecr-password"
VPC_ROUTE_TABLES = [f"rtb-0{i:016d}" for i in range(12)]


def image_digest(name: str) -> str:
    """The digest the mocked docker-build provider reports for a pushed image."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    provider: str
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    remote: bool
    aliases: list[str] = field(default_factory=list)  # the names of the alias specs (earlier logical names)

    def __getitem__(self, key: str) -> Any:
        return self.inputs[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.inputs.get(key, default)


@dataclass
class StackRun:
    stack: str
    config: dict[str, str]
    resources: list[Registered] = field(default_factory=list)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_suffix: str = "") -> Registered:
        """The one resource of `type_` (whose logical name ends with `name_suffix`, where a stack has several)."""
        found = [r for r in self.of_type(type_) if r.name.endswith(name_suffix)]
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def depends_on(self, dependent: Registered, dependency: Registered) -> bool:
        """True when `dependent` waits for `dependency`, explicitly or through an input."""
        direct = set(dependent.dependencies)
        for urns in dependent.property_dependencies.values():
            direct.update(urns)
        return dependency.urn in direct


def _fake_arn(type_: str, name: str) -> str:
    service = type_.split(":")[1].split("/", maxsplit=1)[0]
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{type_.rsplit(':', 1)[-1].lower()}/{name}"


class _Mocks(mocks.Mocks):
    def __init__(self, run: StackRun):
        self.run = run

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == "awsx:ec2:Vpc":  # a remote component: its state is its outputs, not its inputs
            return f"{args.name}-id", self._vpc(args.inputs)
        state = dict(args.inputs)
        physical = args.inputs.get("name") or f"{args.name}-mock"
        state.setdefault("name", physical)
        state.setdefault("arn", _fake_arn(args.typ, physical))
        extra: dict[str, Any] = {  # type: ignore[assignment]
            "aws:ecr/repository:Repository": lambda: {
                "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{physical}", "registryId": ACCOUNT_ID},
            "aws:lb/loadBalancer:LoadBalancer": lambda: {
                "arnSuffix": f"app/{physical}/50dc6c495c0c9188",
                "dnsName": f"{physical}-1234567890.{REGION}.elb.amazonaws.com"},
            "aws:lb/targetGroup:TargetGroup": lambda: {"arnSuffix": f"targetgroup/{physical}/73e2d6bc24d8a067"},
            "aws:ec2/launchTemplate:LaunchTemplate": lambda: {"latestVersion": 1},
            "aws:cloudwatch/logGroup:LogGroup": lambda: {
                "name": args.inputs.get("namePrefix", "") + "20261122000000000000000001"},
            "aws:s3/bucket:Bucket": lambda: {"bucket": physical, "arn": f"arn:aws:s3:::{physical}"},
            "docker-build:index:Image": lambda: {"digest": image_digest(args.name),
                                                 "ref": f"{args.inputs['tags'][0]}@{image_digest(args.name)}"},
        }.get(args.typ, dict)()
        state.update(extra)
        return f"{args.name}-id", state

    @staticmethod
    def _vpc(inputs: Mapping[str, Any]) -> dict[str, Any]:
        zones = int(inputs.get("numberOfAvailabilityZones", 3))
        return {
            "vpcId": "vpc-0123456789abcdef0",
            "publicSubnetIds": [f"subnet-0public{i:010d}" for i in range(zones)],
            "privateSubnetIds": [f"subnet-0privat{i:010d}" for i in range(zones)],
            # awsx outputs its route tables as resource references (one per subnet).
            "routeTables": [{rpc._special_sig_key: rpc._special_resource_sig, "id": route_table_id,
                             "urn": f"urn:pulumi:mock::{PROJECT}::aws:ec2/routeTable:RouteTable::{route_table_id}"}
                            for route_table_id in VPC_ROUTE_TABLES[:2 * zones]],
        }

    def call(self, args: mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        self.run.invokes.append((args.token, dict(args.args)))
        results: dict[str, dict[str, Any]] = {
            "aws:ssm/getParameter:getParameter": {
                "name": args.args.get("name"), "type": "String", "insecureValue": AMI_ID,
                # The provider marks `value` secret whatever the parameter's type: a diff shows only [secret].
                "value": rpc.wrap_rpc_secret(AMI_ID)},
            "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
            "aws:index/getCallerIdentity:getCallerIdentity": {"accountId": ACCOUNT_ID, "id": ACCOUNT_ID},
            "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"},
            "aws:elb/getServiceAccount:getServiceAccount": {"arn": ELB_ACCOUNT_ARN, "id": "127311923021"},
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
                "userName": "AWS", "password": ECR_PASSWORD, "authorizationToken": "QVdTOm1vY2s=",
                "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com",
                "expiresAt": "2026-11-22T12:00:00Z", "id": ACCOUNT_ID},
        }
        if args.token not in results:
            raise NotImplementedError(f"the test mocks do not answer {args.token}")
        return results[args.token]


class _RecordingMonitor(mocks.MockMonitor):
    """The SDK's mock monitor, keeping what it drops: parent, dependencies and resource options."""

    def __init__(self, mocks_: _Mocks):
        super().__init__(mocks_)
        self.run = mocks_.run
        self.run_mocks = mocks_
        self.lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        _ensure_event_loop()
        urn = self.make_urn(request.parent, request.type, request.name)
        inputs = rpc.deserialize_properties(request.object)
        id_, state = self.run_mocks.new_resource(mocks.MockResourceArgs(
            typ=request.type, name=request.name, inputs=inputs, provider=request.provider,
            resource_id=request.importId, custom=request.custom or False))
        with self.lock:
            self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, id_, state)
            recorded = state
            if request.type == "awsx:ec2:Vpc":
                for ref in state["routeTables"]:  # resolvable when the program reads them (a `get` by URN)
                    self.resources[ref["urn"]] = mocks.MockMonitor.ResourceRegistration(ref["urn"], ref["id"], {})
                # Recorded as URNs, as an analyzer (the policy pack) sees resource references.
                recorded = {**state, "routeTables": [ref["urn"] for ref in state["routeTables"]]}
            self.run.resources.append(Registered(
                type=request.type, name=request.name, urn=urn, inputs=inputs, state=recorded, parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
                provider=request.provider, protect=bool(request.protect), retain_on_delete=request.retainOnDelete,
                delete_before_replace=request.deleteBeforeReplace, ignore_changes=list(request.ignoreChanges),
                remote=request.remote, aliases=[alias.spec.name for alias in request.aliases]))
        obj = _sync_await(rpc.serialize_properties(state, {}))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)


def stack_file_path(stack: str) -> Path:
    return PROJECT_DIR / f"Pulumi.{stack}.yaml"


@functools.cache
def _read_stack_file(path: Path, mtime_ns: int) -> dict[str, Any]:
    return dict(load_yaml(path.read_text()))


def read_stack_file(path: Path) -> dict[str, Any]:
    """A stack file's content (cached until the file changes)."""
    return _read_stack_file(path, path.stat().st_mtime_ns)


def stack_config(stack: str, overrides: Mapping[str, Any] | None = None, use_stack_file: bool = True,
                 stack_file: Path | None = None) -> dict[str, str]:
    """Full config map as the CLI would pass it: project defaults < stack file < overrides.

    `stack_file` replaces the project's Pulumi.<stack>.yaml, so a test can run a copy it edited.
    """
    config = {f"{PROJECT}:{key}": config_text(spec["default"]) for key, spec in project_schema().items()}
    path = stack_file or stack_file_path(stack)
    if use_stack_file and path.exists():
        for key, value in (read_stack_file(path).get("config") or {}).items():
            config[key] = config_text(value)
    for key, value in (overrides or {}).items():
        config[key if ":" in key else f"{PROJECT}:{key}"] = config_text(value)
    return config


class _Collect(logging.Handler):
    """Keeps what the program logs through pulumi.log at `level` and above."""

    def __init__(self, into: list[str], level: int):
        super().__init__(level)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


def run_stack(stack: str, overrides: Mapping[str, Any] | None = None, use_stack_file: bool = True,
              stack_file: Path | None = None) -> StackRun:
    """Run __main__.py for `stack` under mocks; raise what the program raises."""
    run = StackRun(stack=stack, config=stack_config(stack, overrides, use_stack_file, stack_file))
    _execute(run)
    return run


def run_stack_expecting_error(stack: str, overrides: Mapping[str, Any]) -> tuple[StackRun, BaseException]:
    """Run a program that must fail; return what it registered before failing, and the error."""
    run = StackRun(stack=stack, config=stack_config(stack, overrides))
    try:
        _execute(run)
    except Exception as error:
        return run, error
    raise AssertionError(f"stack {stack} with {dict(overrides)} did not fail")


MAIN_FILE = PROJECT_DIR / "__main__.py"


@functools.cache
def _main_code_of(mtime_ns: int) -> Any:
    return compile(MAIN_FILE.read_text(), str(MAIN_FILE), "exec")


def _main_code() -> Any:
    """__main__.py compiled once per version of the file (runpy would compile it again on every run)."""
    return _main_code_of(MAIN_FILE.stat().st_mtime_ns)


def _no_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


def _execute(run: StackRun) -> None:
    # The SDK records each registration's Python stack for source positions, which nothing here reads; it
    # costs a quarter of every run.
    pulumi_resource_runtime._get_stack_trace = _no_stack_trace
    pulumi.runtime.set_all_config(run.config)
    ROOT.set(None)
    mocks_ = _Mocks(run)
    # Only warnings are kept: at WARNING the SDK's debug messages (several per resource) make no log records.
    logger = logging.Logger(f"pulumi-{run.stack}", logging.WARNING)
    logger.addHandler(_Collect(run.warnings, logging.WARNING))
    mocks.set_mocks(mocks_, project=PROJECT, stack=run.stack, preview=False, monitor=_RecordingMonitor(mocks_),
                    logger=logger)

    def program() -> None:
        exec(_main_code(), {"__name__": "__main__", "__file__": str(MAIN_FILE)})

    _sync_await(run_pulumi_func(program))
    root = get_root_resource()
    assert root is not None
    run.outputs = {key: _sync_await(pulumi.Output.from_input(value).future())
                   for key, value in getattr(root, "outputs", {}).items()}
