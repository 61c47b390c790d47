"""Typed, validated stack settings: the one place the program reads configuration.

`Pulumi.yaml` declares every key with its type, description and default; this package parses the values
(`reader`), checks the ranges and shapes AWS accepts and the rules that span keys (`rules`), and stops the
program with one message naming each bad key, its value and what is allowed - before any resource is
registered. `model` holds the typed result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config  # the SDK has no public listing of all keys

from infra.instance_types import instance_types
from infra.settings.model import (
    CapacitySettings,
    ImageRef,
    LoadBalancerSettings,
    NetworkSettings,
    RegistrySettings,
    ScalingSettings,
    ServiceSettings,
    Settings,
    SettingsError,
    TaskSettings,
)
from infra.settings.reader import (
    CERTIFICATE_ARN,
    CONTAINER_USER,
    CRON,
    ENV_NAME,
    HTTP_PATH,
    KNOWN_TYPE,
    LOG_RETENTION_DAYS,
    MATCHER,
    POLICY_ARN,
    SCHEDULE_CRON,
    SUBNET_ID,
    VPC_ID,
    Reader,
    is_cidr,
    is_timezone,
    parse_environment,
    parse_image,
    project_schema,
)
from infra.settings.rules import check_consistency

__all__ = ["CapacitySettings", "ImageRef", "LoadBalancerSettings", "NetworkSettings", "RegistrySettings",
           "ScalingSettings", "ServiceSettings", "Settings", "SettingsError", "TaskSettings", "load_settings",
           "parse_settings", "project_schema"]


def parse_settings(project: str, stack: str, raw: Mapping[str, Any],
                   schema: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Parse and validate raw config values (key without namespace -> value); raise SettingsError."""
    schema = project_schema() if schema is None else schema
    r = Reader(project, raw, schema)

    unknown = sorted(set(raw) - set(schema))
    for key in unknown:
        r.fail(key, raw[key], "is not a setting of this project (see Pulumi.yaml for the keys)")

    environment_class = r.choice("environmentClass", ("dev", "prod"))

    network = NetworkSettings(
        availability_zone_count=r.integer("availabilityZoneCount", 2, 6),
        nat_gateways=r.choice("natGateways", ("Single", "OnePerAz")),
        vpc_cidr=r.string("vpcCidr", lambda v: is_cidr(v, 16, 20), "must be an IPv4 CIDR from /16 to /20"),
        existing_vpc_id=r.string("existingVpcId", lambda v: v == "" or bool(VPC_ID.match(v)),
                                 "must be empty or a VPC ID like vpc-0123456789abcdef0"),
        existing_public_subnet_ids=r.string_list("existingPublicSubnetIds", lambda v: bool(SUBNET_ID.match(v)),
                                                 "must be a subnet ID like subnet-0123456789abcdef0"),
        existing_private_subnet_ids=r.string_list("existingPrivateSubnetIds", lambda v: bool(SUBNET_ID.match(v)),
                                                  "must be a subnet ID like subnet-0123456789abcdef0"),
        ingress_cidrs=r.string_list("ingressCidrs", is_cidr, "must be an IPv4 CIDR like 203.0.113.0/24"),
    )
    registry = RegistrySettings(
        keep_tagged_images=r.integer("ecrKeepTaggedImages", 1, 1000),
        untagged_expiry_days=r.integer("ecrUntaggedExpiryDays", 1, 365),
    )
    capacity = CapacitySettings(
        instance_type=r.string("instanceType", lambda v: v in instance_types(), KNOWN_TYPE),
        root_volume_gib=r.integer("instanceRootVolumeGiB", 30, 16384),
        min_instances=r.integer("instanceMinCount", 0, 1000),
        max_instances=r.integer("instanceMaxCount", 1, 1000),
        target_capacity_percent=r.integer("capacityTargetPercent", 1, 100),
        min_scaling_step=r.integer("capacityMinScalingStep", 1, 10000),
        max_scaling_step=r.integer("capacityMaxScalingStep", 1, 10000),
        instance_warmup_seconds=r.integer("instanceWarmupSeconds", 0, 10000),
        container_insights=r.boolean("containerInsights"),
        spot_instance_types=r.string_list("spotInstanceTypes", lambda v: v in instance_types(), KNOWN_TYPE),
        spot_min_instances=r.integer("spotMinCount", 0, 1000),
        spot_max_instances=r.integer("spotMaxCount", 0, 1000),
        on_demand_base_tasks=r.integer("onDemandBaseTasks", 0, 100000),
        on_demand_weight=r.integer("onDemandWeight", 0, 1000),
        spot_weight=r.integer("spotWeight", 0, 1000),
        warm_pool_min_size=r.integer("warmPoolMinSize", 0, 1000),
    )
    image_value = r.string("image", lambda v: parse_image(v) is not None,
                           "must be an image tag (e.g. v1.2.0), sha256:<64 hex digits>, or a full image URI "
                           "(registry/repository:tag or registry/repository@sha256:...)")
    task = TaskSettings(
        image=parse_image(image_value) or ImageRef(reference="invalid"),
        cpu=r.integer("taskCpu", 128, 196608),
        memory_mib=r.integer("taskMemoryMiB", 128, 1048576),
        port=r.integer("containerPort", 1024, 65535),
        environment=parse_environment(r, r.string_list(
            "containerEnvironment", lambda v: bool(ENV_NAME.match(v.partition("=")[0])) and "=" in v,
            "must be NAME=value with NAME of letters, digits and underscores")),
        role_policy_arns=r.string_list("taskRolePolicyArns", lambda v: bool(POLICY_ARN.match(v)),
                                       "must be an IAM policy ARN like arn:aws:iam::123456789012:policy/name"),
        user=r.string("containerUser", lambda v: v == "" or (bool(CONTAINER_USER.match(v))
                                                               and v.split(":")[0] not in ("0", "root")),
                      "must be empty or a non-root user: uid, name, uid:gid (not 0 or root)"),
        read_only_root_filesystem=r.boolean("readOnlyRootFilesystem"),
        scratch_volume_path=r.string("scratchVolumePath", lambda v: v.startswith("/") and v != "/",
                                     "must be an absolute path other than /"),
        health_check_command=r.string("containerHealthCheckCommand",
                                      lambda v: set(re.findall(r"{(\w*)}", v)) <= {"port", "path"},
                                      "may use only the placeholders {port} and {path}"),
        start_period_seconds=r.integer("containerStartPeriodSeconds", 0, 300),
        stop_timeout_seconds=r.integer("containerStopTimeoutSeconds", 2, 120),
        log_retention_days=r.integer("logRetentionDays", 1, 3653),
        log_kms_encryption=r.boolean("logKmsEncryption"),
        gpus_per_task=r.integer("gpusPerTask", 0, 16),
        shared_memory_mib=r.integer("sharedMemoryMiB", 0, 1048576),
        image_build=r.boolean("imageBuild"),
    )
    load_balancer = LoadBalancerSettings(
        certificate_arn=r.string("certificateArn", lambda v: v == "" or bool(CERTIFICATE_ARN.match(v)),
                                 "must be empty or an ACM certificate ARN like "
                                 "arn:aws:acm:us-east-1:123456789012:certificate/<uuid>"),
        idle_timeout_seconds=r.integer("albIdleTimeoutSeconds", 1, 4000),
        access_logs=r.boolean("albAccessLogs"),
        health_check_path=r.string("healthCheckPath", lambda v: bool(HTTP_PATH.match(v)),
                                   "must be an HTTP path starting with / (at most 1024 characters)"),
        health_check_interval_seconds=r.integer("healthCheckIntervalSeconds", 5, 300),
        health_check_timeout_seconds=r.integer("healthCheckTimeoutSeconds", 2, 120),
        healthy_threshold=r.integer("healthyThresholdCount", 2, 10),
        unhealthy_threshold=r.integer("unhealthyThresholdCount", 2, 10),
        health_check_matcher=r.string("healthCheckMatcher", lambda v: bool(MATCHER.match(v)),
                                      "must be HTTP codes like 200, 200,204 or 200-299"),
        deregistration_delay_seconds=r.integer("deregistrationDelaySeconds", 0, 3600),
    )
    service = ServiceSettings(
        desired_tasks=r.integer("desiredTaskCount", 1, 5000),
        min_tasks=r.integer("minTaskCount", 1, 5000),
        max_tasks=r.integer("maxTaskCount", 1, 5000),
        deployment_minimum_healthy_percent=r.integer("deploymentMinimumHealthyPercent", 0, 100),
        deployment_maximum_percent=r.integer("deploymentMaximumPercent", 100, 200),
        health_check_grace_period_seconds=r.integer("healthCheckGracePeriodSeconds", 0, 2147483647),
    )
    scaling = ScalingSettings(
        requests_per_target_per_minute=r.integer("requestsPerTargetPerMinute", 1, 1000000),
        cpu_target_percent=r.integer("cpuTargetPercent", 10, 90),
        scale_out_cooldown_seconds=r.integer("scaleOutCooldownSeconds", 0, 3600),
        scale_in_cooldown_seconds=r.integer("scaleInCooldownSeconds", 0, 3600),
        scale_to_zero_cron=r.string("scaleToZeroCron", lambda v: v == "" or bool(SCHEDULE_CRON.match(v)), CRON),
        scale_up_cron=r.string("scaleUpCron", lambda v: v == "" or bool(SCHEDULE_CRON.match(v)), CRON),
        schedule_timezone=r.string("scheduleTimezone", is_timezone,
                                   "must be an IANA time zone such as UTC or Europe/Berlin"),
    )
    if task.log_retention_days not in LOG_RETENTION_DAYS:
        r.fail("logRetentionDays", task.log_retention_days,
               "must be a value CloudWatch Logs accepts: " + ", ".join(map(str, LOG_RETENTION_DAYS)))

    settings = Settings(project=project, stack=stack, environment_class=environment_class, network=network,
                        registry=registry, capacity=capacity, task=task, load_balancer=load_balancer,
                        service=service, scaling=scaling)
    # Rules that span keys only make sense once every key parsed.
    if not r.errors:
        check_consistency(r, settings)
    if r.errors:
        raise SettingsError(f"invalid configuration for stack '{stack}':\n  " + "\n  ".join(r.errors))
    return settings


def load_settings() -> Settings:
    """Read this stack's configuration (Pulumi.yaml defaults + stack file) and validate it."""
    project, stack = pulumi.get_project(), pulumi.get_stack()
    return parse_settings(project, stack, _project_config())


def _project_config() -> dict[str, Any]:
    """Every config value set for this project's namespace, keyed without the namespace."""
    prefix = pulumi.get_project() + ":"
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {key[len(prefix):]: value for key, value in merged.items() if key.startswith(prefix)}
