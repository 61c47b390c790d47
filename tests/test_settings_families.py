"""Settings AWS refuses at deploy time (issue 10, part 1): each family's rule, fed bad values, and the good
variants that must still pass. Tests go through `parse_settings` (milliseconds); one program run proves the
provider settings and the derived values reach the resources."""

import functools
import json
import zoneinfo
from typing import Any

import pytest

from infra.instance_types import instance_types
from infra.naming import AWS_NAMES, bounded_name, name_problems
from infra.regions import DATA_FILE, regions
from infra.settings import Settings, SettingsError, parse_config, parse_settings
from infra.settings import model as settings_model
from infra.settings.args import component_args, server_environment
from infra.settings.model import is_timezone
from tests.harness import PROJECT, StackRun, run_stack, run_stack_expecting_error, stack_config
from tools.regions import render

CERTIFICATE = "arn:aws:acm:{region}:123456789012:certificate/0b5a1c4e-1111-2222-3333-444455556666"
VPC = {"existingVpcId": "vpc-0aaaaaaaaaaaaaaaa",
       "existingPublicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
       "existingPrivateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"]}


def parse(stack: str = "dev", overrides: dict[str, Any] | None = None, name: str = "",
          use_stack_file: bool = True) -> Settings:
    """`stack`'s config (Pulumi.yaml < stack file < overrides; `aws:`... keys keep their namespace), parsed as
    stack `name`."""
    return parse_config(PROJECT, name or stack, stack_config(stack, overrides, use_stack_file), {})


def error(stack: str = "dev", overrides: dict[str, Any] | None = None, name: str = "",
          use_stack_file: bool = True) -> str:
    with pytest.raises(SettingsError) as caught:
        parse(stack, overrides, name, use_stack_file)
    return str(caught.value)


# --- the stack name in AWS names -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "overrides", "broken"), [
    ("Staging", {}, "ECR repository (lowercase letters and digits"),
    ("team_a", {}, "load balancer (letters, digits and hyphens"),
    ("team_a", {}, "target group (letters, digits and hyphens)"),
    ("team_a", {"albAccessLogs": True}, "S3 access-log bucket (lowercase letters, digits, hyphens and single dots)"),
    ("v1.2", {}, "ECS cluster and service (letters, digits, hyphens and underscores)"),
    ("v1.2", {}, "ECS capacity providers (letters, digits, hyphens and underscores)"),
    ("v1.2", {}, "ECS task definition family (letters, digits, hyphens and underscores)"),
    ("s" * 37, {"albAccessLogs": True}, "S3 access-log bucket (at most 63 characters with Pulumi's suffix, so a "
                                        "<project>-<stack> of at most 50)"),
    ("s" * 100, {}, "launch templates (at most 128 characters with Pulumi's suffix, so a <project>-<stack> of at "
                    "most 110)"),
])
def test_stack_names_that_break_aws_names_are_refused(name: str, overrides: dict[str, Any], broken: str) -> None:
    message = error("dev", overrides, name=name)
    assert f"stack name {name!r}: AWS names start with 'model-serving-{name}', which breaks the " in message
    assert broken in message


# "a--b": ECR's CreateRepository pattern allows runs of hyphens ([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*).
@pytest.mark.parametrize("name", ["dev", "prod", "staging", "performance-staging-eu", "s" * 36, "team--a"])
def test_todays_stack_names_keep_their_names(name: str) -> None:
    assert name_problems(f"model-serving-{name}", frozenset({"albAccessLogs"})) == []
    assert parse("prod", name=name).name_prefix == f"model-serving-{name}"


# Where each entry of infra/naming.py's table shows up in a real run: resource type, and the input that carries
# the name (None: the logical name, which Pulumi auto-names).
NAMED = {"ECR repository": ("aws:ecr/repository:Repository", None),
         "load balancer": ("aws:lb/loadBalancer:LoadBalancer", None),
         "target group": ("aws:lb/targetGroup:TargetGroup", None),
         "ECS cluster and service": ("aws:ecs/cluster:Cluster", None),
         "ECS capacity providers": ("aws:ecs/capacityProvider:CapacityProvider", None),
         "ECS task definition family": ("aws:ecs/taskDefinition:TaskDefinition", "family"),
         "launch templates": ("aws:ec2/launchTemplate:LaunchTemplate", None),
         "IAM instance profile": ("aws:iam/instanceProfile:InstanceProfile", None),
         "IAM roles": ("aws:iam/role:Role", None),
         "CloudWatch log group": ("aws:cloudwatch/logGroup:LogGroup", "namePrefix"),
         "S3 access-log bucket": ("aws:s3/bucket:Bucket", None)}


def test_the_name_table_matches_the_names_the_program_registers(prod: StackRun) -> None:
    assert set(NAMED) == {name.what for name in AWS_NAMES}
    prefix = "model-serving-prod"
    for name in AWS_NAMES:
        type_, key = NAMED[name.what]
        registered = {r.inputs[key] if key else r.name for r in prod.of_type(type_)}
        expected = name.template.format(prefix=prefix)
        if not name.max_length:  # shortened by bounded_name
            expected = bounded_name(prefix, expected.rsplit("-", 1)[-1], 64 if "IAM" in name.what else 32)
        assert expected in registered, (name.what, registered)


# --- provider settings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "expected"), [
    ({"aws:regoin": "eu-west-1"}, "aws:regoin = 'eu-west-1': is not a setting of the aws provider; did you mean "
                                  "aws:region?"),
    ({"aws:profle": "ml"}, "aws:profle = 'ml': is not a setting of the aws provider; did you mean aws:profile?"),
    ({"aws:assumeRole": {"roleArn": "arn:aws:iam::123456789012:role/deploy"}},
     "is a setting of pulumi-aws before v7; use aws:assumeRoles (a list of role objects)"),
    ({"aws:sharedCredentialsFile": "~/.aws/credentials"}, "use aws:sharedCredentialsFiles (a list)"),
    ({"aws:assumeRoles": [{"roleArn": "arn:aws:iam::123456789012:role/deploy", "sesionName": "ci"}]},
     "has no field sesionName; its fields are duration, externalId, policy, policyArns, roleArn, sessionName"),
    ({"aws:assumeRoles": "arn:aws:iam::123456789012:role/deploy"}, "must be a list of objects"),
    ({"aws:allowedAccountIds": "123456789012"}, "aws:allowedAccountIds = '123456789012': must be a list of strings"),
    # Unquoted in YAML, 012345678901 reads as the number 12345678901: the guard would name another account.
    ({"aws:allowedAccountIds": [12345678901]}, "aws:allowedAccountIds = '[12345678901]': must list 12-digit AWS "
                                               "account IDs; quote them in the stack file"),
    ({"aws:forbiddenAccountIds": ["1234"]}, "aws:forbiddenAccountIds = '[\"1234\"]': must list 12-digit "
                                            "AWS account IDs"),
    ({"aws:maxRetries": "lots"}, "aws:maxRetries = 'lots': must be a whole number"),
    ({"aws:skipCredentialsValidation": "yes"}, "must be true or false"),
    ({"model-servng:image": "v1"}, "model-servng:image = 'v1': is not read by this program: its settings are "
                                   "model-serving:<key> (Pulumi.yaml) and aws:<key> (the provider); did you mean "
                                   "model-serving:image?"),
    ({"modelserving:image": "v1"}, "did you mean model-serving:image?"),
    ({"awx:region": "eu-west-1"}, "awx:region = 'eu-west-1': is not read by this program"),
    ({"aws:defaultTags": {"tags": {"environment": "production"}}},
     "must not change the stack's own tag environment ('dev'); the stack sets project, environment, stack, "
     "managed-by itself"),
    ({"aws:defaultTags": {"tags": {"aws:team": "ml"}}}, "no key starting with aws:"),
    ({"aws:defaultTags": {"tags": {f"t{i}": "x" for i in range(45)}}},
     "aws:defaultTags = 45 tags: AWS allows 50 tags per resource; with the stack's 4 and the 2 the instance groups "
     "add, at most 44 of your own"),
])
def test_provider_settings_are_checked_not_dropped(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("dev", overrides)


def test_account_ids_written_as_numbers_reach_the_provider_as_text() -> None:
    """`pulumi config set --path 'aws:allowedAccountIds[0]' 123456789012` stores a number; the provider wants text."""
    assert parse("dev", {"aws:allowedAccountIds": [123456789012]}).provider["allowed_account_ids"] == [
        "123456789012"]


def test_credentials_must_be_stored_encrypted_and_are_never_echoed() -> None:
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    message = error("dev", {"aws:secretKey": key})
    assert "aws:secretKey = <secret>: is in plain text in the stack file: store it with `pulumi config set " \
           "--secret aws:secretKey`" in message and key not in message
    full = stack_config("dev", {"aws:secretKey": key})
    own = {k.split(":", 1)[1]: v for k, v in full.items() if k.startswith(f"{PROJECT}:")}
    other = {k: v for k, v in full.items() if not k.startswith(f"{PROJECT}:")}
    settings = parse_settings(PROJECT, "dev", own, other, {}, secret_keys={"aws:secretKey"})
    assert settings.provider["secret_key"] == key


def test_provider_settings_parse_to_provider_args() -> None:
    settings = parse("dev", {"aws:profile": "ml", "aws:maxRetries": 5, "aws:skipMetadataApiCheck": "true",
                             "aws:forbiddenAccountIds": ["999999999999"], "pulumi:tags": {"team": "ml"},
                             "aws:ignoreTags": {"keyPrefixes": ["kubernetes.io/"]},
                             "aws:endpoints": [{"ec2": "http://localhost:4566", "s3": "http://localhost:4566"}]})
    provider = settings.provider
    assert (provider["profile"], provider["max_retries"], provider["skip_metadata_api_check"]) == ("ml", 5, True)
    assert provider["forbidden_account_ids"] == ["999999999999"]
    assert provider["ignore_tags"].key_prefixes == ["kubernetes.io/"]
    assert (provider["endpoints"][0].ec2, provider["endpoints"][0].s3) == ("http://localhost:4566",) * 2


# --- shapes whose contents AWS checks ------------------------------------------------------------------------

@pytest.mark.parametrize(("cron", "why"), [
    ("cron(0 19 * * MON-FRI *)", "needs exactly one of day-of-month and day-of-week to be '?'"),
    ("cron(0 19 ? * ? *)", "needs exactly one of day-of-month and day-of-week to be '?'"),
    ("cron(60 19 ? * MON-FRI *)", "minutes 60 is outside 0-59"),
    ("cron(0 24 ? * MON-FRI *)", "hours 24 is outside 0-23"),
    ("cron(0 19 32 * ? *)", "day-of-month 32 is outside 1-31"),
    ("cron(0 19 ? 13 MON *)", "month 13 is outside 1-12"),
    ("cron(0 19 ? JUNE MON *)", "month 'JUNE' is not a number from 1 to 12 or JAN-DEC"),
    ("cron(0 19 ? * 0 *)", "day-of-week 0 is outside 1-7"),
    ("cron(0 19 ? * MON-FRX *)", "day-of-week 'FRX' is not a number from 1 to 7 or SUN-SAT"),
    ("cron(0 19 ? * 2#6 *)", "day-of-week '2#6': the number after # is the week of the month, 1 to 5"),
    ("cron(0 19 ? * MON 1969)", "year 1969 is outside 1970-2199"),
    ("cron(0 */0 ? * MON *)", "hours '*/0': the step after / must be a whole number above 0"),
    ("cron(0 19 ? * MON)", "has 5 fields, AWS cron has 6"),
    ("cron(0 ? ? * MON *)", "hours cannot be '?'"),
    ("cron(0 19 1W,L * ? *#)", "year '*#' uses characters its field does not take"),
])
def test_cron_fields_are_checked_as_aws_reads_them(cron: str, why: str) -> None:
    message = error("dev", {"scaleToZeroCron": cron})
    assert f"model-serving:scaleToZeroCron = {cron!r}: must be an AWS cron expression: {cron} {why}" in message


@pytest.mark.parametrize(("down", "up"), [
    ("cron(0 19 ? * MON-FRI *)", "cron(0 19 ? * MON-FRI *)"),
    ("cron(0 19 ? * MON-FRI *)", "cron(0 19 ? * 2-6 *)"),
    ("cron(0 19 1 * ? *)", "cron(0 19 ? * MON *)"),  # the 1st is a Monday now and then
    ("cron(0/30 19 ? * * *)", "cron(30 19 ? * SUN *)"),
])
def test_two_schedules_that_can_fire_in_the_same_minute_are_refused(down: str, up: str) -> None:
    message = error("dev", {"scaleToZeroCron": down, "scaleUpCron": up})
    assert f"model-serving:scaleUpCron = {up!r}: can fire in the same minute as scaleToZeroCron ({down})" in message


@pytest.mark.parametrize(("down", "up"), [
    ("cron(0 19 ? * MON-FRI *)", "cron(0 7 ? * MON-FRI *)"),
    ("cron(0 22 L * ? *)", "cron(0 6 1W * ? *)"),
    ("cron(0 20 ? * 6L *)", "cron(0 8 ? * 2#1 *)"),
    ("cron(0 19 ? * SAT *)", "cron(0 19 ? * MON *)"),
    ("cron(15 18 ? JAN-JUN * 2030)", "cron(45 7 ? 1-6 * 2030)"),
])
def test_valid_schedules_pass(down: str, up: str) -> None:
    assert parse("dev", {"scaleToZeroCron": down, "scaleUpCron": up}).scale_up_cron == up


@pytest.mark.parametrize(("zone", "valid"), [("Europe/London", True), ("Etc/GMT+9", True), ("America/New_York", True),
                                             ("localtime", False), ("posixrules", False), ("Factory", False),
                                             ("europe/london", False), ("/etc/localtime", False)])
def test_time_zones_are_tz_database_names(zone: str, valid: bool) -> None:
    assert is_timezone(zone) is valid


@pytest.mark.parametrize(("key", "value", "why"), [
    ("ingressCidrs", ["203.0.113.7"], "'203.0.113.7': must be an IPv4 CIDR: AWS refuses a bare address, write "
                                      "203.0.113.7/32"),
    ("ingressCidrs", ["10.0.0.1/16"], "'10.0.0.1/16': must be an IPv4 CIDR without host bits: 10.0.0.1/16 is inside "
                                      "10.0.0.0/16, write that"),
    ("vpcCidr", "10.0.0.1/16", "'10.0.0.1/16': must be an IPv4 CIDR without host bits"),
    ("vpcCidr", "10.0.0.0", "'10.0.0.0': must be an IPv4 CIDR: AWS refuses a bare address, write 10.0.0.0/32"),
])
def test_cidrs_are_written_as_aws_takes_them(key: str, value: Any, why: str) -> None:
    assert f"model-serving:{key} = {why}" in error("dev", {key: value})


POLICY = "arn:aws:iam::123456789012:policy/read-models"
SPOT_TYPES = sorted(name for name in instance_types() if name.startswith(("m5.", "m6i.", "c5.", "c6i.", "r5.", "r6i.")))


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"ingressCidrs": ["203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"]},
     "lists 203.0.113.0/24 twice: each entry is a security-group rule and AWS refuses a duplicate rule"),
    ({"ingressCidrs": [f"10.0.{i}.0/24" for i in range(31)], "certificateArn": CERTIFICATE.format(region="us-east-1")},
     "model-serving:ingressCidrs = '31 CIDRs': must list at most 30: each CIDR opens 2 listener port(s) and AWS "
     "allows 60 inbound rules per security group"),
    ({"ingressCidrs": [f"10.0.{i}.0/24" for i in range(61)]}, "'61 CIDRs': must list at most 60"),
    ({"taskRolePolicyArns": [POLICY, POLICY]}, "lists policy read-models more than once"),
    ({"taskRolePolicyArns": [POLICY, "arn:aws:iam::aws:policy/team/read-models"]},
     "lists policy read-models more than once"),
    ({"taskRolePolicyArns": [f"{POLICY}-{i}" for i in range(11)]},
     "'11 policies': must list at most 10, AWS's default quota of managed policies per IAM role"),
    ({"spotInstanceTypes": ["t3.medium", "m5.large", "t3.medium"]}, "lists t3.medium twice: the Auto Scaling group "
                                                                     "refuses a repeated instance type"),
    ({"spotInstanceTypes": SPOT_TYPES[:41]}, "'41 types': must list at most 40"),
    ({**VPC, "existingPublicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa1"]},
     "lists subnet-0aaaaaaaaaaaaaaa1 twice"),
    ({**VPC, "existingPrivateSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]},
     "must not repeat public subnet subnet-0aaaaaaaaaaaaaaa1"),
    ({"containerEnvironment": ["WORKERS=2", "WORKERS=4"]}, "model-serving:containerEnvironment = 'WORKERS': is set "
                                                           "twice"),
])
def test_duplicates_and_aws_quotas_are_refused(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("dev", overrides)


def test_spot_type_list_within_the_quota_passes() -> None:
    assert len(SPOT_TYPES) > 40  # so the quota case above can fail
    assert parse("dev", {"spotInstanceTypes": ["t3.medium", "t3a.medium"]}).spot_instance_types == (
        "t3.medium", "t3a.medium")


# --- facts spanning keys or the account ----------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "expected"), [
    ({"certificateArn": CERTIFICATE.format(region="eu-west-1")},
     "model-serving:certificateArn = 'arn:aws:acm:eu-west-1:123456789012:certificate/0b5a1c4e-1111-2222-3333-"
     "444455556666': is in eu-west-1, but the stack deploys to us-east-1"),
    ({"aws:region": "us-east-7"}, "aws:region = 'us-east-7': is not an AWS region"),
    ({"aws:region": "us-west-1", "availabilityZoneCount": 3},
     "model-serving:availabilityZoneCount = 3: must be at most 2, the Availability Zones of us-west-1"),
    ({"containerEnvironment": ["PORT=9000"]}, "model-serving:containerEnvironment = 'PORT=9000': must match "
                                              "containerPort (8080)"),
    ({"containerEnvironment": ["HOST=127.0.0.1"]}, "model-serving:containerEnvironment = 'HOST=127.0.0.1': must be "
                                                   "0.0.0.0 or :: (or left out)"),
    ({"containerEnvironment": ["ECS_CONTAINER_METADATA_URI_V4=http://x"]},
     "model-serving:containerEnvironment = 'ECS_CONTAINER_METADATA_URI_V4': is set by the ECS agent"),
    ({"containerEnvironment": ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/x"]}, "is set by the ECS agent"),
    ({"instanceType": "inf2.xlarge", "spotInstanceTypes": []},
     "model-serving:instanceType = 'inf2.xlarge': has AWS Inferentia chips"),
    ({"spotInstanceTypes": ["trn1.2xlarge"]}, "model-serving:spotInstanceTypes = 'trn1.2xlarge': has AWS Trainium"),
    ({"instanceType": "dl2q.24xlarge"}, "has Gaudi or Qualcomm AI accelerators"),
    ({"instanceType": "g6f.2xlarge"}, "has fractional NVIDIA GPUs"),
    ({"instanceType": "vt1.3xlarge"}, "has Xilinx video transcoding cards"),
    ({"warmPoolMinSize": 1}, "model-serving:warmPoolMinSize = 1: must be 0 while onDemandWeight and "
                             "onDemandBaseTasks are 0"),
    ({"maxTaskCount": 4, "spotMaxCount": 2},
     "model-serving:maxTaskCount = 4: leaves no room for a deployment: deploymentMinimumHealthyPercent 100 keeps "
     "all 4 tasks running, so ECS must run 5 at once before it can stop one; the spot provider gets 5 of them and "
     "its t3.medium holds 2: raise spotMaxCount to 3"),
])
def test_facts_that_span_keys_or_the_account(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("dev", overrides)


# One definition of a moving tag (infra/image_tags.py) for the settings and the policy pack's ecs-image-pinned.
@pytest.mark.parametrize("image", ["ghcr.io/acme/model:latest", "acme/model:latest", "acme/model:LATEST", "stable",
                                   "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:main"])
def test_prod_refuses_a_moving_tag_however_it_is_written(image: str) -> None:
    assert f"model-serving:image = {image!r}: must name a version tag or digest" in error("prod", {"image": image})


@pytest.mark.parametrize("image", ["v1.0.0", "acme/model:2024.06.1", f"acme/model@sha256:{'a' * 64}",
                                   "v3-latest"])
def test_prod_takes_a_version_tag_or_digest(image: str) -> None:
    assert parse("prod", {"image": image}).image == image


@pytest.mark.parametrize("overrides", [
    {"aws:region": "us-east-7", "aws:skipRegionValidation": True},
    {"aws:region": "us-west-1", **VPC, "availabilityZoneCount": 6},  # the AZ count is for a new VPC only
    {"aws:region": "eu-west-1", "certificateArn": CERTIFICATE.format(region="eu-west-1"), "albAccessLogs": True},
    {"containerPort": 9000, "containerEnvironment": ["PORT=9000"]},
    {"maxTaskCount": 4, "spotMaxCount": 2, "deploymentMaximumPercent": 100, "deploymentMinimumHealthyPercent": 50},
    # Room for one task more than the maximum is enough to deploy (slower than the full 200%, never stuck).
    {"maxTaskCount": 4, "spotMaxCount": 3},
    {"instanceType": "g5.xlarge", "gpusPerTask": 1, "instanceRootVolumeGiB": 100, "spotInstanceTypes": [],
     "spotMaxCount": 0, "spotWeight": 0, "onDemandWeight": 1, "instanceMaxCount": 4, "taskCpu": 2048,
     "taskMemoryMiB": 8192},
])
def test_good_variants_still_pass(overrides: dict[str, Any]) -> None:
    parse("dev", overrides)


def test_a_bad_stack_name_and_a_mistyped_key_stop_the_program_before_any_resource() -> None:
    run, raised = run_stack_expecting_error("Team_A", {"aws:regoin": "eu-west-1", "modelserving:image": "v1"})
    assert isinstance(raised, SettingsError) and run.resources == []
    message = str(raised)
    assert "stack name 'Team_A': AWS names start with 'model-serving-Team_A'" in message
    assert "aws:regoin = 'eu-west-1': is not a setting of the aws provider; did you mean aws:region?" in message
    assert "modelserving:image = 'v1': is not read by this program" in message


def test_the_region_table_is_what_tools_regions_generates_from_botocore() -> None:
    assert DATA_FILE.read_text() == render()
    assert regions()["us-east-1"].elb_log_account == "127311923021"
    assert (regions()["us-west-1"].availability_zones, regions()["us-east-1"].availability_zones) == (2, 6)
    assert regions()["ap-east-2"].elb_log_account is None


# --- timeouts the server must agree with ---------------------------------------------------------------------

@pytest.mark.parametrize(("item", "expected"), [
    ("KEEPALIVE_SECONDS=60", "'KEEPALIVE_SECONDS=60': must exceed albIdleTimeoutSeconds (60)"),
    ("KEEPALIVE_SECONDS=soon", "'KEEPALIVE_SECONDS=soon': must exceed albIdleTimeoutSeconds (60)"),
    ("GRACEFUL_TIMEOUT=30", "'GRACEFUL_TIMEOUT=30': must be below containerStopTimeoutSeconds (30)"),
    ("DRAIN_SECONDS=25", "'DRAIN_SECONDS=25': must be below the server's GRACEFUL_TIMEOUT (25)"),
    ("TMPDIR=/var/tmp", "'TMPDIR=/var/tmp': must lie under scratchVolumePath (/tmp) with readOnlyRootFilesystem"),
])
def test_server_settings_set_by_hand_must_agree_with_the_stack(item: str, expected: str) -> None:
    message = error("dev", {"containerEnvironment": [item], "readOnlyRootFilesystem": True})
    assert f"model-serving:containerEnvironment = {expected}" in message


@pytest.mark.parametrize(("overrides", "tmpdir"), [
    ({"readOnlyRootFilesystem": True, "scratchVolumePath": "/scratch"}, "/scratch"),
    ({"readOnlyRootFilesystem": True, "scratchVolumePath": "/scratch", "containerEnvironment": ["TMPDIR=/scratch/t"]},
     "/scratch/t"),
    ({"readOnlyRootFilesystem": False, "scratchVolumePath": "/scratch"}, None),
])
def test_the_server_writes_its_temp_files_on_the_scratch_volume(overrides: dict[str, Any], tmpdir: str | None) -> None:
    assert dict(server_environment(parse("dev", overrides))).get("TMPDIR") == tmpdir


@pytest.mark.parametrize(("overrides", "keepalive", "graceful", "drain"), [
    ({}, "65", "25", "5"),
    # Not on Spot: a 120 s stop does not fit the two-minute interruption notice.
    ({"albIdleTimeoutSeconds": 300, "containerStopTimeoutSeconds": 120, "spotWeight": 0, "onDemandWeight": 1,
      "instanceMaxCount": 2}, "305", "115", "5"),
    ({"containerStopTimeoutSeconds": 2}, "65", "1", "0"),
    ({"containerStopTimeoutSeconds": 6}, "65", "3", "1"),
    ({"containerEnvironment": ["KEEPALIVE_SECONDS=90", "GRACEFUL_TIMEOUT=6"]}, "90", "6", "3"),
])
def test_server_timeouts_are_derived_from_the_settings(overrides: dict[str, Any], keepalive: str,
                                                       graceful: str, drain: str) -> None:
    settings = parse("dev", overrides)
    env = dict(server_environment(settings))
    assert (env["KEEPALIVE_SECONDS"], env["GRACEFUL_TIMEOUT"], env["DRAIN_SECONDS"]) == (keepalive, graceful, drain)
    assert int(env["KEEPALIVE_SECONDS"]) > settings.alb_idle_timeout_seconds
    # SIGTERM, then 503 on /health for DRAIN_SECONDS, then in-flight requests finish, all before SIGKILL.
    assert int(env["DRAIN_SECONDS"]) < int(env["GRACEFUL_TIMEOUT"]) < settings.container_stop_timeout_seconds
    assert len(server_environment(settings)) == len(env)  # given once, never twice
    assert component_args(settings).task.container.environment == server_environment(settings)


# --- one program run: a new stack without a file, on Graviton with its own build, with provider settings -------

PROVIDER = {"aws:region": "eu-west-1", "aws:profile": "ml-deploy", "aws:allowedAccountIds": ["123456789012"],
            "aws:assumeRoles": [{"roleArn": "arn:aws:iam::123456789012:role/deploy", "sessionName": "pulumi"}],
            "aws:defaultTags": {"tags": {"team": "ml", "cost-center": "42"}}, "aws:maxRetries": 5,
            "aws:skipCredentialsValidation": True}
GRAVITON = {"instanceType": "m7g.large", "spotInstanceTypes": [], "spotMaxCount": 0, "spotWeight": 0,
            "onDemandWeight": 1, "instanceMaxCount": 2, "albIdleTimeoutSeconds": 120}


@functools.cache
def graviton_staging() -> StackRun:
    return run_stack("staging", overrides={**PROVIDER, **GRAVITON}, use_stack_file=False)


def test_every_aws_setting_reaches_the_provider() -> None:
    provider = graviton_staging().one("pulumi:providers:aws")

    def value(key: str) -> Any:  # provider inputs arrive JSON-encoded, except plain text
        raw = provider[key]
        return json.loads(raw) if isinstance(raw, str) and raw[:1] in "[{0123456789tf" else raw

    assert (value("region"), value("profile"), value("maxRetries")) == ("eu-west-1", "ml-deploy", 5)
    assert value("allowedAccountIds") == ["123456789012"]
    assert value("skipCredentialsValidation") is True
    assert value("assumeRoles") == [{"roleArn": "arn:aws:iam::123456789012:role/deploy", "sessionName": "pulumi"}]
    # The user's default tags are added; the stack's own four stay as they are.
    assert value("defaultTags")["tags"] == {"team": "ml", "cost-center": "42", "project": PROJECT,
                                            "environment": "dev", "stack": "staging", "managed-by": "pulumi"}


def test_graviton_builds_the_image_for_arm64_and_the_task_gets_the_derived_timeouts() -> None:
    run = graviton_staging()
    assert run.one("docker-build:index:Image")["platforms"] == ["linux/arm64"]
    (definition,) = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    env = {item["name"]: item["value"] for item in definition["environment"]}
    assert (env["KEEPALIVE_SECONDS"], env["GRACEFUL_TIMEOUT"]) == ("125", "25")


def test_x86_stacks_still_build_for_amd64(dev: StackRun) -> None:
    assert dev.one("docker-build:index:Image")["platforms"] == ["linux/amd64"]


def test_time_zones_do_not_depend_on_the_machines_tz_database() -> None:
    """Windows and slim images have no /usr/share/zoneinfo: the names come from the pinned tzdata package."""
    zoneinfo.reset_tzpath(to=[])
    settings_model._timezones.cache_clear()
    try:
        assert is_timezone("Europe/Berlin") and is_timezone("UTC") and not is_timezone("Europe/Atlantis")
    finally:
        zoneinfo.reset_tzpath()
        settings_model._timezones.cache_clear()
