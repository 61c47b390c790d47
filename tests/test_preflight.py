"""tools/preflight.py: the single-step transitions it refuses, from the last outputs and the next configuration.

In process (no subprocess): the settings are parsed from the stack files plus overrides, as the program would.
"""

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from tests.conftest import CERTIFICATE
from tests.harness import PROJECT_DIR, StackRun, stack_config
from tools.preflight import Deployed, Next, config_values, main, problems, settings_of

S = "acme/prod"
UP = "pulumi up -s acme/prod"
ENTER_1 = f"`pulumi config set previousDeploymentStrategy ROLLING -s {S} && {UP}`"
ENTER_2 = f"`pulumi config rm previousDeploymentStrategy -s {S} && {UP}`"
# The outputs that decide, as tests/test_preflight.py::test_the_stacks_outputs_say_what_runs reads them from runs.
ROLLING: dict[str, Any] = {"serviceName": "svc", "serviceUrl": "http://alb", "deploymentStrategy": "ROLLING",
                           "containerPort": 8080}
CANARY = {**ROLLING, "deploymentStrategy": "CANARY", "testListenerUrl": "http://alb:9000"}
ENTERED = {**ROLLING, "testListenerUrl": "http://alb:9000"}  # after step 1 towards a shifting strategy
UPGRADED = {"serviceName": "svc", "serviceUrl": "http://alb", "clusterName": "c"}  # before this version
PORT_9000 = {"containerPort": 9000, "containerEnvironment": ["PORT=9000"]}


@functools.cache
def stack_settings(stack: str) -> Settings:
    return settings_of(stack, stack_config(stack))


def upcoming(stack: str, overrides: dict[str, Any]) -> Next:
    """The stack file's settings with `overrides` (keys as in the stack file); copied, not parsed again (each
    parse costs tens of milliseconds; test_the_command_exits_0_1_or_2 parses, and tests/test_settings*.py
    cover validation)."""
    names = {field.alias or name: name for name, field in Settings.model_fields.items()}
    fields = {names[key]: value for key, value in overrides.items()}
    return Next.from_settings(stack_settings(stack).model_copy(update=fields))


@pytest.mark.parametrize(("stack", "outputs", "overrides", "refused"), [
    # ROLLING <-> shifting: two updates, the first with previousDeploymentStrategy.
    ("dev", ROLLING, {"deploymentStrategy": "CANARY"}, [
        "deploymentStrategy CANARY: the service runs ROLLING", f"two updates: {ENTER_1}, then {ENTER_2}"]),
    ("dev", ROLLING, {"deploymentStrategy": "CANARY", "previousDeploymentStrategy": "ROLLING"}, []),
    ("dev", ENTERED, {"deploymentStrategy": "CANARY"}, []),  # step 2: the resources exist
    # a previousDeploymentStrategy that is not what runs does not make it one step
    ("dev", ROLLING, {"deploymentStrategy": "BLUE_GREEN", "previousDeploymentStrategy": "LINEAR"}, [
        "deploymentStrategy BLUE_GREEN: the service runs ROLLING; ECS switches it only once", ENTER_1]),
    # a prod stack deployed before this version: ROLLING, and CANARY became its default
    ("prod", UPGRADED, {}, ["deploymentStrategy CANARY: this stack was last deployed before deploymentStrategy "
                            "existed, so its service runs ROLLING, and CANARY is now its default", ENTER_1, ENTER_2]),
    ("prod", UPGRADED, {"previousDeploymentStrategy": "ROLLING"}, []),
    ("prod", UPGRADED, {"deploymentStrategy": "ROLLING"}, []),
    ("prod", CANARY, {}, []),
    ("prod", CANARY, {"deploymentStrategy": "LINEAR"}, []),  # shifting -> shifting: one update
    ("prod", CANARY, {"deploymentStrategy": "BLUE_GREEN", "canaryPercent": 20}, []),
    ("prod", CANARY, {"deploymentStrategy": "ROLLING"}, [
        "deploymentStrategy ROLLING: the service runs CANARY and production may be on either target group",
        f"`pulumi config set previousDeploymentStrategy CANARY -s {S} && {UP}`, then, once the production listener "
        f"rule forwards 100% to the primary target group (`aws elbv2 describe-rules`), {ENTER_2}"]),
    ("prod", CANARY, {"deploymentStrategy": "ROLLING", "previousDeploymentStrategy": "CANARY"}, []),
    ("prod", {**CANARY, "deploymentStrategy": "ROLLING"}, {"deploymentStrategy": "ROLLING"}, []),  # leaving, step 2
    # certificate and port with the release resources in place: through ROLLING
    ("prod", CANARY, {"certificateArn": CERTIFICATE}, [
        "adding certificateArn moves the production listener rule to the other listener",
        f"go through ROLLING first, keeping the old value: `pulumi config set deploymentStrategy ROLLING -s {S} && "
        f"pulumi config set previousDeploymentStrategy CANARY -s {S} && {UP}`, then, once",
        f"then make the change and `{UP}`, then return to CANARY in two updates ({ENTER_1}, then {ENTER_2})"]),
    ("prod", {**CANARY, "serviceUrl": "https://alb"}, {}, ["removing certificateArn moves the production"]),
    ("prod", {**CANARY, "serviceUrl": "https://alb"}, {"certificateArn": CERTIFICATE}, []),
    ("prod", ENTERED, {"deploymentStrategy": "CANARY", "certificateArn": CERTIFICATE}, [
        f"keeping the old value: `pulumi config set deploymentStrategy ROLLING -s {S} && pulumi config rm "
        f"previousDeploymentStrategy -s {S} && {UP}`; then make the change"]),
    ("dev", ROLLING, {"certificateArn": CERTIFICATE}, []),
    ("dev", {**ROLLING, "serviceUrl": "https://alb"}, {}, []),
    ("dev", ROLLING, {"certificateArn": CERTIFICATE, "deploymentStrategy": "CANARY",
                      "previousDeploymentStrategy": "ROLLING"}, []),  # the rules are created on the new listener
    ("prod", CANARY, PORT_9000, ["changing containerPort from 8080 to 9000 replaces both target groups"]),
    ("prod", {**CANARY, "containerPort": 9000}, PORT_9000, []),
    ("dev", ROLLING, PORT_9000, []),
    # a stack never deployed
    ("prod", {}, {"certificateArn": CERTIFICATE, **PORT_9000}, []),
])
def test_single_step_transitions(stack: str, outputs: dict[str, Any], overrides: dict[str, Any],
                                 refused: list[str]) -> None:
    found = problems(S, Deployed.from_outputs(outputs), upcoming(stack, overrides))
    assert bool(found) is bool(refused), found
    for text in refused:
        assert any(text in problem for problem in found), (text, found)


def test_the_stacks_outputs_say_what_runs(dev: StackRun, prod: StackRun, prod_variant: StackRun) -> None:
    assert Deployed.from_outputs(dev.outputs) == Deployed("ROLLING", False, False, 8080, False)
    assert Deployed.from_outputs(prod.outputs) == Deployed("CANARY", True, False, 8080, False)
    assert Deployed.from_outputs(prod_variant.outputs) == Deployed("CANARY", True, True, 8080, False)
    # Redeploying the same configuration is always fine.
    for run in (dev, prod):
        assert problems(S, Deployed.from_outputs(run.outputs), upcoming(run.stack, {})) == []


def test_pulumi_config_json_and_stack_files_give_the_values_without_secrets() -> None:
    cli = {"model-serving:certificateArn": {"value": CERTIFICATE, "secret": False},
           "model-serving:ingressCidrs": {"value": '["10.0.0.0/8"]', "objectValue": ["10.0.0.0/8"], "secret": False},
           "aws:secretKey": {"secret": True}}
    assert config_values(cli, "cli") == {"model-serving:certificateArn": CERTIFICATE,
                                         "model-serving:ingressCidrs": ["10.0.0.0/8"]}
    stack_file = {"config": {"aws:region": "us-east-1", "aws:token": {"secure": "v1:abc"}}}
    assert config_values(stack_file, "file") == {"aws:region": "us-east-1"}


def test_the_command_exits_0_1_or_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(The ok line after a parse: tests/test_workflows.py, through pulumi-run.sh; a parse costs tens of ms.)"""
    outputs, config = tmp_path / "outputs.json", tmp_path / "config.json"
    outputs.write_text(json.dumps(UPGRADED))
    assert main(["--stack", "acme/prod", "--outputs", str(outputs), "--config",
                 str(PROJECT_DIR / "Pulumi.prod.yaml")]) == 1
    assert capsys.readouterr().out.startswith("preflight: acme/prod: deploymentStrategy CANARY: this stack")
    config.write_text(json.dumps({"model-serving:containerPort": {"value": "80", "secret": False}}))
    assert main(["--stack", "acme/prod", "--outputs", str(outputs), "--config", str(config)]) == 2
    assert "model-serving:containerPort = 80: must be from 1024 to 65535" in capsys.readouterr().err
    outputs.write_text("{}")
    assert main(["--stack", "acme/prod", "--outputs", str(outputs)]) == 0  # new: the config is not even read
    assert capsys.readouterr().out.startswith("ok: acme/prod has no deployment yet")
