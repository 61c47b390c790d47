"""Rules that span keys: sizes that fit, counts that agree, schedules that can reach zero, prod's floors.

They run on a `Settings` whose every key already passed its own checks (infra/settings/model.py).
"""

import fnmatch
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from infra.image_tags import MOVING_TAGS, is_moving
from infra.instance_types import instance_types, schedulable
from infra.metrics import STACK_ENVIRONMENT
from infra.naming import name_problems
from infra.network import HTTP_PORT, HTTPS_PORT
from infra.regions import regions
from infra.settings import cron
from infra.settings.model import Settings
from infra.settings.strategy import deployment_extra_tasks, deployment_strategy, traffic_shifting

# The port the reference server built from app/ listens on unless PORT is set (app/Dockerfile).
REFERENCE_IMAGE_PORT = 8080
GPU_MIN_ROOT_VOLUME_GIB = 100  # the GPU AMI plus CUDA model images


class Errors(list[str]):
    """Every error of one validation, each `project:key = value: what is allowed`."""

    def __init__(self, project: str):
        super().__init__()
        self.project = project

    def fail(self, key: str, value: Any, allowed: str) -> None:
        shown = json.dumps(value) if not isinstance(value, str) else repr(value)
        self.append(f"{self.project}:{key} = {shown}: {allowed}")


def check_consistency(r: Errors, s: Settings) -> None:
    """Every rule that spans keys; run once each key has parsed on its own."""
    if not s.min_task_count <= s.desired_task_count <= s.max_task_count:
        r.fail("desiredTaskCount", s.desired_task_count,
               f"must lie between minTaskCount ({s.min_task_count}) and maxTaskCount ({s.max_task_count})")
    if s.instance_min_count > s.instance_max_count:
        r.fail("instanceMinCount", s.instance_min_count,
               f"must not exceed instanceMaxCount ({s.instance_max_count})")
    if s.capacity_min_scaling_step > s.capacity_max_scaling_step:
        r.fail("capacityMinScalingStep", s.capacity_min_scaling_step,
               f"must not exceed capacityMaxScalingStep ({s.capacity_max_scaling_step})")
    if s.deployment_maximum_percent <= s.deployment_minimum_healthy_percent:
        r.fail("deploymentMaximumPercent", s.deployment_maximum_percent,
               f"must exceed deploymentMinimumHealthyPercent ({s.deployment_minimum_healthy_percent}), "
               "or a deployment can neither start nor stop a task")
    if s.health_check_timeout_seconds >= s.health_check_interval_seconds:
        r.fail("healthCheckTimeoutSeconds", s.health_check_timeout_seconds,
               f"must be shorter than healthCheckIntervalSeconds ({s.health_check_interval_seconds})")
    if s.health_check_grace_period_seconds < s.container_start_period_seconds:
        r.fail("healthCheckGracePeriodSeconds", s.health_check_grace_period_seconds,
               f"must be at least containerStartPeriodSeconds ({s.container_start_period_seconds}), or the ALB "
               "kills tasks that are still loading the model")

    _check_instance_fit(r, s)
    _check_capacity_providers(r, s)
    _check_schedules(r, s)
    _check_network(r, s)
    _check_image_build(r, s)
    _check_observability(r, s)
    _check_spot_drain_time(r, s)
    _check_release_tag(r, s)
    if s.is_prod:
        _check_prod(r, s)
    check_deploy_time_facts(r, s)
    _check_release(r, s)


def _check_instance_fit(r: Errors, s: Settings) -> None:
    instance = s.instance
    cpu_room, memory_room = schedulable(instance)
    if s.task_cpu > cpu_room:
        r.fail("taskCpu", s.task_cpu, f"must be at most {cpu_room} on {instance.name} "
               f"({instance.vcpus} vCPUs less {instance.cpu_units - cpu_room} units for the ECS agent)")
    if s.task_memory_mib > memory_room:
        r.fail("taskMemoryMiB", s.task_memory_mib, f"must be at most {memory_room} on {instance.name} "
               f"({instance.memory_mib} MiB less {instance.memory_mib - memory_room} for the OS and ECS agent)")
    if s.shared_memory_mib >= s.task_memory_mib:
        r.fail("sharedMemoryMiB", s.shared_memory_mib,
               f"must be less than taskMemoryMiB ({s.task_memory_mib}): it is carved out of the task's memory")
    spot_types = [instance_types()[name] for name in s.spot_instance_types]
    for other in [instance, *spot_types]:
        key = "instanceType" if other is instance else "spotInstanceTypes"
        if s.gpus_per_task and not other.gpus:
            r.fail(key, other.name, f"has no GPUs, but gpusPerTask is {s.gpus_per_task}: choose a GPU type "
                   "(g4dn, g5, g6, p4d, ...) or set gpusPerTask to 0")
        elif s.gpus_per_task > other.gpus:
            r.fail("gpusPerTask", s.gpus_per_task, f"must be at most {other.gpus}, the GPUs of {other.name}")
        if other.gpus and other.architecture != "x86_64":
            r.fail(key, other.name, "is an arm64 GPU type: the ECS GPU-optimized AMI is x86_64 only")
    for other in spot_types:
        if (other.architecture, bool(other.gpus)) != (instance.architecture, bool(instance.gpus)):
            r.fail("spotInstanceTypes", other.name,
                   f"must match instanceType {instance.name} in architecture ({instance.architecture}) and in "
                   "having GPUs, so one AMI and one task definition serve both groups")
    if instance.gpus and s.instance_root_volume_gib < GPU_MIN_ROOT_VOLUME_GIB:
        r.fail("instanceRootVolumeGiB", s.instance_root_volume_gib,
               f"must be at least {GPU_MIN_ROOT_VOLUME_GIB} on GPU type {instance.name}: the GPU AMI and CUDA "
               "model images do not fit in less")


def _check_capacity_providers(r: Errors, s: Settings) -> None:
    if s.spot:
        if s.spot_max_count < 1:
            r.fail("spotMaxCount", s.spot_max_count, "must be at least 1 when spotInstanceTypes is set")
        if s.spot_min_count > s.spot_max_count:
            r.fail("spotMinCount", s.spot_min_count,
                   f"must not exceed spotMaxCount ({s.spot_max_count})")
    elif s.spot_weight or s.spot_min_count or s.spot_max_count:
        r.fail("spotInstanceTypes", [], "must list the Spot instance types when spotWeight, spotMinCount or "
               "spotMaxCount is set")
    if s.on_demand_weight + (s.spot_weight if s.spot else 0) == 0:
        r.fail("onDemandWeight", s.on_demand_weight, "and spotWeight cannot both be 0: ECS needs one provider "
               "with a weight to place tasks beyond the base")
    if s.warm_pool_min_size > s.instance_max_count:
        r.fail("warmPoolMinSize", s.warm_pool_min_size,
               f"must not exceed instanceMaxCount ({s.instance_max_count})")
    if r:
        return
    # A shifting strategy cannot release at all unless a whole green revision fits beside blue; a rolling update
    # beyond the room left only goes slower, so its peak is planned (the output) but not enforced.
    shifting = traffic_shifting(s)
    for provider in s.capacity_plan(deployment_extra_tasks(s) if shifting else None):
        keys = ("instanceMaxCount", "instanceType") if provider.name == "onDemand" else ("spotMaxCount",
                                                                                          "spotInstanceTypes")
        if provider.tasks_per_instance == 0:
            r.fail(keys[1], provider.instance_type, f"cannot hold one task of {s.task_cpu} CPU units, "
                   f"{s.task_memory_mib} MiB and {s.gpus_per_task} GPUs ({provider.binding_limit} runs out)")
        elif not provider.placeable:
            r.fail("maxTaskCount", s.max_task_count,
                   "cannot be placed: " + (
                       f"a {deployment_strategy(s)} release at the maximum runs green beside blue, "
                       f"{provider.tasks_at_peak} tasks" if shifting
                       else f"the strategy puts {provider.tasks_at_max} tasks") + f" on the {provider.name} "
                   f"provider, whose {provider.instance_type} holds {provider.tasks_per_instance} (limited by "
                   f"{provider.binding_limit}) and whose {keys[0]} is {provider.max_instances}, so at most "
                   f"{provider.tasks_per_instance * provider.max_instances} fit")


def _check_schedules(r: Errors, s: Settings) -> None:
    if bool(s.scale_to_zero_cron) != bool(s.scale_up_cron):
        r.fail("scaleUpCron" if s.scale_to_zero_cron else "scaleToZeroCron", "",
               "must be set together with the other schedule (scaleToZeroCron and scaleUpCron)")
    if s.scheduled:
        for key, value in (("instanceMinCount", s.instance_min_count), ("spotMinCount", s.spot_min_count)):
            if value:
                r.fail(key, value, "must be 0 when the service scales to zero on a schedule, or the instances "
                       "keep running with no task")


def _check_network(r: Errors, s: Settings) -> None:
    if s.existing_vpc_id:
        if len(s.existing_public_subnet_ids) < 2:
            r.fail("existingPublicSubnetIds", list(s.existing_public_subnet_ids),
                   "must list at least two public subnets (in different AZs) when existingVpcId is set")
        if not s.existing_private_subnet_ids:
            r.fail("existingPrivateSubnetIds", list(s.existing_private_subnet_ids),
                   "must list the private subnets when existingVpcId is set")
    elif s.existing_public_subnet_ids or s.existing_private_subnet_ids:
        r.fail("existingVpcId", "", "must be set when existing subnet IDs are given")


def _check_image_build(r: Errors, s: Settings) -> None:
    if not s.image_build:
        return
    if s.image_ref.uri or s.image_ref.reference.startswith("sha256:"):
        r.fail("image", s.image_ref.uri or s.image_ref.reference,
               "must be a tag when imageBuild is true: the stack pushes its build of app/ under this tag; "
               "set imageBuild false to deploy an existing image by digest or URI")
    if s.container_port != REFERENCE_IMAGE_PORT and ("PORT", str(s.container_port)) not in s.environment:
        r.fail("containerPort", s.container_port,
               f"must be {REFERENCE_IMAGE_PORT} with imageBuild true, the port the image built from app/ listens "
               f"on, unless containerEnvironment sets PORT={s.container_port}")


def _check_prod(r: Errors, s: Settings) -> None:
    why = "environmentClass prod"
    if s.existing_vpc_id and len(s.existing_private_subnet_ids) < 2:
        r.fail("existingPrivateSubnetIds", list(s.existing_private_subnet_ids),
               f"must list at least two private subnets (in different AZs) with {why}")
    if s.min_task_count < 2:
        r.fail("minTaskCount", s.min_task_count, f"must be at least 2 with {why}, so one task can fail")
    if s.instance_min_count < 2:
        r.fail("instanceMinCount", s.instance_min_count,
               f"must be at least 2 with {why}, so the tasks are spread over two instances")
    if s.image_build:
        r.fail("imageBuild", True, f"must be false with {why}: deploy an image promoted from dev with "
               "tools/promote_image.py; a build from a working copy is untested, and an immutable tag cannot "
               "be pushed again when the code changes")
    if s.spot and s.on_demand_base_tasks < 2:
        r.fail("onDemandBaseTasks", s.on_demand_base_tasks,
               f"must be at least 2 with Spot and {why}, so a wave of Spot interruptions cannot stop the service")
    if is_moving(s.image_ref.in_repository("repository")):
        r.fail("image", s.image, f"must name a version tag or digest with {why}: a moving tag such as latest or "
               f"stable ({', '.join(sorted(MOVING_TAGS))}, in any case) would leave the stack unable to say which "
               "image runs, and the prod repository's tags are immutable")


# --- what AWS refuses at deploy time (issue 10, part 1) ----------------------------------------------------

# AWS default quotas the settings' lists count against.
SECURITY_GROUP_INBOUND_RULES = 60  # inbound rules per security group (IPv4)
MANAGED_POLICIES_PER_ROLE = 10
INSTANCE_TYPES_PER_GROUP = 40  # launch-template overrides of a mixed instances policy
# Instance families with accelerators the stack cannot drive: it knows NVIDIA GPUs through the ECS GPU AMI only.
UNSUPPORTED_ACCELERATORS = {
    "inf": "AWS Inferentia chips (need the Neuron SDK, the ECS Neuron AMI and /dev/neuron device mappings)",
    "trn": "AWS Trainium chips (need the Neuron SDK, the ECS Neuron AMI and /dev/neuron device mappings)",
    "dl": "Gaudi or Qualcomm AI accelerators (need their own drivers and device mappings)",
    "f": "FPGAs (need the FPGA developer AMI)",
    "vt": "Xilinx video transcoding cards (need their own drivers)",
    "g6f": "fractional NVIDIA GPUs (need GRID drivers the ECS GPU AMI lacks)",
    "gr6f": "fractional NVIDIA GPUs (need GRID drivers the ECS GPU AMI lacks)",
}
# Set by the ECS agent in every container; a task value would replace the agent's (task-role credentials,
# task metadata).
AGENT_ENVIRONMENT = re.compile(r"^(ECS_.*|AWS_CONTAINER_.*|AWS_EXECUTION_ENV)$")
# The reference server's timeouts (app/gunicorn_conf.py), derived from the settings in infra/settings/args.py.
KEEPALIVE = "KEEPALIVE_SECONDS"
GRACEFUL = "GRACEFUL_TIMEOUT"
DRAIN = "DRAIN_SECONDS"  # /health answers 503 this long after SIGTERM; the server needs it below GRACEFUL_TIMEOUT
GRACEFUL_MARGIN_SECONDS = 5
DRAIN_SECONDS = 5  # at most: while the ALB deregisters the task, container checks see it leaving


def graceful_timeout(s: Settings) -> int:
    """The server's graceful shutdown: containerEnvironment's GRACEFUL_TIMEOUT, else the stop timeout less a
    margin for the process to exit (at least half of it: 2 s -> 1 s, 30 s -> 25 s)."""
    given = dict(s.environment).get(GRACEFUL, "")
    if given.isdigit():
        return int(given)
    stop = s.container_stop_timeout_seconds
    return max(stop - GRACEFUL_MARGIN_SECONDS, stop // 2)
TMPDIR = "TMPDIR"


def check_deploy_time_facts(r: Errors, s: Settings) -> None:
    """Rules for settings that pass their own checks but that AWS refuses, or that deploy a broken service."""
    _check_stack_name(r, s)
    _check_lists(r, s)
    _check_region(r, s)
    _check_environment(r, s)
    _check_image_and_instances(r, s)
    _check_deployment_room(r, s)


def _check_stack_name(r: Errors, s: Settings) -> None:
    problems = name_problems(s.name_prefix, frozenset({"albAccessLogs"} if s.alb_access_logs else ()))
    if problems:
        broken = "; ".join(f"{name.what} ({allowed})" for name, allowed in problems)
        r.append(f"stack name {s.stack!r}: AWS names start with {s.name_prefix!r}, which breaks the {broken}. "
                 "Name the stack with lowercase letters, digits and single hyphens (short enough for the "
                 "limits above)")


def _duplicates(items: Iterable[str]) -> list[str]:
    return sorted(item for item, count in Counter(items).items() if count > 1)


def _check_lists(r: Errors, s: Settings) -> None:
    cidrs = [str(ipaddress.IPv4Network(cidr, strict=False)) for cidr in s.ingress_cidrs]
    for cidr in _duplicates(cidrs):
        r.fail("ingressCidrs", list(s.ingress_cidrs), f"lists {cidr} twice: each entry is a security-group rule "
               "and AWS refuses a duplicate rule")
    ports = 2 if s.certificate_arn else 1
    if len(cidrs) * ports > SECURITY_GROUP_INBOUND_RULES:
        r.fail("ingressCidrs", f"{len(cidrs)} CIDRs", f"must list at most {SECURITY_GROUP_INBOUND_RULES // ports}: "
               f"each CIDR opens {ports} listener port(s) and AWS allows {SECURITY_GROUP_INBOUND_RULES} inbound "
               "rules per security group by default")
    arns = s.task_role_policy_arns
    names = [arn.rsplit("/", 1)[-1] for arn in arns]
    for name in _duplicates(names):
        r.fail("taskRolePolicyArns", [arn for arn in arns if arn.endswith("/" + name)],
               f"lists policy {name} more than once: each policy can be attached to the task role once (the "
               "attachments are named after it)")
    if len(arns) > MANAGED_POLICIES_PER_ROLE:
        r.fail("taskRolePolicyArns", f"{len(arns)} policies", f"must list at most {MANAGED_POLICIES_PER_ROLE}, "
               "AWS's default quota of managed policies per IAM role")
    for instance_type in _duplicates(s.spot_instance_types):
        r.fail("spotInstanceTypes", list(s.spot_instance_types), f"lists {instance_type} twice: the Auto Scaling "
               "group refuses a repeated instance type")
    if len(s.spot_instance_types) > INSTANCE_TYPES_PER_GROUP:
        r.fail("spotInstanceTypes", f"{len(s.spot_instance_types)} types",
               f"must list at most {INSTANCE_TYPES_PER_GROUP}, the instance types one Auto Scaling group takes")
    for key, subnets in (("existingPublicSubnetIds", s.existing_public_subnet_ids),
                         ("existingPrivateSubnetIds", s.existing_private_subnet_ids)):
        for subnet in _duplicates(subnets):
            r.fail(key, list(subnets), f"lists {subnet} twice")
    for subnet in sorted(set(s.existing_public_subnet_ids) & set(s.existing_private_subnet_ids)):
        r.fail("existingPrivateSubnetIds", list(s.existing_private_subnet_ids),
               f"must not repeat public subnet {subnet}: tasks and instances belong in private subnets, the ALB "
               "in public ones")
    for name in _duplicates(name for name, _ in s.environment):
        r.fail("containerEnvironment", name, "is set twice: give each variable once")
    if s.scale_to_zero_cron and s.scale_up_cron and not cron.problem(s.scale_to_zero_cron) \
            and not cron.problem(s.scale_up_cron) and cron.may_coincide(s.scale_to_zero_cron, s.scale_up_cron):
        r.fail("scaleUpCron", s.scale_up_cron, f"can fire in the same minute as scaleToZeroCron "
               f"({s.scale_to_zero_cron}), and which of the two wins is undefined: give them different times")


def _check_region(r: Errors, s: Settings) -> None:
    if not s.region:
        return
    region = regions().get(s.region)
    if region is None:
        if not s.provider.get("skip_region_validation"):
            r.append(f"aws:region = {s.region!r}: is not an AWS region (infra/regions.json lists those botocore "
                     "knows); set aws:skipRegionValidation true for a region newer than that list")
        return
    if region.availability_zones and not s.existing_vpc_id \
            and s.availability_zone_count > region.availability_zones:
        r.fail("availabilityZoneCount", s.availability_zone_count,
               f"must be at most {region.availability_zones}, the Availability Zones of {s.region}")
    if s.certificate_arn:
        certificate_region = s.certificate_arn.split(":")[3]
        if certificate_region != s.region:
            r.fail("certificateArn", s.certificate_arn, f"is in {certificate_region}, but the stack deploys to "
                   f"{s.region}: a load balancer takes certificates of its own region only")


def _check_environment(r: Errors, s: Settings) -> None:
    env = dict(s.environment)
    if "PORT" in env and env["PORT"] != str(s.container_port):
        r.fail("containerEnvironment", f"PORT={env['PORT']}", f"must match containerPort ({s.container_port}): "
               "the load balancer sends traffic and health checks to containerPort")
    if env.get("HOST", "0.0.0.0") not in ("0.0.0.0", "::"):  # the server must listen on the task ENI
        r.fail("containerEnvironment", f"HOST={env['HOST']}", "must be 0.0.0.0 or :: (or left out): the load "
               "balancer reaches the task on its network interface's address, not on localhost")
    for name in env:
        if AGENT_ENVIRONMENT.match(name):
            r.fail("containerEnvironment", name, "is set by the ECS agent in every task; a value of your own "
                   "replaces the agent's (task-role credentials, task metadata)")
    limits = ((KEEPALIVE, lambda v: v > s.alb_idle_timeout_seconds,
               f"must exceed albIdleTimeoutSeconds ({s.alb_idle_timeout_seconds}), or the ALB reuses connections "
               "the server is closing and answers 502; leave it out and the stack derives it"),
              (GRACEFUL, lambda v: 0 < v < s.container_stop_timeout_seconds,
               f"must be below containerStopTimeoutSeconds ({s.container_stop_timeout_seconds}), or ECS kills "
               "the server before in-flight requests finish; leave it out and the stack derives it"),
              (DRAIN, lambda v: v < graceful_timeout(s),
               f"must be below the server's GRACEFUL_TIMEOUT ({graceful_timeout(s)}), or the server refuses to "
               "start; leave it out and the stack derives it"))
    for name, valid, allowed in limits:
        if name in env and not (env[name].isdigit() and valid(int(env[name]))):
            r.fail("containerEnvironment", f"{name}={env[name]}", allowed)
    scratch = s.scratch_volume_path.rstrip("/")
    if s.read_only_root_filesystem and TMPDIR in env and not (env[TMPDIR] + "/").startswith(scratch + "/"):
        r.fail("containerEnvironment", f"{TMPDIR}={env[TMPDIR]}", f"must lie under scratchVolumePath ({scratch}) "
               "with readOnlyRootFilesystem: nothing else is writable; leave it out and the stack sets it")


def _accelerator(instance_type: str) -> str | None:
    family = instance_type.split(".", maxsplit=1)[0]
    for prefix, what in UNSUPPORTED_ACCELERATORS.items():
        if family == prefix or (family.startswith(prefix) and family[len(prefix)].isdigit()):
            return what
    return None


def _check_image_and_instances(r: Errors, s: Settings) -> None:
    for key, names in (("instanceType", (s.instance_type,)), ("spotInstanceTypes", s.spot_instance_types)):
        for name in names:
            what = _accelerator(name)
            if what:
                r.fail(key, name, f"has {what}, which this stack cannot drive: choose a CPU type or an "
                       "NVIDIA GPU type (g4dn, g5, g6, p4d, ...)")
    if s.warm_pool_min_size and not (s.on_demand_weight or s.on_demand_base_tasks):
        r.fail("warmPoolMinSize", s.warm_pool_min_size, "must be 0 while onDemandWeight and onDemandBaseTasks "
               "are 0: the strategy never places tasks on the onDemand group, so its warm pool would never be used")


def _check_deployment_room(r: Errors, s: Settings) -> None:
    """At maxTaskCount with deploymentMinimumHealthyPercent keeping every task, a rolling deployment must start a
    task before it stops one: the groups must hold one more (a stack that fits exactly can never deploy). Shifting
    strategies need room for a whole green revision, which _check_capacity_providers enforces."""
    deploying = s.deployment_max_tasks
    if deploying == s.max_task_count or traffic_shifting(s) or any(
            not p.placeable or not p.tasks_per_instance for p in s.capacity_plan()):
        return  # no extra task, a green revision checked elsewhere, or the maximum itself does not fit (reported)
    for provider in s.capacity_plan(extra_tasks=deploying - s.max_task_count):
        if not provider.placeable:
            key = "instanceMaxCount" if provider.name == "onDemand" else "spotMaxCount"
            needed = -(-provider.tasks_at_peak // provider.tasks_per_instance)
            r.fail("maxTaskCount", s.max_task_count,
                   f"leaves no room for a deployment: deploymentMinimumHealthyPercent "
                   f"{s.deployment_minimum_healthy_percent} keeps all {s.max_task_count} tasks running, so ECS must "
                   f"run {deploying} at once before it can stop one; the {provider.name} provider gets "
                   f"{provider.tasks_at_peak} of them and its {provider.instance_type} holds "
                   f"{provider.tasks_per_instance}: "
                   f"raise {key} to {needed}, or lower deploymentMinimumHealthyPercent or maxTaskCount")


def _check_observability(r: Errors, s: Settings) -> None:
    for name, _ in s.environment:
        if name in STACK_ENVIRONMENT:
            r.fail("containerEnvironment", name, "is set by the stack (the server's metrics and batching): use "
                   "batchMaxSize and batchMaxWaitMs for batching")
    if s.batch_max_wait_ms and s.batch_max_size == 1:
        r.fail("batchMaxWaitMs", s.batch_max_wait_ms, "must be 0 while batchMaxSize is 1 (batching off): a wait "
               "would only delay requests")
    if s.latency_objective_ms >= s.alb_idle_timeout_seconds * 1000:
        r.fail("latencyObjectiveMs", s.latency_objective_ms, f"must be below albIdleTimeoutSeconds "
               f"({s.alb_idle_timeout_seconds} s): slower requests are cut off by the ALB, never measured")
    seen: set[str] = set()
    for email in s.alarm_emails:
        if email.lower() in seen:
            r.fail("alarmEmails", email, "must not list an address twice")
        seen.add(email.lower())


# Spot gives two minutes' notice (EC2 User Guide, "Spot Instance interruption notices"). ECS then drains the
# instance (ECS_ENABLE_SPOT_INSTANCE_DRAINING): the ALB deregisters each task for deregistrationDelaySeconds,
# then the container gets SIGTERM and containerStopTimeoutSeconds before SIGKILL. Both must fit in the notice
# with a margin for the notice to reach ECS and for ECS to start replacement tasks.
SPOT_NOTICE_SECONDS = 120
SPOT_DRAIN_MARGIN_SECONDS = 30


def _check_spot_drain_time(r: Errors, s: Settings) -> None:
    if not (s.spot and s.spot_weight):
        return
    budget = SPOT_NOTICE_SECONDS - SPOT_DRAIN_MARGIN_SECONDS
    if s.deregistration_delay_seconds + s.container_stop_timeout_seconds > budget:
        r.fail("deregistrationDelaySeconds", s.deregistration_delay_seconds,
               f"plus containerStopTimeoutSeconds ({s.container_stop_timeout_seconds}) must be at most {budget} "
               f"when tasks run on Spot (spotWeight {s.spot_weight}): the two-minute interruption notice less "
               f"{SPOT_DRAIN_MARGIN_SECONDS} s for ECS to react, or in-flight requests are cut off")


def _check_release_tag(r: Errors, s: Settings) -> None:
    # prod's lifecycle policy protects release tags only; any other tag of its repository falls under "keep the
    # last ecrKeepTaggedImages", which knows nothing of what the service runs.
    tag = s.image_ref.reference
    if is_moving(s.image_ref.in_repository("repository")):
        return  # refused as a moving tag already: one message per mistake
    if s.is_prod and tag and not tag.startswith("sha256:") and not fnmatch.fnmatchcase(tag, s.ecr_release_tag_pattern):
        r.fail("image", tag, f"must match ecrReleaseTagPattern ({s.ecr_release_tag_pattern}) with environmentClass "
               "prod: the lifecycle policy keeps release tags for rollbacks and may expire any other tag")


def _check_release(r: Errors, s: Settings) -> None:
    if s.test_listener_port in (HTTP_PORT, HTTPS_PORT):
        r.fail("testListenerPort", s.test_listener_port,
               f"must not be {HTTP_PORT} or {HTTPS_PORT}: those ports serve production")
    if traffic_shifting(s) and s.existing_vpc_id and not s.test_listener_cidrs:
        r.fail("testListenerCidrs", [], f"must list the NAT gateway addresses (as /32) of existingVpcId's private "
               f"subnets with deploymentStrategy {deployment_strategy(s)}: the release check reaches the test "
               "listener through them, and only the stack's own NAT gateways are known to it")
