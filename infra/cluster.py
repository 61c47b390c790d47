"""Cluster capacity: the ECS cluster and the EC2 Auto Scaling groups behind its capacity providers.

ECS owns the number of instances: managed scaling sets each group's desired capacity, managed termination
protection keeps instances with tasks from being scaled in (which AWS allows only on a group created with
`protect_from_scale_in`), and managed draining moves tasks off an instance before it goes. An optional Spot
group (several interchangeable types, price-capacity-optimized) sits beside the On-Demand one, which may
keep a warm pool of stopped, pre-initialised instances. Destroy does not hang: the groups are
force-deleted, and Pulumi removes the service, association, capacity providers, groups and cluster in that
order because each depends on the next.

The set of capacity providers never changes after the first deploy: the service must depend on the
association (ECS refuses a strategy naming a provider the cluster does not have yet), so Pulumi updates the
association before the service, and removing a provider the service still uses fails ("is in use and cannot
be removed", aws/containers-roadmap#631). Adding needs that order, removing the reverse, and one dependency
graph cannot give both. So the spot group always exists (empty with Spot off, see infra/settings/args.py):
turning Spot on or off only changes sizes, weights and the strategy.
"""

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from infra.iam import service_role
from infra.instance_types import InstanceType
from infra.naming import capacity_provider_name

AMI_PARAMETERS = {
    "x86_64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
    "arm64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id",
    "gpu": "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
}
ROOT_DEVICE = "/dev/xvda"
INSTANCE_POLICIES = (
    aws.iam.ManagedPolicy.AMAZON_EC2_CONTAINER_SERVICEFOR_EC2_ROLE.value,
    aws.iam.ManagedPolicy.AMAZON_SSM_MANAGED_INSTANCE_CORE.value,
)


@dataclass(frozen=True)
class CapacityGroupArgs:
    """One Auto Scaling group and its capacity provider: the onDemand and the spot group are two of these."""

    name: str  # "onDemand" or "spot": the strategy, the capacity plan and the README use it
    resource_suffix: str  # of the Pulumi resource names; fixed for running stacks (a rename replaces)
    provider_suffix: str  # of the capacity provider's name
    market: Literal["on-demand", "spot"]
    instance_types: tuple[str, ...]  # one for on-demand; Spot's interchangeable types as overrides
    min_size: int
    max_size: int
    weight: int
    base: int
    warm_pool_min_size: int  # 0: none (AWS allows warm pools only on groups without Spot)
    # "standard" keeps burstable (t*) instances from billing surplus CPU credits ("unlimited", AWS's launch
    # default for T3/T4g); None leaves AWS's default. Applied only when every type of the group is burstable.
    cpu_credits: Literal["standard", "unlimited"] | None = None


@dataclass(frozen=True)
class ClusterArgs:
    name_prefix: str
    tags: dict[str, str]
    container_insights: bool
    instance: InstanceType  # every group's architecture and GPU-ness (validation makes them agree)
    root_volume_gib: int
    stop_timeout_seconds: int
    target_capacity_percent: int
    min_scaling_step: int
    max_scaling_step: int
    instance_warmup_seconds: int
    groups: tuple[CapacityGroupArgs, ...]


def ami_parameter(instance: InstanceType) -> str:
    return AMI_PARAMETERS["gpu" if instance.gpus else instance.architecture]


def is_burstable(instance_type: str) -> bool:
    """T2, T3, T3a, T4g: the types that earn and spend CPU credits."""
    return bool(re.match(r"^t\d[a-z]*\.", instance_type))


# The agent's image clean-up, sized for multi-GB model images. `once` pulls an image the first time a task
# on the instance needs it and reuses the cached copy afterwards, like `prefer-cached`, but keeps automated
# clean-up on: AWS turns clean-up off under `prefer-cached`, so every release (a new digest) stayed on disk
# until the root volume filled up and tasks failed to start. Images in use by a task are never removed.
IMAGE_CLEANUP = {
    "ECS_IMAGE_PULL_BEHAVIOR": "once",
    "ECS_IMAGE_CLEANUP_INTERVAL": "10m",  # look for unused images every 10 minutes (AWS's minimum)
    # An image pulled this recently stays, so a rollback right after a release still finds it cached.
    "ECS_IMAGE_MINIMUM_CLEANUP_AGE": "1h",
    "ECS_NUM_IMAGES_DELETE_PER_CYCLE": "5",
    # Stopped tasks' containers pin their image; AWS's 3 h keeps every old release for 3 h after a rollout.
    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "30m",
}


def ecs_agent_config(cluster_name: str, stop_timeout_seconds: int, group: CapacityGroupArgs,
                     gpu: bool = False) -> dict[str, str]:
    config = {
        "ECS_CLUSTER": cluster_name,
        "ECS_ENABLE_TASK_IAM_ROLE": "true",
        # Tasks must not reach the instance role's credentials through IMDS.
        "ECS_AWSVPC_BLOCK_IMDS": "true",
        "ECS_CONTAINER_STOP_TIMEOUT": f"{stop_timeout_seconds}s",
        **IMAGE_CLEANUP,
        "ECS_ENABLE_CONTAINER_METADATA": "true",
    }
    if gpu:
        # The GPU AMI's agent advertises the GPUs (and tasks can reserve them) only with this set.
        config["ECS_ENABLE_GPU_SUPPORT"] = "true"
    if group.market == "spot":
        # Drain tasks as soon as the two-minute Spot interruption notice arrives.
        config["ECS_ENABLE_SPOT_INSTANCE_DRAINING"] = "true"
    elif group.warm_pool_min_size:
        # An instance initialised into the warm pool must not register until it actually enters service.
        config["ECS_WARM_POOLS_CHECK"] = "true"
    return config


def user_data(agent_config: dict[str, str]) -> str:
    lines = "\n".join(f"{key}={value}" for key, value in agent_config.items())
    script = f"#!/bin/bash\ncat <<'EOF' >> /etc/ecs/ecs.config\n{lines}\nEOF\n"
    return base64.b64encode(script.encode()).decode()


@dataclass(frozen=True)
class CapacityGroup:
    """The instances behind one capacity provider."""

    launch_template: aws.ec2.LaunchTemplate
    auto_scaling_group: aws.autoscaling.Group
    capacity_provider: aws.ecs.CapacityProvider


class Cluster(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    instance_role: aws.iam.Role
    instance_role_attachments: list[aws.iam.RolePolicyAttachment]
    instance_profile: aws.iam.InstanceProfile
    groups: dict[str, CapacityGroup]  # by CapacityGroupArgs.name, onDemand first
    capacity_providers: aws.ecs.ClusterCapacityProviders
    strategy: list[tuple[pulumi.Output[str], int, int]]

    def __init__(self, name: str, args: ClusterArgs, private_subnet_ids: pulumi.Input[Sequence[str]],
                 instance_security_group_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Cluster", name, None, opts)
        self.args, self.name = args, name
        self.private_subnet_ids, self.instance_security_group_id = private_subnet_ids, instance_security_group_id
        child = pulumi.ResourceOptions(parent=self)

        self.cluster = aws.ecs.Cluster(
            f"{name}",
            settings=[aws.ecs.ClusterSettingArgs(
                name="containerInsights", value="enabled" if args.container_insights else "disabled")],
            opts=child,
        )
        self.instance_role, self.instance_role_attachments = service_role(
            args.name_prefix, "instance", "ec2.amazonaws.com", INSTANCE_POLICIES, self,
            "ECS container instances: register with the cluster, pull images, SSM sessions (no SSH)")
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-instance", role=self.instance_role.name,
                                                        opts=child)

        self.groups = {group.name: self._capacity_group(group) for group in args.groups}

        # Only providers that can receive tasks go into the strategy; all are associated with the cluster.
        self.strategy = [(self.groups[group.name].capacity_provider.name, group.weight, group.base)
                         for group in args.groups if group.weight or group.base]
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity-providers",
            cluster_name=self.cluster.name,
            capacity_providers=[group.capacity_provider.name for group in self.groups.values()],
            default_capacity_provider_strategies=[
                aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                    capacity_provider=provider, weight=weight, base=base)
                for provider, weight, base in self.strategy],
            opts=child,
        )

        first = next(iter(self.groups.values()))
        self.register_outputs({
            "clusterName": self.cluster.name,
            "autoScalingGroupName": first.auto_scaling_group.name,
            "capacityProviderName": first.capacity_provider.name,
        })

    def _capacity_group(self, spec: CapacityGroupArgs) -> CapacityGroup:
        args, suffix, name = self.args, spec.resource_suffix, f"{self.name}-{spec.resource_suffix}"
        spot = spec.market == "spot"
        child = pulumi.ResourceOptions(parent=self)
        # The provider returns `value` as a secret, which makes the whole result secret: a new AMI would show in a
        # preview only as "[secret]" changed. `insecure_value` is the same public String parameter, meant to be
        # shown; unsecret it so the diff names the old and the new AMI.
        ami_id = pulumi.Output.unsecret(aws.ssm.get_parameter_output(
            name=ami_parameter(args.instance), opts=pulumi.InvokeOutputOptions(parent=self)).insecure_value)
        launch_template = aws.ec2.LaunchTemplate(
            name,
            description=f"ECS container instances ({'Spot' if spot else 'On-Demand'}) of {args.name_prefix}",
            image_id=ami_id,
            instance_type=None if spot else spec.instance_types[0],  # Spot takes its types from overrides
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=self.instance_profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                instance_metadata_tags="disabled"),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=args.root_volume_gib, volume_type="gp3", encrypted="true",
                    delete_on_termination="true"),
            )],
            network_interfaces=[aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                associate_public_ip_address="false", delete_on_termination="true",
                security_groups=[self.instance_security_group_id])],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            credit_specification=aws.ec2.LaunchTemplateCreditSpecificationArgs(cpu_credits=spec.cpu_credits)
            if spec.cpu_credits and all(map(is_burstable, spec.instance_types)) else None,
            user_data=self.cluster.name.apply(
                lambda cluster_name: user_data(ecs_agent_config(cluster_name, args.stop_timeout_seconds, spec,
                                                                gpu=bool(args.instance.gpus)))),
            update_default_version=True,
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume",
                                                                          tags=args.tags)],
            opts=child,
        )
        version = launch_template.latest_version.apply(str)
        instance_tags = {**args.tags, "Name": f"{args.name_prefix}-{suffix}"}
        mixed_instances = aws.autoscaling.GroupMixedInstancesPolicyArgs(
            instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
                on_demand_base_capacity=0, on_demand_percentage_above_base_capacity=0,
                spot_allocation_strategy="price-capacity-optimized"),
            launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                launch_template_specification=aws.autoscaling.
                GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                    launch_template_id=launch_template.id, version=version),
                # Sorted: price-capacity-optimized ignores the order, so reordering the setting changes nothing.
                overrides=[aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=t)
                           for t in sorted(spec.instance_types)]),
        ) if spot else None
        # Without max_group_prepared_capacity the pool holds max size minus desired (prod: four, not one); with
        # it equal to min_size the pool has exactly that size (PutWarmPool). No instance reuse policy: the ECS
        # guide ("Configuring pre-initialized instances for your Amazon ECS Auto Scaling group") does not allow
        # ReuseOnScaleIn on an ECS group, so scaled-in instances terminate and the pool refills with new ones.
        # A pooled instance has not registered with ECS (ECS_WARM_POOLS_CHECK), so it has pulled no image: it
        # saves the boot, not the image pull.
        warm_pool = aws.autoscaling.GroupWarmPoolArgs(
            pool_state="Stopped", min_size=spec.warm_pool_min_size,
            max_group_prepared_capacity=spec.warm_pool_min_size,
        ) if spec.warm_pool_min_size else None
        # A new launch-template version (a new AMI, user data, instance type) starts an instance refresh, which
        # replaces every instance, warm-pool ones included. It launches each replacement before terminating
        # (min 100%, max 200% healthy), replaces instances ECS protects because they run tasks (`Refresh`), and
        # ECS managed draining moves their tasks off first, starting replacements before stopping the old
        # tasks (the service's minimum healthy percent). Instances already on the new version, of a type still
        # listed, are skipped: adding a Spot type replaces nothing, removing one replaces only its instances.
        instance_refresh = aws.autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                min_healthy_percentage=100, max_healthy_percentage=200,
                scale_in_protected_instances="Refresh", skip_matching=True,
                instance_warmup=str(args.instance_warmup_seconds)),
        )
        group = aws.autoscaling.Group(
            name,
            vpc_zone_identifiers=self.private_subnet_ids,
            min_size=spec.min_size,
            max_size=spec.max_size,
            launch_template=None if spot else aws.autoscaling.GroupLaunchTemplateArgs(
                id=launch_template.id, version=version),
            mixed_instances_policy=mixed_instances,
            capacity_rebalance=True if spot else None,  # replace Spot instances at risk before they go
            warm_pool=warm_pool,
            instance_refresh=instance_refresh,
            force_delete_warm_pool=True if warm_pool else None,
            protect_from_scale_in=True,
            force_delete=True,
            health_check_type="EC2",
            # Group metrics (free at one minute) feed the dashboard's instances per capacity group.
            metrics_granularity="1Minute",
            enabled_metrics=[aws.autoscaling.Metric(metric) for metric in (
                "GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances", "GroupTotalInstances")],
            tags=[aws.autoscaling.GroupTagArgs(key="AmazonECSManaged", value="true", propagate_at_launch=True)]
            + [aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
               for key, value in instance_tags.items()],
            # ECS managed scaling owns the desired capacity. Instances need the role's policies to register, and
            # their agents need them to stop tasks when destroy drains the group, so the policies come first.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"],
                                        depends_on=self.instance_role_attachments),
        )
        provider = aws.ecs.CapacityProvider(
            capacity_provider_name(args.name_prefix) + spec.provider_suffix,
            auto_scaling_group_provider=aws.ecs.CapacityProviderAutoScalingGroupProviderArgs(
                auto_scaling_group_arn=group.arn,
                managed_termination_protection="ENABLED",
                managed_draining="ENABLED",
                managed_scaling=aws.ecs.CapacityProviderAutoScalingGroupProviderManagedScalingArgs(
                    status="ENABLED",
                    target_capacity=args.target_capacity_percent,
                    minimum_scaling_step_size=args.min_scaling_step,
                    maximum_scaling_step_size=args.max_scaling_step,
                    instance_warmup_period=args.instance_warmup_seconds,
                ),
            ),
            opts=child,
        )
        return CapacityGroup(launch_template, group, provider)
