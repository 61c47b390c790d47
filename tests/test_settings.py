"""Validation: every bad value stops the program with one message naming key, value and what is allowed."""

from typing import Any

import pulumi
import pytest

from infra.settings import SettingsError, parse_settings
from infra.settings.args import StackArgs, component_args
from tests.conftest import SPOT, run_with, setting
from tests.harness import PROJECT, PROJECT_DIR, run_stack_expecting_error, stack_config

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b5a1c4e-1111-2222-3333-444455556666"


def raw_config(stack: str, **overrides: Any) -> dict[str, str]:
    """The stack's real config (defaults + stack file) with overrides, keyed without the namespace."""
    prefix = f"{PROJECT}:"
    full = stack_config(stack, overrides)
    return {key[len(prefix):]: value for key, value in full.items() if key.startswith(prefix)}


def error(stack: str, **overrides: Any) -> str:
    with pytest.raises(SettingsError) as caught:
        parse_settings(PROJECT, stack, raw_config(stack, **overrides))
    return str(caught.value)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_real_stack_files_are_valid(stack: str) -> None:
    settings = parse_settings(PROJECT, stack, raw_config(stack))
    assert settings.environment_class == stack


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"desiredTaskCount": 5}, "model-serving:desiredTaskCount = 5: must lie between minTaskCount (1) and "
                              "maxTaskCount (2)"),
    ({"minTaskCount": 2, "desiredTaskCount": 1},
     "model-serving:desiredTaskCount = 1: must lie between minTaskCount (2) and maxTaskCount (2)"),
    ({"instanceMinCount": 3, "instanceMaxCount": 2},
     "model-serving:instanceMinCount = 3: must not exceed instanceMaxCount (2)"),
    ({"capacityTargetPercent": 0}, "model-serving:capacityTargetPercent = 0: must be from 1 to 100"),
    ({"capacityTargetPercent": 101}, "model-serving:capacityTargetPercent = 101: must be from 1 to 100"),
    ({"capacityMinScalingStep": 3, "capacityMaxScalingStep": 2},
     "model-serving:capacityMinScalingStep = 3: must not exceed capacityMaxScalingStep (2)"),
    ({**SPOT["dev"], "taskCpu": 2048},
     "model-serving:taskCpu = 2048: must be at most 1920 on t3.medium (2 vCPUs less 128 units for the ECS agent)"),
    ({**SPOT["dev"], "taskMemoryMiB": 4096},
     "model-serving:taskMemoryMiB = 4096: must be at most 3687 on t3.medium (4096 MiB less 409 for the OS and ECS "
     "agent)"),
    ({**SPOT["dev"], "maxTaskCount": 9, "spotMaxCount": 4},
     "model-serving:maxTaskCount = 9: cannot be placed: the strategy puts 9 tasks on the spot provider, whose "
     "t3.medium holds 2 (limited by network interfaces) and whose spotMaxCount is 4, so at most 8 fit"),
    ({"containerPort": 0}, "model-serving:containerPort = 0: must be from 1024 to 65535"),
    ({"containerPort": 70000}, "model-serving:containerPort = 70000: must be from 1024 to 65535"),
    ({"healthCheckTimeoutSeconds": 10}, "model-serving:healthCheckTimeoutSeconds = 10: must be shorter than "
                                        "healthCheckIntervalSeconds (10)"),
    ({"healthCheckIntervalSeconds": 3}, "model-serving:healthCheckIntervalSeconds = 3: must be from 5 to 300"),
    ({"containerStopTimeoutSeconds": 121}, "model-serving:containerStopTimeoutSeconds = 121: must be from 2 to 120"),
    ({"containerStartPeriodSeconds": -1}, "model-serving:containerStartPeriodSeconds = -1: must be from 0 to 300"),
    ({"deregistrationDelaySeconds": 3601}, "model-serving:deregistrationDelaySeconds = 3601: must be from 0 to 3600"),
    ({"albIdleTimeoutSeconds": 0}, "model-serving:albIdleTimeoutSeconds = 0: must be from 1 to 4000"),
    ({"logRetentionDays": 8}, "model-serving:logRetentionDays = 8: must be a value CloudWatch Logs accepts: 1, 3, 5, "
                              "7, 14, 30"),
    ({"logRetentionDays": 0}, "model-serving:logRetentionDays = 0: must be from 1 to 3653"),
    ({"instanceRootVolumeGiB": 20}, "model-serving:instanceRootVolumeGiB = 20: must be from 30 to 16384"),
    ({"healthCheckGracePeriodSeconds": 30}, "model-serving:healthCheckGracePeriodSeconds = 30: must be at least "
                                            "containerStartPeriodSeconds (60), or the ALB kills tasks that are still "
                                            "loading the model"),
    ({"deploymentMinimumHealthyPercent": 100, "deploymentMaximumPercent": 100},
     "model-serving:deploymentMaximumPercent = 100: must exceed deploymentMinimumHealthyPercent (100)"),
])
def test_each_rule_names_key_value_and_what_is_allowed(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("dev", **overrides)


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("certificateArn", "arn:aws:iam::123456789012:server-certificate/x", "must be empty or an ACM certificate ARN"),
    ("certificateArn", "my-cert", "must be empty or an ACM certificate ARN"),
    ("environmentClass", "production", "must be one of dev, prod"),
    ("natGateways", "None", "must be one of Single, OnePerAz"),
    ("instanceType", "z9.huge", "must be an EC2 instance type listed in infra/instance_types.json"),
    ("image", "my image", "must be an image tag (e.g. v1.2.0), sha256:<64 hex digits>, or a full image URI"),
    ("image", "ghcr.io/acme/model", "must be an image tag"),
    ("vpcCidr", "10.0.0.0/8", "must be an IPv4 CIDR from /16 to /20"),
    ("healthCheckPath", "health", "must be an HTTP path starting with /"),
    ("healthCheckMatcher", "ok", "must be HTTP codes like 200, 200,204 or 200-299"),
    ("containerUser", "root", "must be empty or a non-root user"),
    ("containerUser", "0:0", "must be empty or a non-root user"),
    ("scratchVolumePath", "tmp", "must be an absolute path other than /"),
    ("containerHealthCheckCommand", "curl http://localhost:{prot}/", "may use only the placeholders {port} and "
                                                                     "{path}"),
    ("taskRolePolicyArns", ["AdministratorAccess"], "must be an IAM policy ARN"),
    ("containerInsights", "yes", "must be true or false"),
    ("taskCpu", "lots", "must be a whole number from 128 to 196608"),
])
def test_shape_errors(key: str, value: Any, allowed: str) -> None:
    shown = repr(value) if isinstance(value, str) else repr(value[0])
    message = error("dev", **{key: value})
    assert f"model-serving:{key} = {shown}: {allowed}" in message


def test_ingress_cidrs_must_be_ipv4_cidrs() -> None:
    assert "model-serving:ingressCidrs = 'everyone': must be an IPv4 CIDR" in error("dev", ingressCidrs=["everyone"])


@pytest.mark.parametrize(("item", "shown", "why"), [
    ("HF_TOKEN=hf_abc", "HF_TOKEN=<redacted>", "looks like a secret"),
    ("HF_API_TOKEN=abc", "HF_API_TOKEN=<redacted>", "looks like a secret"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY_ID=<redacted>", "looks like a secret"),
    ("DB_PASSWORD=hunter2", "DB_PASSWORD=<redacted>", "looks like a secret"),
    ("DATABASE_URL=postgres://u:p@h", "DATABASE_URL=<redacted>", "holds a password in a URL"),
    ("BROKER_URL=redis://:s3cretpw@redis:6379/0", "BROKER_URL=<redacted>", "holds a password in a URL"),
    ("KEY_HINT=AKIAIOSFODNN7EXAMPLE", "KEY_HINT=<redacted>", "holds an AWS access key ID"),
])
def test_secret_looking_environment_variables_are_refused_without_echoing_them(item: str, shown: str,
                                                                               why: str) -> None:
    message = error("dev", containerEnvironment=["LOG_LEVEL=info", item])
    assert f"model-serving:containerEnvironment = '{shown}': {why}" in message
    assert "Secrets Manager" in message
    assert item.partition("=")[2] not in message and "LOG_LEVEL" not in message


@pytest.mark.parametrize("item", ["TOKENIZERS_PARALLELISM=false", "MAX_NEW_TOKENS=512", "HF_HUB_OFFLINE=1",
                                  "TOKEN_TTL_SECONDS=60", "MODEL_URL=https://huggingface.co/org/model"])
def test_ordinary_ml_environment_variables_pass(item: str) -> None:
    settings = parse_settings(PROJECT, "dev", raw_config("dev", containerEnvironment=[item]))
    assert settings.environment == (tuple(item.split("=", 1)),)


def test_malformed_environment_entries_are_refused() -> None:
    assert "model-serving:containerEnvironment = 'NO_EQUALS_SIGN': must be NAME=value" in error(
        "dev", containerEnvironment=["NO_EQUALS_SIGN"])


def test_unknown_keys_are_refused_so_typos_do_not_fall_back_to_defaults() -> None:
    message = error("dev", instanceTyp="c6i.large")
    assert "model-serving:instanceTyp = 'c6i.large': is not a setting of this project" in message


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"existingPublicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1"]},
     "model-serving:existingVpcId = '': must be set when existing subnet IDs are given"),
    ({"existingVpcId": "vpc-0aaaaaaaaaaaaaaaa"},
     "model-serving:existingPublicSubnetIds = []: must list at least two public subnets"),
    ({"existingVpcId": "vpc-0aaaaaaaaaaaaaaaa",
      "existingPublicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]},
     "model-serving:existingPrivateSubnetIds = []: must list the private subnets when existingVpcId is set"),
    ({"existingVpcId": "vpc-xyz"}, "model-serving:existingVpcId = 'vpc-xyz': must be empty or a VPC ID"),
])
def test_existing_vpc_settings_must_be_complete(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("dev", **overrides)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"minTaskCount": 1}, "model-serving:minTaskCount = 1: must be at least 2 with environmentClass prod"),
    ({"availabilityZoneCount": 1}, "model-serving:availabilityZoneCount = 1: must be from 2 to 6"),
    ({"instanceMinCount": 1}, "model-serving:instanceMinCount = 1: must be at least 2 with environmentClass prod"),
    ({"image": "latest"}, "model-serving:image = 'latest': must name a version tag or digest with environmentClass "
                          "prod"),
    ({"existingVpcId": "vpc-0aaaaaaaaaaaaaaaa",
      "existingPublicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
      "existingPrivateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1"]},
     "model-serving:existingPrivateSubnetIds = [\"subnet-0bbbbbbbbbbbbbbb1\"]: must list at least two private "
     "subnets (in different AZs) with environmentClass prod"),
])
def test_prod_refuses_a_single_point_of_failure(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("prod", **overrides)


def test_dev_allows_what_prod_refuses() -> None:
    settings = parse_settings(PROJECT, "dev", raw_config("dev", minTaskCount=1, image="latest", onDemandBaseTasks=0))
    assert (settings.min_task_count, settings.image_ref.reference) == (1, "latest")


def test_all_errors_are_reported_together() -> None:
    message = error("dev", containerPort=80, capacityTargetPercent=0, natGateways="Many")
    assert message.startswith("invalid configuration for stack 'dev':")
    assert message.count("\n  model-serving:") == 3


def test_bad_config_stops_the_program_before_any_resource_is_registered() -> None:
    run, raised = run_stack_expecting_error("dev", {"capacityTargetPercent": 150})
    assert isinstance(raised, SettingsError)
    assert isinstance(raised, pulumi.RunError)  # Pulumi prints a RunError's message without a stack trace
    assert "model-serving:capacityTargetPercent = 150: must be from 1 to 100" in str(raised)
    assert run.resources == []


def test_a_valid_run_registers_resources_so_the_check_above_can_fail() -> None:
    run = run_with("dev", capacityTargetPercent=100)  # dev's own value: the session's dev run
    assert setting(run, "capacityTargetPercent") == "100" and len(run.resources) > 30


def args_of(stack: str, **overrides: Any) -> StackArgs:
    return component_args(parse_settings(PROJECT, stack, raw_config(stack, **overrides)))


def test_dev_and_prod_differ_only_through_explicit_component_args() -> None:
    dev, prod = args_of("dev"), args_of("prod")
    assert (dev.registry.immutable_tags, dev.registry.retain_on_delete, dev.registry.force_delete) == (
        False, False, True)
    assert (prod.registry.immutable_tags, prod.registry.retain_on_delete, prod.registry.force_delete) == (
        True, True, False)
    assert (dev.load_balancer.deletion_protection, prod.load_balancer.deletion_protection) == (False, True)
    assert prod.load_balancer.access_logs is not None
    assert (prod.load_balancer.access_logs.retain_on_delete, prod.load_balancer.access_logs.force_destroy) == (
        True, False)
    assert (dev.logging.kms_deletion_window_days, prod.logging.kms_deletion_window_days) == (7, 30)
    # dev builds app/ under its `image` tag unless its file deploys a given image; prod never builds.
    dev_settings = parse_settings(PROJECT, "dev", raw_config("dev"))
    assert (dev.image.tag if dev.image else None) == (dev_settings.image if dev_settings.image_build else None)
    assert prod.image is None


@pytest.mark.parametrize("module", sorted(path.stem for path in (PROJECT_DIR / "infra").glob("*.py")))
def test_components_read_their_own_args_not_the_settings(module: str) -> None:
    source = (PROJECT_DIR / "infra" / f"{module}.py").read_text()
    assert "infra.settings" not in source and "is_prod" not in source and "environment_class" not in source


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_on_demand_and_spot_are_two_groups_of_one_description_named_as_in_the_capacity_plan(stack: str) -> None:
    settings = parse_settings(PROJECT, stack, raw_config(stack, **SPOT[stack]))
    groups = component_args(settings).cluster.groups
    assert [group.name for group in groups] == [plan.name for plan in settings.capacity_plan()] == ["onDemand",
                                                                                                     "spot"]
    on_demand, spot = groups
    assert (on_demand.market, on_demand.instance_types, on_demand.max_size, on_demand.weight) == (
        "on-demand", (settings.instance_type,), settings.instance_max_count, settings.on_demand_weight)
    assert (spot.market, spot.instance_types, spot.max_size, spot.weight, spot.warm_pool_min_size) == (
        "spot", settings.spot_instance_types, settings.spot_max_count, settings.spot_weight, 0)


def test_without_spot_types_the_spot_group_stays_empty_with_the_on_demand_type() -> None:
    on_demand, spot = args_of("dev", spotInstanceTypes=[], spotMaxCount=0, spotWeight=0, onDemandWeight=1,
                              instanceMaxCount=2).cluster.groups
    assert (spot.name, spot.instance_types, spot.min_size, spot.max_size, spot.weight, spot.base) == (
        "spot", on_demand.instance_types, 0, 0, 0, 0)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"containerInsights": "yes"}, "model-serving:containerInsights = 'yes': must be true or false"),
    ({"taskCpu": "lots"}, "model-serving:taskCpu = 'lots': must be a whole number from 128 to 196608"),
    ({"taskCpu": "1.5"}, "model-serving:taskCpu = '1.5': must be a whole number from 128 to 196608"),
    ({"natGateways": "Many"}, "model-serving:natGateways = 'Many': must be one of Single, OnePerAz"),
    ({"ingressCidrs": "not json"}, "model-serving:ingressCidrs = 'not json': must be a list of strings"),
    ({"logRetentionDays": 8}, "model-serving:logRetentionDays = 8: must be a value CloudWatch Logs accepts"),
])
def test_parse_errors_are_translated_into_the_project_style(overrides: dict[str, Any], expected: str) -> None:
    message = error("dev", **overrides)
    assert expected in message
    assert "pydantic" not in message and "validation error" not in message and "input_value" not in message
