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

from infra.task import CONTAINER_NAME


@dataclass(frozen=True)
class ServiceArgs:
    desired_count: int
    deployment_minimum_healthy_percent: int
    deployment_maximum_percent: int
    health_check_grace_period_seconds: int
    container_port: int
    # CloudWatch alarms that fail and roll back a deployment (infra/observability.py); () for none
    deployment_alarm_names: tuple[str, ...]


class Service(pulumi.ComponentResource):
    service: aws.ecs.Service

    def __init__(self, name: str, args: ServiceArgs, *, cluster_arn: pulumi.Input[str],
                 strategy: Sequence[tuple[pulumi.Input[str], int, int]], task_definition_arn: pulumi.Input[str],
                 target_group_arn: pulumi.Input[str], private_subnet_ids: pulumi.Input[Sequence[str]],
                 task_security_group_id: pulumi.Input[str], depends_on: Sequence[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
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
                container_port=svc.container_port)],
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
