"""Rules that span keys: sizes that fit, counts that agree, schedules that can reach zero, prod's floors.

They run on a `Settings` whose every key already passed its own checks (infra/settings/model.py).
"""

import json
from typing import Any

from infra.instance_types import instance_types, schedulable
from infra.network import HTTP_PORT, HTTPS_PORT
from infra.settings.args import deployment_extra_tasks, deployment_strategy, traffic_shifting
from infra.settings.model import Settings

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
    if s.is_prod:
        _check_prod(r, s)
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
    if s.image_ref.reference == "latest":
        r.fail("image", "latest", f"must be a version tag or digest with {why}: its tags are immutable, "
               "so 'latest' could be pushed only once")


def _check_release(r: Errors, s: Settings) -> None:
    if s.test_listener_port in (HTTP_PORT, HTTPS_PORT):
        r.fail("testListenerPort", s.test_listener_port,
               f"must not be {HTTP_PORT} or {HTTPS_PORT}: those ports serve production")
    if traffic_shifting(s) and s.existing_vpc_id and not s.test_listener_cidrs:
        r.fail("testListenerCidrs", [], f"must list the NAT gateway addresses (as /32) of existingVpcId's private "
               f"subnets with deploymentStrategy {deployment_strategy(s)}: the release check reaches the test "
               "listener through them, and only the stack's own NAT gateways are known to it")
