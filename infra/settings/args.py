"""Settings -> each component's own args: the one place where dev-like and prod-like stacks differ.

Components never see `Settings` or `environmentClass`; they get explicit values (retain the registry,
protect the ALB, ...). A new setting is declared in `model.py` and handed to its component here.
"""

import math
from dataclasses import dataclass

from infra.access_logs import AccessLogsArgs
from infra.autoscaling import AutoscalingArgs
from infra.cluster import CapacityGroupArgs, ClusterArgs
from infra.image import ImageArgs
from infra.loadbalancer import LoadBalancerArgs
from infra.logs import LoggingArgs
from infra.network import HTTP_PORT, HTTPS_PORT, NetworkArgs
from infra.registry import RegistryArgs
from infra.release import ReleaseArgs, ReleaseCheckArgs
from infra.service import DeploymentArgs, ServiceArgs
from infra.settings.model import Settings
from infra.task import ContainerArgs, TaskArgs


@dataclass(frozen=True)
class StackArgs:
    network: NetworkArgs
    registry: RegistryArgs
    logging: LoggingArgs
    cluster: ClusterArgs
    image: ImageArgs | None  # None: deploy the configured image instead of building app/
    task: TaskArgs
    load_balancer: LoadBalancerArgs
    service: ServiceArgs
    autoscaling: AutoscalingArgs
    release: ReleaseArgs | None = None  # None: a ROLLING service with no traffic-shifting resources


def capacity_groups(s: Settings) -> tuple[CapacityGroupArgs, ...]:
    """The onDemand group, then the spot group when Spot types are set (names as in the capacity plan)."""
    on_demand = CapacityGroupArgs(
        name="onDemand", resource_suffix="instances", provider_suffix="", market="on-demand",
        instance_types=(s.instance_type,), min_size=s.instance_min_count, max_size=s.instance_max_count,
        weight=s.on_demand_weight, base=s.on_demand_base_tasks, warm_pool_min_size=s.warm_pool_min_size)
    spot = CapacityGroupArgs(
        name="spot", resource_suffix="spot", provider_suffix="-spot", market="spot",
        instance_types=s.spot_instance_types, min_size=s.spot_min_count, max_size=s.spot_max_count,
        weight=s.spot_weight, base=0, warm_pool_min_size=0)
    return (on_demand, spot) if s.spot else (on_demand,)


SHIFTING = ("BLUE_GREEN", "LINEAR", "CANARY")


def deployment_strategy(s: Settings) -> str:
    """The strategy the stack asks for: prod-like stacks release by canary (a bad model meets a tenth of the
    traffic, then rolls back); dev keeps rolling updates (one set of tasks, fast iterations)."""
    if s.deployment_strategy != "auto":
        return s.deployment_strategy
    return "CANARY" if s.is_prod else "ROLLING"


def service_strategy(s: Settings) -> str:
    """The strategy this update gives the service. ECS switches a load-balanced service between ROLLING and the
    shifting strategies only once the load balancer's advancedConfiguration is in place (entering) and while it
    stays (leaving: either target group may hold production), so such a change runs ROLLING for one update."""
    target = deployment_strategy(s)
    previous = target if s.previous_deployment_strategy == "none" else s.previous_deployment_strategy
    return "ROLLING" if (target == "ROLLING") != (previous == "ROLLING") else target


def traffic_shifting(s: Settings) -> bool:
    """Whether the stack holds the alternate target group, listener rules, test listener and roles."""
    return deployment_strategy(s) in SHIFTING or s.previous_deployment_strategy in SHIFTING


def transition_step(s: Settings) -> str:
    """What a two-update strategy change does in this update ("" when none is under way)."""
    target, running = deployment_strategy(s), service_strategy(s)
    if running == target:
        return ""
    if target in SHIFTING:
        return (f"step 1 of 2 towards {target}: the service stays ROLLING while the alternate target group, listener "
                "rules and test listener are added; once this update is done, remove previousDeploymentStrategy and "
                "run pulumi up again")
    return ("step 1 of 2 towards ROLLING: the service switches to ROLLING and keeps the alternate target group and "
            "listener rules, as either target group may hold production; once the production listener rule forwards "
            "100% to the primary target group, remove previousDeploymentStrategy and run pulumi up again")


def deployment_extra_tasks(s: Settings) -> int:
    """Tasks a deployment at maxTaskCount starts beside the running ones: a rolling update up to
    deploymentMaximumPercent, a shifting strategy a whole green revision (ECS starts all of green before it moves
    any traffic, canary and linear included)."""
    rolling = math.ceil(s.max_task_count * s.deployment_maximum_percent / 100) - s.max_task_count
    shifting = s.max_task_count if {service_strategy(s), deployment_strategy(s)} & set(SHIFTING) else 0
    return max(rolling, shifting)


def component_args(s: Settings) -> StackArgs:
    prod = s.is_prod  # every dev/prod difference is spelled out below, and nowhere else
    return StackArgs(
        network=NetworkArgs(
            name_prefix=s.name_prefix, existing_vpc_id=s.existing_vpc_id,
            existing_public_subnet_ids=s.existing_public_subnet_ids,
            existing_private_subnet_ids=s.existing_private_subnet_ids, vpc_cidr=s.vpc_cidr,
            availability_zone_count=s.availability_zone_count, nat_gateways=s.nat_gateways,
            ingress_cidrs=s.ingress_cidrs,
            listener_ports=(HTTP_PORT, HTTPS_PORT) if s.certificate_arn else (HTTP_PORT,),
            container_port=s.container_port),
        registry=RegistryArgs(
            # prod: tags cannot be overwritten, and the images a running prod depends on outlive the stack
            # (`pulumi destroy` still completes); dev's repository goes with its images.
            immutable_tags=prod, force_delete=not prod, retain_on_delete=prod,
            keep_tagged_images=s.ecr_keep_tagged_images, untagged_expiry_days=s.ecr_untagged_expiry_days),
        logging=LoggingArgs(
            name_prefix=s.name_prefix, retention_days=s.log_retention_days, kms_encryption=s.log_kms_encryption,
            kms_deletion_window_days=30 if prod else 7),
        cluster=ClusterArgs(
            name_prefix=s.name_prefix, tags=s.tags, container_insights=s.container_insights, instance=s.instance,
            root_volume_gib=s.instance_root_volume_gib, stop_timeout_seconds=s.container_stop_timeout_seconds,
            target_capacity_percent=s.capacity_target_percent, min_scaling_step=s.capacity_min_scaling_step,
            max_scaling_step=s.capacity_max_scaling_step, instance_warmup_seconds=s.instance_warmup_seconds,
            groups=capacity_groups(s)),
        image=ImageArgs(tag=s.image_ref.reference) if s.image_build else None,
        task=TaskArgs(
            name_prefix=s.name_prefix, cpu=s.task_cpu, memory_mib=s.task_memory_mib,
            role_policy_arns=s.task_role_policy_arns,
            container=ContainerArgs(
                port=s.container_port, environment=s.environment, user=s.container_user,
                read_only_root_filesystem=s.read_only_root_filesystem, scratch_volume_path=s.scratch_volume_path,
                health_check_command=s.container_health_check_command, health_check_path=s.health_check_path,
                start_period_seconds=s.container_start_period_seconds,
                stop_timeout_seconds=s.container_stop_timeout_seconds, gpus=s.gpus_per_task,
                shared_memory_mib=s.shared_memory_mib)),
        load_balancer=LoadBalancerArgs(
            name_prefix=s.name_prefix, idle_timeout_seconds=s.alb_idle_timeout_seconds, deletion_protection=prod,
            # prod keeps its access logs when the stack is destroyed; dev deletes them with the bucket.
            access_logs=AccessLogsArgs(force_destroy=not prod, retain_on_delete=prod,
                                       expiration_days=s.log_retention_days) if s.alb_access_logs else None,
            certificate_arn=s.certificate_arn, target_port=s.container_port,
            deregistration_delay_seconds=s.deregistration_delay_seconds, health_check_path=s.health_check_path,
            health_check_matcher=s.health_check_matcher,
            health_check_interval_seconds=s.health_check_interval_seconds,
            health_check_timeout_seconds=s.health_check_timeout_seconds,
            healthy_threshold=s.healthy_threshold_count, unhealthy_threshold=s.unhealthy_threshold_count),
        service=ServiceArgs(
            desired_count=s.desired_task_count,
            deployment_minimum_healthy_percent=s.deployment_minimum_healthy_percent,
            deployment_maximum_percent=s.deployment_maximum_percent,
            health_check_grace_period_seconds=s.health_check_grace_period_seconds, container_port=s.container_port,
            deployment=DeploymentArgs(
                strategy=service_strategy(s), bake_minutes=s.deployment_bake_minutes, canary_percent=s.canary_percent,
                canary_bake_minutes=s.canary_bake_minutes, linear_step_percent=s.linear_step_percent,
                linear_step_bake_minutes=s.linear_step_bake_minutes) if traffic_shifting(s) else None),
        autoscaling=AutoscalingArgs(
            min_tasks=s.min_task_count, max_tasks=s.max_task_count,
            requests_per_target_per_minute=s.requests_per_target_per_minute,
            cpu_target_percent=s.cpu_target_percent, scale_out_cooldown_seconds=s.scale_out_cooldown_seconds,
            scale_in_cooldown_seconds=s.scale_in_cooldown_seconds, scale_to_zero_cron=s.scale_to_zero_cron,
            scale_up_cron=s.scale_up_cron, schedule_timezone=s.schedule_timezone),
        release=ReleaseArgs(
            name_prefix=s.name_prefix, test_listener_port=s.test_listener_port, test_cidrs=s.test_listener_cidrs,
            certificate_arn=s.certificate_arn,
            check=ReleaseCheckArgs(min_accuracy_percent=s.release_check_min_accuracy_percent,
                                   p99_ms=s.release_check_p99_ms, log_retention_days=s.log_retention_days)
            if service_strategy(s) in SHIFTING else None) if traffic_shifting(s) else None,
    )
