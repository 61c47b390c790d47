"""Cluster capacity: the ECS cluster and the EC2 Auto Scaling group behind its capacity provider.

ECS owns the number of instances: managed scaling sets the group's desired capacity, managed termination
protection keeps instances with tasks from being scaled in (which AWS allows only on a group created with
`protect_from_scale_in`), and managed draining moves tasks off an instance before it goes. Destroy does
not hang: the group is force-deleted, and Pulumi removes the service, association, capacity provider,
group and cluster in that order because each depends on the next.
"""

import base64
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra.iam import service_role
from infra.naming import capacity_provider_name
from infra.settings import Settings

AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
ROOT_DEVICE = "/dev/xvda"
INSTANCE_POLICIES = (
    aws.iam.ManagedPolicy.AMAZON_EC2_CONTAINER_SERVICEFOR_EC2_ROLE.value,
    aws.iam.ManagedPolicy.AMAZON_SSM_MANAGED_INSTANCE_CORE.value,
)


def ecs_agent_config(cluster_name: str, stop_timeout_seconds: int) -> dict[str, str]:
    return {
        "ECS_CLUSTER": cluster_name,
        "ECS_ENABLE_TASK_IAM_ROLE": "true",
        # Tasks must not reach the instance role's credentials through IMDS.
        "ECS_AWSVPC_BLOCK_IMDS": "true",
        "ECS_CONTAINER_STOP_TIMEOUT": f"{stop_timeout_seconds}s",
        # Model images are large: a cached image starts a task in seconds.
        "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
        "ECS_ENABLE_CONTAINER_METADATA": "true",
    }


def user_data(agent_config: dict[str, str]) -> str:
    lines = "\n".join(f"{key}={value}" for key, value in agent_config.items())
    script = f"#!/bin/bash\ncat <<'EOF' >> /etc/ecs/ecs.config\n{lines}\nEOF\n"
    return base64.b64encode(script.encode()).decode()


class Cluster(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    instance_role: aws.iam.Role
    instance_role_attachments: list[aws.iam.RolePolicyAttachment]
    instance_profile: aws.iam.InstanceProfile
    launch_template: aws.ec2.LaunchTemplate
    auto_scaling_group: aws.autoscaling.Group
    capacity_provider: aws.ecs.CapacityProvider
    capacity_providers: aws.ecs.ClusterCapacityProviders

    def __init__(self, name: str, settings: Settings, private_subnet_ids: pulumi.Input[Sequence[str]],
                 instance_security_group_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Cluster", name, None, opts)
        cap = settings.capacity
        child = pulumi.ResourceOptions(parent=self)

        self.cluster = aws.ecs.Cluster(
            f"{name}",
            settings=[aws.ecs.ClusterSettingArgs(
                name="containerInsights", value="enabled" if cap.container_insights else "disabled")],
            opts=child,
        )

        self.instance_role, self.instance_role_attachments = service_role(
            settings.name_prefix, "instance", "ec2.amazonaws.com", INSTANCE_POLICIES, self,
            "ECS container instances: register with the cluster, pull images, SSM sessions (no SSH)")
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-instance", role=self.instance_role.name,
                                                        opts=child)

        # Read at deploy time, so every `pulumi up` moves new instances to the latest patched ECS AMI.
        ami_id = aws.ssm.get_parameter_output(name=AMI_PARAMETER, opts=pulumi.InvokeOutputOptions(parent=self)).value
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-instances",
            description=f"ECS container instances of {settings.name_prefix}",
            image_id=ami_id,
            instance_type=cap.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=self.instance_profile.arn),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                instance_metadata_tags="disabled"),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=cap.root_volume_gib, volume_type="gp3", encrypted="true",
                    delete_on_termination="true"),
            )],
            network_interfaces=[aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                associate_public_ip_address="false", delete_on_termination="true",
                security_groups=[instance_security_group_id])],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            user_data=self.cluster.name.apply(
                lambda cluster_name: user_data(ecs_agent_config(cluster_name, settings.task.stop_timeout_seconds))),
            update_default_version=True,
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume",
                                                                          tags=settings.tags)],
            opts=child,
        )

        instance_tags = {**settings.tags, "Name": f"{settings.name_prefix}-ecs"}
        self.auto_scaling_group = aws.autoscaling.Group(
            f"{name}-instances",
            vpc_zone_identifiers=private_subnet_ids,
            min_size=cap.min_instances,
            max_size=cap.max_instances,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)),
            protect_from_scale_in=True,
            force_delete=True,
            health_check_type="EC2",
            tags=[aws.autoscaling.GroupTagArgs(key="AmazonECSManaged", value="true", propagate_at_launch=True)]
            + [aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
               for key, value in instance_tags.items()],
            # ECS managed scaling owns the desired capacity.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]),
        )

        self.capacity_provider = aws.ecs.CapacityProvider(
            capacity_provider_name(settings.name_prefix),
            auto_scaling_group_provider=aws.ecs.CapacityProviderAutoScalingGroupProviderArgs(
                auto_scaling_group_arn=self.auto_scaling_group.arn,
                managed_termination_protection="ENABLED",
                managed_draining="ENABLED",
                managed_scaling=aws.ecs.CapacityProviderAutoScalingGroupProviderManagedScalingArgs(
                    status="ENABLED",
                    target_capacity=cap.target_capacity_percent,
                    minimum_scaling_step_size=cap.min_scaling_step,
                    maximum_scaling_step_size=cap.max_scaling_step,
                    instance_warmup_period=cap.instance_warmup_seconds,
                ),
            ),
            opts=child,
        )
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity-providers",
            cluster_name=self.cluster.name,
            capacity_providers=[self.capacity_provider.name],
            default_capacity_provider_strategies=[aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                capacity_provider=self.capacity_provider.name, weight=1, base=0)],
            opts=child,
        )

        self.register_outputs({
            "clusterName": self.cluster.name,
            "autoScalingGroupName": self.auto_scaling_group.name,
            "capacityProviderName": self.capacity_provider.name,
        })
