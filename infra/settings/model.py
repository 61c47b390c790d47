"""The typed settings: one frozen dataclass per piece of the stack, grouped under `Settings`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.capacity_plan import GroupSpec, ProviderPlan, TaskSize, plan
from infra.instance_types import InstanceType, instance_types


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
    # Build app/ and push it under the `image` tag (infra/image.py); False deploys `image` as given.
    image_build: bool = False


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
