"""Rules that span keys: sizes that fit, counts that agree, schedules that can reach zero, prod's floors."""

from __future__ import annotations

from infra.instance_types import instance_types, schedulable
from infra.settings.model import NetworkSettings, Settings, TaskSettings
from infra.settings.reader import Reader

# The port the reference server built from app/ listens on unless PORT is set (app/Dockerfile).
REFERENCE_IMAGE_PORT = 8080
GPU_MIN_ROOT_VOLUME_GIB = 100  # the GPU AMI plus CUDA model images


def check_consistency(r: Reader, s: Settings) -> None:
    """Every rule that spans keys; run once each key has parsed on its own."""
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
    _check_image_build(r, task)
    if s.is_prod:
        _check_prod(r, s)


def _check_instance_fit(r: Reader, s: Settings) -> None:
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


def _check_capacity_providers(r: Reader, s: Settings) -> None:
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


def _check_schedules(r: Reader, s: Settings) -> None:
    scaling, cap = s.scaling, s.capacity
    if bool(scaling.scale_to_zero_cron) != bool(scaling.scale_up_cron):
        r.fail("scaleUpCron" if scaling.scale_to_zero_cron else "scaleToZeroCron", "",
               "must be set together with the other schedule (scaleToZeroCron and scaleUpCron)")
    if scaling.scheduled:
        for key, value in (("instanceMinCount", cap.min_instances), ("spotMinCount", cap.spot_min_instances)):
            if value:
                r.fail(key, value, "must be 0 when the service scales to zero on a schedule, or the instances "
                       "keep running with no task")


def _check_network(r: Reader, net: NetworkSettings) -> None:
    if net.existing_vpc_id:
        if len(net.existing_public_subnet_ids) < 2:
            r.fail("existingPublicSubnetIds", list(net.existing_public_subnet_ids),
                   "must list at least two public subnets (in different AZs) when existingVpcId is set")
        if not net.existing_private_subnet_ids:
            r.fail("existingPrivateSubnetIds", list(net.existing_private_subnet_ids),
                   "must list the private subnets when existingVpcId is set")
    elif net.existing_public_subnet_ids or net.existing_private_subnet_ids:
        r.fail("existingVpcId", "", "must be set when existing subnet IDs are given")


def _check_image_build(r: Reader, task: TaskSettings) -> None:
    if not task.image_build:
        return
    if task.image.uri or task.image.reference.startswith("sha256:"):
        r.fail("image", task.image.uri or task.image.reference,
               "must be a tag when imageBuild is true: the stack pushes its build of app/ under this tag; "
               "set imageBuild false to deploy an existing image by digest or URI")
    if task.port != REFERENCE_IMAGE_PORT and ("PORT", str(task.port)) not in task.environment:
        r.fail("containerPort", task.port,
               f"must be {REFERENCE_IMAGE_PORT} with imageBuild true, the port the image built from app/ listens "
               f"on, unless containerEnvironment sets PORT={task.port}")


def _check_prod(r: Reader, s: Settings) -> None:
    why = "environmentClass prod"
    if s.network.existing_vpc_id and len(s.network.existing_private_subnet_ids) < 2:
        r.fail("existingPrivateSubnetIds", list(s.network.existing_private_subnet_ids),
               f"must list at least two private subnets (in different AZs) with {why}")
    if s.service.min_tasks < 2:
        r.fail("minTaskCount", s.service.min_tasks, f"must be at least 2 with {why}, so one task can fail")
    if s.capacity.min_instances < 2:
        r.fail("instanceMinCount", s.capacity.min_instances,
               f"must be at least 2 with {why}, so the tasks are spread over two instances")
    if s.task.image_build:
        r.fail("imageBuild", True, f"must be false with {why}: deploy an image promoted from dev with "
               "tools/promote_image.py; a build from a working copy is untested, and an immutable tag cannot "
               "be pushed again when the code changes")
    if s.capacity.spot and s.capacity.on_demand_base_tasks < 2:
        r.fail("onDemandBaseTasks", s.capacity.on_demand_base_tasks,
               f"must be at least 2 with Spot and {why}, so a wave of Spot interruptions cannot stop the service")
    if s.task.image.reference == "latest":
        r.fail("image", "latest", f"must be a version tag or digest with {why}: its tags are immutable, "
               "so 'latest' could be pushed only once")
