"""Service: the ECS service that keeps the model server running behind the target group.

It places tasks only through the capacity-provider strategy (AWS refuses a launch type beside one) and
depends on everything whose absence would break it: the cluster association of the capacity provider,
the listeners (a target group without a load balancer cannot be attached) and the IAM role attachments of
the instances, the execution and the task (deleted first, they would leave the service hanging in DRAINING on
destroy). Changing the capacity-provider strategy needs a new deployment, so every update forces one.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.release import HOOK_STAGE, ReleaseTraffic
from infra.task import CONTAINER_NAME


@dataclass(frozen=True)
class DeploymentArgs:
    """ECS's deployment configuration; BLUE_GREEN, LINEAR and CANARY need a `ReleaseTraffic`."""

    strategy: str  # ROLLING only while the service enters or leaves the shifting strategies (settings README)
    bake_minutes: int
    canary_percent: int
    canary_bake_minutes: int
    linear_step_percent: int
    linear_step_bake_minutes: int


@dataclass(frozen=True)
class ServiceArgs:
    desired_count: int
    deployment_minimum_healthy_percent: int
    deployment_maximum_percent: int
    health_check_grace_period_seconds: int
    container_port: int
    # CloudWatch alarms that fail and roll back a deployment (infra/observability.py); () for none
    deployment_alarm_names: tuple[str, ...]
    deployment: DeploymentArgs | None = None  # None: ROLLING as ever, no deployment configuration sent


def deployment_configuration(deployment: DeploymentArgs,
                             release: ReleaseTraffic | None) -> aws.ecs.ServiceDeploymentConfigurationArgs:
    if deployment.strategy == "ROLLING":  # explicit, so a service leaving BLUE_GREEN/LINEAR/CANARY is switched
        return aws.ecs.ServiceDeploymentConfigurationArgs(strategy="ROLLING")
    hooks = [aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs(
        lifecycle_stages=[HOOK_STAGE], hook_target_arn=release.hook_function_arn, role_arn=release.hook_role_arn,
    )] if release and release.hook_function_arn else None
    # The provider takes the minutes as text and the percentages as numbers.
    return aws.ecs.ServiceDeploymentConfigurationArgs(
        strategy=deployment.strategy,
        bake_time_in_minutes=str(deployment.bake_minutes),
        canary_configuration=aws.ecs.ServiceDeploymentConfigurationCanaryConfigurationArgs(
            canary_percent=float(deployment.canary_percent),
            canary_bake_time_in_minutes=str(deployment.canary_bake_minutes),
        ) if deployment.strategy == "CANARY" else None,
        linear_configuration=aws.ecs.ServiceDeploymentConfigurationLinearConfigurationArgs(
            step_percent=float(deployment.linear_step_percent),
            step_bake_time_in_minutes=str(deployment.linear_step_bake_minutes),
        ) if deployment.strategy == "LINEAR" else None,
        lifecycle_hooks=hooks,
    )


class Service(pulumi.ComponentResource):
    service: aws.ecs.Service

    def __init__(self, name: str, args: ServiceArgs, *, cluster_arn: pulumi.Input[str],
                 strategy: Sequence[tuple[pulumi.Input[str], int, int]], task_definition_arn: pulumi.Input[str],
                 target_group_arn: pulumi.Input[str], private_subnet_ids: pulumi.Input[Sequence[str]],
                 task_security_group_id: pulumi.Input[str], depends_on: Sequence[pulumi.Resource],
                 release: ReleaseTraffic | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Service", name, None, opts)
        svc = args

        self.service = aws.ecs.Service(
            f"{name}",
            cluster=cluster_arn,
            task_definition=task_definition_arn,
            desired_count=svc.desired_count,
            capacity_provider_strategies=[aws.ecs.ServiceCapacityProviderStrategyArgs(
                capacity_provider=provider, weight=weight, base=base) for provider, weight, base in strategy],
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            # The breaker catches tasks that fail to start or to pass health checks; these alarms catch a release
            # that looks healthy but serves errors or slowly, during the deployment and its bake time.
            alarms=aws.ecs.ServiceAlarmsArgs(alarm_names=list(svc.deployment_alarm_names), enable=True,
                                             rollback=True) if svc.deployment_alarm_names else None,
            deployment_minimum_healthy_percent=svc.deployment_minimum_healthy_percent,
            deployment_maximum_percent=svc.deployment_maximum_percent,
            health_check_grace_period_seconds=svc.health_check_grace_period_seconds,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=private_subnet_ids, security_groups=[task_security_group_id], assign_public_ip=False),
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=target_group_arn, container_name=CONTAINER_NAME,
                container_port=svc.container_port,
                advanced_configuration=aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs(
                    alternate_target_group_arn=release.alternate_target_group_arn,
                    production_listener_rule=release.production_listener_rule_arn,
                    test_listener_rule=release.test_listener_rule_arn,
                    role_arn=release.role_arn,
                ) if release else None)],
            # Releases (infra/release.py): the alarms above roll back every strategy, during canary and bake time too.
            deployment_configuration=deployment_configuration(svc.deployment, release) if svc.deployment else None,
            ordered_placement_strategies=[
                aws.ecs.ServiceOrderedPlacementStrategyArgs(type="spread", field="attribute:ecs.availability-zone"),
                aws.ecs.ServiceOrderedPlacementStrategyArgs(type="binpack", field="memory"),
            ],
            # AWS rebalances only services that may run more than 100% of their tasks during a deployment.
            availability_zone_rebalancing="ENABLED" if svc.deployment_maximum_percent > 100 else "DISABLED",
            # AWS refuses a strategy change (new weights, Spot on or off, a replaced provider) without one.
            force_new_deployment=True,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            # Teardown: delete without first waiting for the service to scale to zero.
            force_delete=True,
            # Application Auto Scaling owns the running count after creation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on), ignore_changes=["desiredCount"]),
        )
        self.register_outputs({"serviceName": self.service.name})
