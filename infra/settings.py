"""Typed, validated stack settings: the one place the program reads configuration.

`Pulumi.yaml` declares every key with its type, description and default; this module parses the values,
checks the ranges and shapes AWS accepts and the rules that span keys, and stops the program with one
message naming each bad key, its value and what is allowed - before any resource is registered.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import config as runtime_config  # the SDK has no public listing of all keys

from infra.capacity_plan import GroupSpec, ProviderPlan, TaskSize, plan
from infra.instance_types import InstanceType, instance_types, schedulable

PROJECT_FILE = Path(__file__).resolve().parent.parent / "Pulumi.yaml"

# Values CloudWatch Logs accepts for retentionInDays.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
ECR_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
IMAGE_URI = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})$")
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d:\d{12}:certificate/[0-9a-f-]{36}$")
POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE)
CONTAINER_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,1023}$")
MATCHER = re.compile(r"^[2-4][0-9]{2}((-|,)[2-4][0-9]{2})*$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
# Application Auto Scaling cron: minutes hours day-of-month month day-of-week year.
SCHEDULE_CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")
GPU_MIN_ROOT_VOLUME_GIB = 100  # the GPU AMI plus CUDA model images


class SettingsError(pulumi.RunError):
    """Bad configuration. A RunError, so Pulumi prints the message without a stack trace."""


@dataclass(frozen=True)
class NetworkSettings:
    availability_zone_count: int
    nat_gateways: str
    vpc_cidr: str
    existing_vpc_id: str
    existing_public_subnet_ids: tuple[str, ...]
    existing_private_subnet_ids: tuple[str, ...]
    ingress_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class RegistrySettings:
    keep_tagged_images: int
    untagged_expiry_days: int


@dataclass(frozen=True)
class CapacitySettings:
    instance_type: str
    root_volume_gib: int
    min_instances: int
    max_instances: int
    target_capacity_percent: int
    min_scaling_step: int
    max_scaling_step: int
    instance_warmup_seconds: int
    container_insights: bool
    spot_instance_types: tuple[str, ...]
    spot_min_instances: int
    spot_max_instances: int
    on_demand_base_tasks: int
    on_demand_weight: int
    spot_weight: int
    warm_pool_min_size: int

    @property
    def spot(self) -> bool:
        return bool(self.spot_instance_types)


@dataclass(frozen=True)
class ImageRef:
    """Either `uri` (a full image reference) or a tag/digest `reference` in the stack's own repository."""

    uri: str = ""
    reference: str = ""

    def in_repository(self, repository_url: str) -> str:
        if self.uri:
            return self.uri
        separator = "@" if self.reference.startswith("sha256:") else ":"
        return f"{repository_url}{separator}{self.reference}"


@dataclass(frozen=True)
class TaskSettings:
    image: ImageRef
    cpu: int
    memory_mib: int
    port: int
    environment: tuple[tuple[str, str], ...]
    role_policy_arns: tuple[str, ...]
    user: str
    read_only_root_filesystem: bool
    scratch_volume_path: str
    health_check_command: str
    start_period_seconds: int
    stop_timeout_seconds: int
    log_retention_days: int
    log_kms_encryption: bool
    gpus_per_task: int
    shared_memory_mib: int


@dataclass(frozen=True)
class LoadBalancerSettings:
    certificate_arn: str
    idle_timeout_seconds: int
    access_logs: bool
    health_check_path: str
    health_check_interval_seconds: int
    health_check_timeout_seconds: int
    healthy_threshold: int
    unhealthy_threshold: int
    health_check_matcher: str
    deregistration_delay_seconds: int


@dataclass(frozen=True)
class ServiceSettings:
    desired_tasks: int
    min_tasks: int
    max_tasks: int
    deployment_minimum_healthy_percent: int
    deployment_maximum_percent: int
    health_check_grace_period_seconds: int


@dataclass(frozen=True)
class ScalingSettings:
    requests_per_target_per_minute: int
    cpu_target_percent: int
    scale_out_cooldown_seconds: int
    scale_in_cooldown_seconds: int
    scale_to_zero_cron: str
    scale_up_cron: str
    schedule_timezone: str

    @property
    def scheduled(self) -> bool:
        return bool(self.scale_to_zero_cron)


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment_class: str
    network: NetworkSettings
    registry: RegistrySettings
    capacity: CapacitySettings
    task: TaskSettings
    load_balancer: LoadBalancerSettings
    service: ServiceSettings
    scaling: ScalingSettings

    @property
    def is_prod(self) -> bool:
        return self.environment_class == "prod"

    @property
    def name_prefix(self) -> str:
        """Prefix of physical names, so resources of different stacks are told apart in the console."""
        return f"{self.project}-{self.stack}"

    @property
    def instance_type(self) -> InstanceType:
        return instance_types()[self.capacity.instance_type]

    def capacity_plan(self) -> list[ProviderPlan]:
        """Tasks per instance and instances needed, per capacity provider (on-demand first)."""
        cap = self.capacity
        groups = [GroupSpec("onDemand", (self.instance_type,), cap.on_demand_base_tasks, cap.on_demand_weight,
                            cap.max_instances)]
        if cap.spot:
            spot_types = tuple(instance_types()[name] for name in cap.spot_instance_types)
            groups.append(GroupSpec("spot", spot_types, 0, cap.spot_weight, cap.spot_max_instances))
        task = TaskSize(self.task.cpu, self.task.memory_mib, self.task.gpus_per_task)
        return plan(groups, task, self.service.min_tasks, self.service.max_tasks, cap.target_capacity_percent)

    @property
    def tags(self) -> dict[str, str]:
        return {"project": self.project, "environment": self.environment_class, "stack": self.stack,
                "managed-by": "pulumi"}


@functools.cache
def project_schema(path: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The `config:` block of Pulumi.yaml: key -> {type, description, default}."""
    config = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["config"]
    # Keys with a namespace (aws:region) set provider values; only bare keys are this project's settings.
    return {key: spec for key, spec in config.items() if ":" not in key}


class _Reader:
    """Reads typed values, falling back to Pulumi.yaml defaults, and collects every error."""

    def __init__(self, project: str, raw: Mapping[str, Any], schema: Mapping[str, Mapping[str, Any]]):
        self.project = project
        self.raw = raw
        self.schema = schema
        self.errors: list[str] = []

    def fail(self, key: str, value: Any, allowed: str) -> None:
        shown = json.dumps(value) if not isinstance(value, str) else repr(value)
        self.errors.append(f"{self.project}:{key} = {shown}: {allowed}")

    def _value(self, key: str) -> Any:
        if key not in self.schema:
            raise KeyError(f"{key} is read by infra/settings.py but not declared in Pulumi.yaml")
        value = self.raw.get(key)
        return self.schema[key].get("default") if value is None else value

    def integer(self, key: str, minimum: int, maximum: int) -> int:
        value = self._value(key)
        try:
            number = int(str(value).strip())
        except ValueError:
            self.fail(key, value, f"must be a whole number from {minimum} to {maximum}")
            return minimum
        if not minimum <= number <= maximum:
            self.fail(key, number, f"must be from {minimum} to {maximum}")
        return number

    def boolean(self, key: str) -> bool:
        value = self._value(key)
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            self.fail(key, value, "must be true or false")
        return text == "true"

    def string(self, key: str, valid: Callable[[str], bool] | None = None, allowed: str = "") -> str:
        value = str(self._value(key))
        if valid is not None and not valid(value):
            self.fail(key, value, allowed)
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        return self.string(key, lambda v: v in choices, "must be one of " + ", ".join(choices))

    def string_list(self, key: str, valid: Callable[[str], bool], allowed: str) -> tuple[str, ...]:
        value = self._value(key)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError:
                self.fail(key, value, "must be a list of strings")
                return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, value, "must be a list of strings")
            return ()
        for item in value:
            if not valid(item):
                self.fail(key, item, allowed)
        return tuple(value)


KNOWN_TYPE = "must be an EC2 instance type listed in infra/instance_types.json, e.g. t3.medium, c6i.2xlarge, g5.xlarge"
CRON = "must be empty or cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 19 ? * MON-FRI *)"


def _is_timezone(value: str) -> bool:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_cidr(value: str, min_prefix: int = 0, max_prefix: int = 32) -> bool:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        return False
    return min_prefix <= network.prefixlen <= max_prefix


def _parse_image(value: str) -> ImageRef | None:
    if "/" in value:
        return ImageRef(uri=value) if IMAGE_URI.match(value) else None
    if DIGEST.match(value) or ECR_TAG.match(value):
        return ImageRef(reference=value)
    return None


def _parse_environment(reader: _Reader, items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        name, _, value = item.partition("=")
        if SECRET_NAME.search(name):
            reader.fail("containerEnvironment", item,
                        "looks like a secret: plain environment variables are visible in the task definition; "
                        "pass secrets through AWS Secrets Manager instead")
        pairs.append((name, value))
    return tuple(pairs)


def parse_settings(project: str, stack: str, raw: Mapping[str, Any],
                   schema: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Parse and validate raw config values (key without namespace -> value); raise SettingsError."""
    schema = project_schema() if schema is None else schema
    r = _Reader(project, raw, schema)

    unknown = sorted(set(raw) - set(schema))
    for key in unknown:
        r.fail(key, raw[key], "is not a setting of this project (see Pulumi.yaml for the keys)")

    environment_class = r.choice("environmentClass", ("dev", "prod"))

    network = NetworkSettings(
        availability_zone_count=r.integer("availabilityZoneCount", 2, 6),
        nat_gateways=r.choice("natGateways", ("Single", "OnePerAz")),
        vpc_cidr=r.string("vpcCidr", lambda v: _is_cidr(v, 16, 20), "must be an IPv4 CIDR from /16 to /20"),
        existing_vpc_id=r.string("existingVpcId", lambda v: v == "" or bool(VPC_ID.match(v)),
                                 "must be empty or a VPC ID like vpc-0123456789abcdef0"),
        existing_public_subnet_ids=r.string_list("existingPublicSubnetIds", lambda v: bool(SUBNET_ID.match(v)),
                                                 "must be a subnet ID like subnet-0123456789abcdef0"),
        existing_private_subnet_ids=r.string_list("existingPrivateSubnetIds", lambda v: bool(SUBNET_ID.match(v)),
                                                  "must be a subnet ID like subnet-0123456789abcdef0"),
        ingress_cidrs=r.string_list("ingressCidrs", _is_cidr, "must be an IPv4 CIDR like 203.0.113.0/24"),
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
    image_value = r.string("image", lambda v: _parse_image(v) is not None,
                           "must be an image tag (e.g. v1.2.0), sha256:<64 hex digits>, or a full image URI "
                           "(registry/repository:tag or registry/repository@sha256:...)")
    task = TaskSettings(
        image=_parse_image(image_value) or ImageRef(reference="invalid"),
        cpu=r.integer("taskCpu", 128, 196608),
        memory_mib=r.integer("taskMemoryMiB", 128, 1048576),
        port=r.integer("containerPort", 1024, 65535),
        environment=_parse_environment(r, r.string_list(
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
        schedule_timezone=r.string("scheduleTimezone", _is_timezone,
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
        _check_consistency(r, settings)
    if r.errors:
        raise SettingsError(f"invalid configuration for stack '{stack}':\n  " + "\n  ".join(r.errors))
    return settings


def _check_consistency(r: _Reader, s: Settings) -> None:
    svc, cap, task, lb, net = s.service, s.capacity, s.task, s.load_balancer, s.network
    if not svc.min_tasks <= svc.desired_tasks <= svc.max_tasks:
        r.fail("desiredTaskCount", svc.desired_tasks,
               f"must lie between minTaskCount ({svc.min_tasks}) and maxTaskCount ({svc.max_tasks})")
    if cap.min_instances > cap.max_instances:
        r.fail("instanceMinCount", cap.min_instances,
               f"must not exceed instanceMaxCount ({cap.max_instances})")
    if cap.min_scaling_step > cap.max_scaling_step:
        r.fail("capacityMinScalingStep", cap.min_scaling_step,
               f"must not exceed capacityMaxScalingStep ({cap.max_scaling_step})")
    if svc.deployment_maximum_percent <= svc.deployment_minimum_healthy_percent:
        r.fail("deploymentMaximumPercent", svc.deployment_maximum_percent,
               f"must exceed deploymentMinimumHealthyPercent ({svc.deployment_minimum_healthy_percent}), "
               "or a deployment can neither start nor stop a task")
    if lb.health_check_timeout_seconds >= lb.health_check_interval_seconds:
        r.fail("healthCheckTimeoutSeconds", lb.health_check_timeout_seconds,
               f"must be shorter than healthCheckIntervalSeconds ({lb.health_check_interval_seconds})")
    if svc.health_check_grace_period_seconds < task.start_period_seconds:
        r.fail("healthCheckGracePeriodSeconds", svc.health_check_grace_period_seconds,
               f"must be at least containerStartPeriodSeconds ({task.start_period_seconds}), or the ALB "
               "kills tasks that are still loading the model")

    _check_instance_fit(r, s)
    _check_capacity_providers(r, s)
    _check_schedules(r, s)
    _check_network(r, net)
    if s.is_prod:
        _check_prod(r, s)


def _check_instance_fit(r: _Reader, s: Settings) -> None:
    cap, task, instance = s.capacity, s.task, s.instance_type
    cpu_room, memory_room = schedulable(instance)
    if task.cpu > cpu_room:
        r.fail("taskCpu", task.cpu, f"must be at most {cpu_room} on {instance.name} "
               f"({instance.vcpus} vCPUs less {instance.cpu_units - cpu_room} units for the ECS agent)")
    if task.memory_mib > memory_room:
        r.fail("taskMemoryMiB", task.memory_mib, f"must be at most {memory_room} on {instance.name} "
               f"({instance.memory_mib} MiB less {instance.memory_mib - memory_room} for the OS and ECS agent)")
    if task.shared_memory_mib >= task.memory_mib:
        r.fail("sharedMemoryMiB", task.shared_memory_mib,
               f"must be less than taskMemoryMiB ({task.memory_mib}): it is carved out of the task's memory")
    spot_types = [instance_types()[name] for name in cap.spot_instance_types]
    for other in [instance, *spot_types]:
        key = "instanceType" if other is instance else "spotInstanceTypes"
        if task.gpus_per_task and not other.gpus:
            r.fail(key, other.name, f"has no GPUs, but gpusPerTask is {task.gpus_per_task}: choose a GPU type "
                   "(g4dn, g5, g6, p4d, ...) or set gpusPerTask to 0")
        elif task.gpus_per_task > other.gpus:
            r.fail("gpusPerTask", task.gpus_per_task, f"must be at most {other.gpus}, the GPUs of {other.name}")
        if other.gpus and other.architecture != "x86_64":
            r.fail(key, other.name, "is an arm64 GPU type: the ECS GPU-optimized AMI is x86_64 only")
    for other in spot_types:
        if (other.architecture, bool(other.gpus)) != (instance.architecture, bool(instance.gpus)):
            r.fail("spotInstanceTypes", other.name,
                   f"must match instanceType {instance.name} in architecture ({instance.architecture}) and in "
                   "having GPUs, so one AMI and one task definition serve both groups")
    if instance.gpus and cap.root_volume_gib < GPU_MIN_ROOT_VOLUME_GIB:
        r.fail("instanceRootVolumeGiB", cap.root_volume_gib,
               f"must be at least {GPU_MIN_ROOT_VOLUME_GIB} on GPU type {instance.name}: the GPU AMI and CUDA "
               "model images do not fit in less")


def _check_capacity_providers(r: _Reader, s: Settings) -> None:
    cap = s.capacity
    if cap.spot:
        if cap.spot_max_instances < 1:
            r.fail("spotMaxCount", cap.spot_max_instances, "must be at least 1 when spotInstanceTypes is set")
        if cap.spot_min_instances > cap.spot_max_instances:
            r.fail("spotMinCount", cap.spot_min_instances,
                   f"must not exceed spotMaxCount ({cap.spot_max_instances})")
    elif cap.spot_weight or cap.spot_min_instances or cap.spot_max_instances:
        r.fail("spotInstanceTypes", [], "must list the Spot instance types when spotWeight, spotMinCount or "
               "spotMaxCount is set")
    if cap.on_demand_weight + (cap.spot_weight if cap.spot else 0) == 0:
        r.fail("onDemandWeight", cap.on_demand_weight, "and spotWeight cannot both be 0: ECS needs one provider "
               "with a weight to place tasks beyond the base")
    if cap.warm_pool_min_size > cap.max_instances:
        r.fail("warmPoolMinSize", cap.warm_pool_min_size,
               f"must not exceed instanceMaxCount ({cap.max_instances})")
    if r.errors:
        return
    for provider in s.capacity_plan():
        keys = ("instanceMaxCount", "instanceType") if provider.name == "onDemand" else ("spotMaxCount",
                                                                                          "spotInstanceTypes")
        if provider.tasks_per_instance == 0:
            r.fail(keys[1], provider.instance_type, f"cannot hold one task of {s.task.cpu} CPU units, "
                   f"{s.task.memory_mib} MiB and {s.task.gpus_per_task} GPUs ({provider.binding_limit} runs out)")
        elif not provider.placeable:
            r.fail("maxTaskCount", s.service.max_tasks,
                   f"cannot be placed: the strategy puts {provider.tasks_at_max} tasks on the {provider.name} "
                   f"provider, whose {provider.instance_type} holds {provider.tasks_per_instance} (limited by "
                   f"{provider.binding_limit}) and whose {keys[0]} is {provider.max_instances}, so at most "
                   f"{provider.tasks_per_instance * provider.max_instances} fit")


def _check_schedules(r: _Reader, s: Settings) -> None:
    scaling, cap = s.scaling, s.capacity
    if bool(scaling.scale_to_zero_cron) != bool(scaling.scale_up_cron):
        r.fail("scaleUpCron" if scaling.scale_to_zero_cron else "scaleToZeroCron", "",
               "must be set together with the other schedule (scaleToZeroCron and scaleUpCron)")
    if scaling.scheduled:
        for key, value in (("instanceMinCount", cap.min_instances), ("spotMinCount", cap.spot_min_instances)):
            if value:
                r.fail(key, value, "must be 0 when the service scales to zero on a schedule, or the instances "
                       "keep running with no task")


def _check_network(r: _Reader, net: NetworkSettings) -> None:
    if net.existing_vpc_id:
        if len(net.existing_public_subnet_ids) < 2:
            r.fail("existingPublicSubnetIds", list(net.existing_public_subnet_ids),
                   "must list at least two public subnets (in different AZs) when existingVpcId is set")
        if not net.existing_private_subnet_ids:
            r.fail("existingPrivateSubnetIds", list(net.existing_private_subnet_ids),
                   "must list the private subnets when existingVpcId is set")
    elif net.existing_public_subnet_ids or net.existing_private_subnet_ids:
        r.fail("existingVpcId", "", "must be set when existing subnet IDs are given")


def _check_prod(r: _Reader, s: Settings) -> None:
    why = "environmentClass prod"
    if s.network.existing_vpc_id and len(s.network.existing_private_subnet_ids) < 2:
        r.fail("existingPrivateSubnetIds", list(s.network.existing_private_subnet_ids),
               f"must list at least two private subnets (in different AZs) with {why}")
    if s.service.min_tasks < 2:
        r.fail("minTaskCount", s.service.min_tasks, f"must be at least 2 with {why}, so one task can fail")
    if s.capacity.min_instances < 2:
        r.fail("instanceMinCount", s.capacity.min_instances,
               f"must be at least 2 with {why}, so the tasks are spread over two instances")
    if s.capacity.spot and s.capacity.on_demand_base_tasks < 2:
        r.fail("onDemandBaseTasks", s.capacity.on_demand_base_tasks,
               f"must be at least 2 with Spot and {why}, so a wave of Spot interruptions cannot stop the service")
    if s.task.image.reference == "latest":
        r.fail("image", "latest", f"must be a version tag or digest with {why}: its tags are immutable, "
               "so 'latest' could be pushed only once")


def load_settings() -> Settings:
    """Read this stack's configuration (Pulumi.yaml defaults + stack file) and validate it."""
    project, stack = pulumi.get_project(), pulumi.get_stack()
    return parse_settings(project, stack, _project_config())


def _project_config() -> dict[str, Any]:
    """Every config value set for this project's namespace, keyed without the namespace."""
    prefix = pulumi.get_project() + ":"
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {key[len(prefix):]: value for key, value in merged.items() if key.startswith(prefix)}
