"""Every configuration change the README documents, applied to COPIES of the stack files.

Each operation is the documented `pulumi config set/rm` commands, applied to a copy of Pulumi.<stack>.yaml the
way the CLI writes it. A legitimate change must still validate, pass the suite's rules for the stack files
(tests/test_stack.py) and leave the README's generated tables current unless it is a capacity change (the README
says to regenerate them then); a change the stack must not take is refused with a message naming the key.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import Settings, SettingsError, parse_settings
from infra.settings.args import StackArgs, component_args
from infra.settings.schema import load_yaml
from tests.harness import PROJECT, PROJECT_DIR, run_stack, stack_config, stack_file_path
from tests.test_readme import code_spans, documented_commands
from tests.test_stack import stack_file_violations
from tools.readme_tables import cost_rows

STACKS = ("dev", "prod")  # the stacks whose files the README's generated tables describe
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b5a1c4e-1111-2222-3333-444455556666"
DIGEST = "sha256:" + "ab" * 32
GPU_ON_DEV = (
    "pulumi config set instanceType g5.2xlarge -s dev", "pulumi config set gpusPerTask 1 -s dev",
    "pulumi config set sharedMemoryMiB 2048 -s dev", "pulumi config set instanceRootVolumeGiB 150 -s dev",
    "pulumi config set taskCpu 4096 -s dev", "pulumi config set taskMemoryMiB 16384 -s dev")
GPU_SPOT_TYPES = ("pulumi config rm spotInstanceTypes -s dev",
                  "pulumi config set --path 'spotInstanceTypes[0]' g5.2xlarge -s dev",
                  "pulumi config set --path 'spotInstanceTypes[1]' g6.2xlarge -s dev",
                  "pulumi config set spotMaxCount 3 -s dev")
ON_DEMAND_DEV = ("pulumi config set onDemandWeight 1 -s dev", "pulumi config set spotWeight 0 -s dev",
                 "pulumi config set instanceMaxCount 2 -s dev")


@dataclass(frozen=True)
class Operation:
    name: str
    stack: str
    commands: tuple[str, ...]
    refused: str = ""  # the message a change the stack must not take is refused with
    capacity: bool = False  # changes the README's capacity-plan and cost tables (regenerated, as it says)
    effect: Callable[[Settings, StackArgs], bool] = field(default=lambda settings, args: True)


def cidrs(args: StackArgs) -> tuple[str, ...]:
    return tuple(args.network.ingress_cidrs)


OPERATIONS = [
    # Releases and rollbacks.
    Operation("release to dev", "dev", ("pulumi config set image v1.1.0 -s dev",),  # built, or deployed as given
              effect=lambda s, a: s.image == "v1.1.0" and (a.image.tag if a.image else None) == (
                  "v1.1.0" if s.image_build else None)),
    Operation("release to prod", "prod", ("pulumi config set image v1.1.0 -s prod",),
              effect=lambda s, a: s.image == "v1.1.0" and a.image is None),
    Operation("roll dev back to a digest", "dev", ("pulumi config set imageBuild false -s dev",
                                                   f"pulumi config set image {DIGEST} -s dev"),
              effect=lambda s, a: a.image is None and s.image == DIGEST),
    Operation("latest in prod", "prod", ("pulumi config set image latest -s prod",),
              refused="model-serving:image = 'latest': must name a version tag or digest with environmentClass prod"),
    Operation("a branch tag in prod", "prod", ("pulumi config set image main -s prod",),
              refused="model-serving:image = 'main': must name a version tag or digest with environmentClass prod"),
    Operation("a release candidate in prod", "prod", ("pulumi config set image rc-2 -s prod",),
              refused="model-serving:image = 'rc-2': must match ecrReleaseTagPattern (v*) with environmentClass prod"),
    Operation("a build in prod", "prod", ("pulumi config set imageBuild true -s prod",),
              refused="model-serving:imageBuild = true: must be false with environmentClass prod"),
    Operation("alarm mail for prod", "prod", ("pulumi config set --path 'alarmEmails[0]' ops@example.com -s prod",),
              effect=lambda s, a: s.alarm_emails == ("ops@example.com",) and a.observability.notify),
    Operation("prod upgraded to canary, first step", "prod",
              ("pulumi config set previousDeploymentStrategy ROLLING -s prod",),
              effect=lambda s, a: a.service.deployment is not None and a.service.deployment.strategy == "ROLLING"
              and a.release is not None),
    # Schedules.
    Operation("dev always on", "dev", ("pulumi config set scaleToZeroCron \"\" -s dev",
                                       "pulumi config set scaleUpCron \"\" -s dev"),
              effect=lambda s, a: not s.scale_to_zero_cron and not s.scale_up_cron),
    Operation("half a schedule", "dev", ("pulumi config set scaleUpCron 'cron(0 7 ? * MON-FRI *)' -s dev",
                                         "pulumi config set scaleToZeroCron \"\" -s dev"),
              refused="model-serving:scaleToZeroCron = '': must be set together with the other schedule"),
    Operation("a schedule in prod", "prod", ("pulumi config set scaleToZeroCron 'cron(0 19 ? * MON-FRI *)' -s prod",
                                             "pulumi config set scaleUpCron 'cron(0 7 ? * MON-FRI *)' -s prod"),
              refused="model-serving:instanceMinCount = 2: must be 0 when the service scales to zero on a schedule"),
    # Region, network, HTTPS.
    Operation("dev in another region", "dev", ("pulumi config set aws:region eu-west-1 -s dev",)),
    Operation("prod in another region", "prod", ("pulumi config set aws:region eu-west-1 -s prod",)),
    Operation("prod for two networks", "prod", ("pulumi config set --path 'ingressCidrs[0]' 203.0.113.0/24 -s prod",
                                                "pulumi config set --path 'ingressCidrs[1]' 198.51.100.0/24 -s prod"),
              effect=lambda s, a: cidrs(a) == ("203.0.113.0/24", "198.51.100.0/24")),
    Operation("a second network for dev", "dev", ("pulumi config set --path 'ingressCidrs[0]' 0.0.0.0/0 -s dev",
                                                  "pulumi config set --path 'ingressCidrs[1]' 198.51.100.0/24 -s dev"),
              effect=lambda s, a: cidrs(a) == ("0.0.0.0/0", "198.51.100.0/24")),
    Operation("HTTPS in prod", "prod", (f"pulumi config set certificateArn {CERTIFICATE} -s prod",),
              effect=lambda s, a: a.network.listener_ports == (80, 443) and a.load_balancer.certificate_arn != ""),
    Operation("a certificate that is no ARN", "prod", ("pulumi config set certificateArn my-cert -s prod",),
              refused="model-serving:certificateArn = 'my-cert': must be empty or an ACM certificate ARN"),
    # Capacity.
    Operation("dev on On-Demand", "dev", ON_DEMAND_DEV, capacity=True,
              effect=lambda s, a: [g.name for g in a.cluster.groups if g.weight] == ["onDemand"]),
    Operation("dev back on Spot", "dev", (*ON_DEMAND_DEV, "pulumi config set onDemandWeight 0 -s dev",
                                          "pulumi config set spotWeight 1 -s dev"), capacity=True,
              effect=lambda s, a: [g.name for g in a.cluster.groups if g.weight] == ["spot"]),
    Operation("prod without Spot", "prod", ("pulumi config set spotWeight 0 -s prod",
                                            "pulumi config set instanceMaxCount 7 -s prod"), capacity=True,
              effect=lambda s, a: [g.name for g in a.cluster.groups if g.weight] == ["onDemand"]),
    Operation("dev on GPUs", "dev", GPU_ON_DEV + GPU_SPOT_TYPES, capacity=True,
              effect=lambda s, a: a.task.container.gpus == 1 and {
                  t for g in a.cluster.groups for t in g.instance_types} == {"g5.2xlarge", "g6.2xlarge"}),
    Operation("dev on GPUs with CPU Spot types", "dev", (
        *GPU_ON_DEV, "pulumi config rm spotInstanceTypes -s dev",
        "pulumi config set --path 'spotInstanceTypes[0]' t3.medium -s dev"),
              refused="model-serving:spotInstanceTypes = 't3.medium': must match instanceType g5.2xlarge in "
                      "architecture (x86_64) and in having GPUs"),
    # A new stack without a file.
    Operation("staging made prod-like", "staging", ("pulumi config set environmentClass prod -s staging",),
              refused="model-serving:imageBuild = true: must be false with environmentClass prod"),
    Operation("staging made prod-like with what prod needs", "staging", (
        "pulumi config set environmentClass prod -s staging", "pulumi config set imageBuild false -s staging",
        "pulumi config set image v1.0.0 -s staging", "pulumi config set minTaskCount 2 -s staging",
        "pulumi config set desiredTaskCount 2 -s staging", "pulumi config set instanceMinCount 2 -s staging"),
              effect=lambda s, a: a.registry.immutable_tags and a.load_balancer.deletion_protection),
    Operation("the README's example error", "prod", ("pulumi config set minTaskCount 1 -s prod",
                                                     "pulumi config set taskMemoryMiB 16384 -s prod"),
              refused="model-serving:minTaskCount = 1: must be at least 2 with environmentClass prod"),
]


def pulumi_config(stack_file: Path, command: str, stack: str) -> None:
    """Apply one `pulumi config set|rm` command to a stack file as the CLI writes it: a top-level value is text,
    a --path value is a list item (true/false and integers typed, as the CLI documents)."""
    words = shlex.split(command)
    assert words[:2] == ["pulumi", "config"] and words[2] in ("set", "rm"), command
    assert words[-2:] == ["-s", stack], f"{command}: names no stack, or another one"
    args = words[3:-2]
    path = "--path" in args
    args = [a for a in args if a != "--path"]
    key, value = args[0], (args[1] if len(args) > 1 else None)
    data = load_yaml(stack_file.read_text()) or {}
    config = data.setdefault("config", {})
    match = re.fullmatch(r"(\w+)\[(\d+)\]", key) if path else None
    name = (match.group(1) if match else key)
    name = name if ":" in name else f"{PROJECT}:{name}"
    if words[2] == "rm":
        config.pop(name, None)
    elif match:
        items = config.setdefault(name, [])
        index, item = int(match.group(2)), load_yaml(value or "")
        assert index <= len(items), f"{command}: pulumi cannot set item {index} of a list of {len(items)}"
        items[index:index + 1] = [item]
    else:
        config[name] = value
    stack_file.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False))


def applied(operation: Operation, into: Path) -> Path:
    copy, real = into / f"Pulumi.{operation.stack}.yaml", stack_file_path(operation.stack)
    copy.write_text(real.read_text() if real.exists() else "config: {}\n")  # a new stack starts without a file
    for command in operation.commands:
        pulumi_config(copy, command, operation.stack)
    return copy


@functools.cache
def committed(stack: str) -> tuple[list[Any], dict[str, str]]:
    """What the README's generated tables are computed from, for the committed stack file."""
    settings = settings_of(stack)
    return settings.capacity_plan(), cost_rows(settings)


def settings_of(stack: str, stack_file: Path | None = None) -> Settings:
    prefix = f"{PROJECT}:"
    raw = {key[len(prefix):]: value for key, value in stack_config(stack, stack_file=stack_file).items()
           if key.startswith(prefix)}
    return parse_settings(PROJECT, stack, raw)


def outcome(operation: Operation, into: Path) -> tuple[Settings | None, str]:
    """The settings after the operation, or the refusal: the program's, then the suite's stack-file rules."""
    try:
        settings = settings_of(operation.stack, applied(operation, into))
    except SettingsError as refused:
        return None, str(refused)
    return settings, "\n".join(stack_file_violations(operation.stack, settings))


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.name for op in OPERATIONS])
def test_a_documented_operation_validates_or_is_refused_clearly(operation: Operation, tmp_path: Path) -> None:
    settings, refusal = outcome(operation, tmp_path)
    if operation.refused:
        assert operation.refused in refusal
        return
    assert settings is not None and refusal == "", refusal
    assert operation.effect(settings, component_args(settings))
    # The README's generated tables follow the stack files: a release or a network change leaves them current.
    if operation.stack in STACKS and not operation.capacity:  # a capacity change is followed by regenerating
        assert (settings.capacity_plan(), cost_rows(settings)) == committed(operation.stack)


def test_a_new_region_reaches_the_provider(tmp_path: Path) -> None:
    """aws:region is no setting of the program's own: one run shows the provider is created in it."""
    region = next(op for op in OPERATIONS if op.name == "dev in another region")
    run = run_stack("dev", stack_file=applied(region, tmp_path))
    assert run.one("pulumi:providers:aws")["region"] == "eu-west-1"


def test_the_readme_example_error_is_what_the_program_prints(tmp_path: Path) -> None:
    example = next(op for op in OPERATIONS if op.name == "the README's example error")
    readme = (PROJECT_DIR / "README.md").read_text()
    for command in example.commands:
        assert f"`{command}`" in readme
    _, refusal = outcome(example, tmp_path)
    blocks, _ = code_spans(readme)
    shown = next(block for block in blocks if block.startswith("error: invalid configuration"))
    assert shown.rstrip("\n") == f"error: {refusal}"


def test_every_documented_config_change_is_an_operation_here() -> None:
    """A `pulumi config set/rm` the docs add must be tried here too (placeholders like <tag> aside)."""
    tried = {shlex.split(command)[3 + ("--path" in command)].split("[")[0]
             for operation in OPERATIONS for command in operation.commands}
    documented = {shlex.split(command)[3 + ("--path" in command)].split("[")[0]
                  for _, command in documented_commands()
                  if re.match(r"pulumi config (set|rm) ", command) and "<" not in command}
    assert documented - tried == set()


def test_the_copies_leave_the_real_stack_files_alone(tmp_path: Path) -> None:
    before = {stack: stack_file_path(stack).read_text() for stack in STACKS}
    applied(OPERATIONS[0], tmp_path)
    assert {stack: stack_file_path(stack).read_text() for stack in STACKS} == before


@pytest.mark.parametrize(("command", "expected"), [
    ("pulumi config set image v2 -s dev", {"model-serving:image": "v2"}),
    ("pulumi config set aws:region eu-west-1 -s dev", {"model-serving:image": "v1", "aws:region": "eu-west-1"}),
    ("pulumi config set --path 'ingressCidrs[0]' 10.0.0.0/8 -s dev",
     {"model-serving:image": "v1", "model-serving:ingressCidrs": ["10.0.0.0/8"]}),
    ("pulumi config set spotWeight 0 -s dev", {"model-serving:image": "v1", "model-serving:spotWeight": "0"}),
    ("pulumi config rm image -s dev", {}),
])
def test_config_commands_edit_the_copy_as_the_cli_does(command: str, expected: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "Pulumi.dev.yaml"
    copy.write_text("config:\n  model-serving:image: v1\n")
    pulumi_config(copy, command, "dev")
    assert load_yaml(copy.read_text())["config"] == expected
