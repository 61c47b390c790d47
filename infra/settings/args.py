"""Settings -> each component's own args: the one place where dev-like and prod-like stacks differ.

Components never see `Settings` or `environmentClass`; they get explicit values (retain the registry,
protect the ALB, ...). A new setting is declared in `model.py` and handed to its component here.
"""

from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from infra.access_logs import AccessLogsArgs
from infra.autoscaling import AutoscalingArgs
from infra.cluster import CapacityGroupArgs, ClusterArgs
from infra.image import ImageArgs
from infra.loadbalancer import LoadBalancerArgs
from infra.logs import LoggingArgs
from infra.metrics import metrics_environment
from infra.network import HTTP_PORT, HTTPS_PORT, NetworkArgs
from infra.observability import AlarmThresholds, ObservabilityArgs, deployment_alarm_names
from infra.regions import regions
from infra.registry import RegistryArgs
from infra.release import ReleaseArgs, ReleaseCheckArgs
from infra.service import DeploymentArgs, ServiceArgs
from infra.settings.model import Settings
from infra.settings.provider import merged_default_tags
from infra.settings.rules import DRAIN, DRAIN_SECONDS, GRACEFUL, KEEPALIVE, TMPDIR, graceful_timeout
from infra.settings.strategy import SHIFTING, service_strategy, traffic_shifting
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
    observability: ObservabilityArgs
    release: ReleaseArgs | None = None  # None: a ROLLING service with no traffic-shifting resources


def capacity_groups(s: Settings) -> tuple[CapacityGroupArgs, ...]:
    """The onDemand group, then the spot group (names as in the capacity plan).

    The spot group and its capacity provider exist even with Spot off (empty: size 0, weight 0, the
    On-Demand type as a placeholder), so turning Spot on or off never changes the cluster's providers: ECS
    refuses to disassociate a provider while the service still uses it, and Pulumi would update the
    association before the service (infra/cluster.py says why the order cannot be reversed).
    """
    # dev: no surprise bills for `unlimited` burstable credits; prod keeps AWS's default.
    credits: Literal["standard"] | None = None if s.is_prod else "standard"
    on_demand = CapacityGroupArgs(
        name="onDemand", resource_suffix="instances", provider_suffix="", market="on-demand",
        instance_types=(s.instance_type,), min_size=s.instance_min_count, max_size=s.instance_max_count,
        weight=s.on_demand_weight, base=s.on_demand_base_tasks, warm_pool_min_size=s.warm_pool_min_size,
        cpu_credits=credits)
    spot = CapacityGroupArgs(
        name="spot", resource_suffix="spot", provider_suffix="-spot", market="spot",
        instance_types=s.spot_instance_types or (s.instance_type,), min_size=s.spot_min_count if s.spot else 0,
        max_size=s.spot_max_count if s.spot else 0, weight=s.spot_weight if s.spot else 0, base=0,
        warm_pool_min_size=0, cpu_credits=credits)
    return (on_demand, spot)


# The reference server's keep-alive must outlast the ALB's idle timeout, and its graceful shutdown must end
# before ECS sends SIGKILL (app/gunicorn_conf.py reads both; rules.py refuses user values that break them).
KEEPALIVE_MARGIN_SECONDS = 5


def server_environment(s: Settings) -> tuple[tuple[str, str], ...]:
    """containerEnvironment, plus what the server must agree on with the stack (its timeouts, its metrics and
    batching, and its temp directory on a read-only root filesystem) unless containerEnvironment sets it."""
    graceful = graceful_timeout(s)
    derived: tuple[tuple[str, str], ...] = (
        (KEEPALIVE, str(s.alb_idle_timeout_seconds + KEEPALIVE_MARGIN_SECONDS)), (GRACEFUL, str(graceful)),
        (DRAIN, str(min(DRAIN_SECONDS, graceful // 2))),
        # Where the server's metrics go (the dashboard's ServiceName) and how it batches; rules refuse these
        # names in containerEnvironment.
        *metrics_environment(s.name_prefix, s.batch_max_size, s.batch_max_wait_ms))
    if s.read_only_root_filesystem:  # the only writable place; the server keeps its temp files under TMPDIR
        derived += ((TMPDIR, s.scratch_volume_path),)
    given = {name for name, _ in s.environment}
    return s.environment + tuple(item for item in derived if item[0] not in given)


def provider_args(s: Settings) -> dict[str, Any]:
    """The aws provider's arguments: every `aws:` setting, with the stack's tags added to aws:defaultTags (the
    stack's own tags win; rules refuse a user value that would change one)."""
    kwargs = dict(s.provider)
    for name in ("access_key", "secret_key", "token"):
        if kwargs.get(name):
            kwargs[name] = pulumi.Output.secret(kwargs[name])
    kwargs["region"] = s.region or None  # as aws.config.region: aws:region, else AWS_REGION
    kwargs["default_tags"] = aws.ProviderDefaultTagsArgs(tags=merged_default_tags(s.provider, s.tags))
    return kwargs


def image_platform(s: Settings) -> str:
    """The platform the build of app/ targets: the instances' CPU architecture (validation makes groups agree)."""
    return {"arm64": "linux/arm64"}.get(s.instance.architecture, "linux/amd64")


# What alarmErrorRatePercent 0 and latencyObjectiveMs 0 stand for: prod is held to a tighter objective.
ERROR_RATE_PERCENT = {"dev": 5, "prod": 1}
LATENCY_OBJECTIVE_MS = {"dev": 2000, "prod": 1000}


def alarm_thresholds(s: Settings) -> AlarmThresholds:
    return AlarmThresholds(
        error_rate_percent=s.alarm_error_rate_percent or ERROR_RATE_PERCENT[s.environment_class],
        min_requests_per_minute=s.alarm_min_requests_per_minute,
        latency_objective_ms=s.latency_objective_ms or LATENCY_OBJECTIVE_MS[s.environment_class],
        cpu_percent=s.alarm_cpu_percent, memory_percent=s.alarm_memory_percent)

def elb_account_arn(region_name: str) -> str | None:
    """The ELB account that delivers access logs in regions opened before August 2022 (infra/regions.json)."""
    region = regions().get(region_name)
    if region is None or region.elb_log_account is None:
        return None  # a newer region: the log-delivery service principal alone
    return f"arn:{region.partition}:iam::{region.elb_log_account}:root"


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
            keep_tagged_images=s.ecr_keep_tagged_images, untagged_expiry_days=s.ecr_untagged_expiry_days,
            # prod: release images are never expired inside the rollback window; dev stays aggressive.
            release_tag_pattern=s.ecr_release_tag_pattern if prod else None,
            keep_release_images=s.ecr_keep_release_images),
        logging=LoggingArgs(
            name_prefix=s.name_prefix, retention_days=s.log_retention_days, kms_encryption=s.log_kms_encryption,
            kms_deletion_window_days=30 if prod else 7,
            retain_on_delete=prod),  # prod's logs and their key outlive the stack, like its images
        cluster=ClusterArgs(
            name_prefix=s.name_prefix, tags=s.tags, container_insights=s.container_insights, instance=s.instance,
            root_volume_gib=s.instance_root_volume_gib, stop_timeout_seconds=s.container_stop_timeout_seconds,
            target_capacity_percent=s.capacity_target_percent, min_scaling_step=s.capacity_min_scaling_step,
            max_scaling_step=s.capacity_max_scaling_step, instance_warmup_seconds=s.instance_warmup_seconds,
            groups=capacity_groups(s)),
        image=ImageArgs(tag=s.image_ref.reference, platform=image_platform(s)) if s.image_build else None,
        task=TaskArgs(
            name_prefix=s.name_prefix, cpu=s.task_cpu, memory_mib=s.task_memory_mib,
            role_policy_arns=s.task_role_policy_arns,
            container=ContainerArgs(
                port=s.container_port, environment=server_environment(s), user=s.container_user,
                read_only_root_filesystem=s.read_only_root_filesystem, scratch_volume_path=s.scratch_volume_path,
                health_check_command=s.container_health_check_command, health_check_path=s.health_check_path,
                start_period_seconds=s.container_start_period_seconds,
                stop_timeout_seconds=s.container_stop_timeout_seconds, gpus=s.gpus_per_task,
                shared_memory_mib=s.shared_memory_mib)),
        load_balancer=LoadBalancerArgs(
            name_prefix=s.name_prefix, idle_timeout_seconds=s.alb_idle_timeout_seconds, deletion_protection=prod,
            # prod keeps its access logs when the stack is destroyed; dev deletes them with the bucket.
            access_logs=AccessLogsArgs(force_destroy=not prod, retain_on_delete=prod,
                                       expiration_days=s.log_retention_days,
                                       elb_account_arn=elb_account_arn(s.region)) if s.alb_access_logs else None,
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
            deployment_alarm_names=deployment_alarm_names(s.name_prefix),
            deployment=DeploymentArgs(
                strategy=service_strategy(s), bake_minutes=s.deployment_bake_minutes, canary_percent=s.canary_percent,
                canary_bake_minutes=s.canary_bake_minutes, linear_step_percent=s.linear_step_percent,
                linear_step_bake_minutes=s.linear_step_bake_minutes) if traffic_shifting(s) else None),
        autoscaling=AutoscalingArgs(
            min_tasks=s.min_task_count, max_tasks=s.max_task_count,
            requests_per_target_per_minute=s.requests_per_target_per_minute,
            cpu_target_percent=s.cpu_target_percent, scale_out_cooldown_seconds=s.scale_out_cooldown_seconds,
            scale_in_cooldown_seconds=s.scale_in_cooldown_seconds, scale_to_zero_cron=s.scale_to_zero_cron,
            scale_up_cron=s.scale_up_cron, schedule_timezone=s.schedule_timezone,
            in_flight_requests_per_task=s.in_flight_requests_per_task, metrics_service_name=s.name_prefix),
        observability=ObservabilityArgs(
            name_prefix=s.name_prefix, thresholds=alarm_thresholds(s), min_tasks=s.min_task_count,
            container_insights=s.container_insights,
            # prod always notifies (subscribe what you like to the topic); dev only once someone asks for mail.
            notify=prod or bool(s.alarm_emails), alarm_emails=s.alarm_emails,
            kms_deletion_window_days=30 if prod else 7, metrics_service_name=s.name_prefix,
            capacity_groups=tuple(group.name for group in capacity_groups(s))),
        release=ReleaseArgs(
            name_prefix=s.name_prefix, test_listener_port=s.test_listener_port, test_cidrs=s.test_listener_cidrs,
            certificate_arn=s.certificate_arn,
            check=ReleaseCheckArgs(min_accuracy_percent=s.release_check_min_accuracy_percent,
                                   p99_ms=alarm_thresholds(s).latency_objective_ms,  # the latency alarm's objective
                                   log_retention_days=s.log_retention_days)
            if service_strategy(s) in SHIFTING else None) if traffic_shifting(s) else None,
    )
