"""Service autoscaling: target tracking on ALB requests per task (the signal for request serving) and CPU.

Scale-out is quick and scale-in slow, so a burst does not make the service flap. Optional schedules take
the service to zero tasks (nights, weekends) and back; the capacity providers then scale the instance
groups to zero and back through managed scaling.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import metrics


@dataclass(frozen=True)
class AutoscalingArgs:
    min_tasks: int
    max_tasks: int
    requests_per_target_per_minute: int
    cpu_target_percent: int
    scale_out_cooldown_seconds: int
    scale_in_cooldown_seconds: int
    scale_to_zero_cron: str  # "": no schedules (validation sets both crons or neither)
    scale_up_cron: str
    schedule_timezone: str
    in_flight_requests_per_task: int  # 0: no policy on the server's InFlightRequests
    metrics_service_name: str  # the ServiceName dimension of the server's metrics

    @property
    def scheduled(self) -> bool:
        return bool(self.scale_to_zero_cron)


def request_count_label(load_balancer_arn_suffix: str, target_group_arn_suffix: str) -> str:
    """ALBRequestCountPerTarget's resource label: `app/<lb>/<id>/targetgroup/<tg>/<id>`."""
    return f"{load_balancer_arn_suffix}/{target_group_arn_suffix}"


_Custom = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs
_Query = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs
_Stat = aws.appautoscaling.\
    PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatArgs
_Metric = aws.appautoscaling.\
    PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricArgs
_Dimension = aws.appautoscaling.\
    PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArgs


def requests_per_healthy_target(load_balancer_arn_suffix: pulumi.Input[str],
                                target_group_arn_suffixes: Sequence[pulumi.Input[str]]) -> _Custom:
    """The load balancer's requests per minute divided by the healthy targets of every target group: what
    ALBRequestCountPerTarget measures for one group, for a service whose production moves between two."""
    def alb(query_id: str, name: str, stat: str, dimensions: dict[str, pulumi.Input[str]]) -> _Query:
        return _Query(id=query_id, return_data=False, metric_stat=_Stat(stat=stat, metric=_Metric(
            namespace="AWS/ApplicationELB", metric_name=name,
            dimensions=[_Dimension(name=key, value=value) for key, value in dimensions.items()])))

    healthy = [alb(f"healthy{index}", "HealthyHostCount", "Average",
                   {"LoadBalancer": load_balancer_arn_suffix, "TargetGroup": target_group})
               for index, target_group in enumerate(target_group_arn_suffixes)]
    targets = " + ".join(f"FILL({query.id}, 0)" for query in healthy)
    return _Custom(metrics=[
        alb("requests", "RequestCount", "Sum", {"LoadBalancer": load_balancer_arn_suffix}), *healthy,
        # No healthy target: no traffic to spread, nothing to scale on (the other policies still apply).
        _Query(id="perTarget", expression=f"IF(({targets}) > 0, FILL(requests, 0) / ({targets}), 0)",
               label="requests per healthy target", return_data=True)])


class Autoscaling(pulumi.ComponentResource):
    target: aws.appautoscaling.Target
    request_count_policy: aws.appautoscaling.Policy
    cpu_policy: aws.appautoscaling.Policy
    in_flight_policy: aws.appautoscaling.Policy | None
    scheduled_actions: list[aws.appautoscaling.ScheduledAction]

    def __init__(self, name: str, args: AutoscalingArgs, *, cluster_name: pulumi.Input[str],
                 service_name: pulumi.Input[str], load_balancer_arn_suffix: pulumi.Input[str],
                 target_group_arn_suffix: pulumi.Input[str],
                 alternate_target_group_arn_suffix: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Autoscaling", name, None, opts)
        scaling = svc = args

        self.target = aws.appautoscaling.Target(
            f"{name}-tasks",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster_name, "/", service_name),
            min_capacity=svc.min_tasks,
            max_capacity=svc.max_tasks,
            # With schedules, the scheduled actions own the bounds; the morning action restores these.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["minCapacity", "maxCapacity"]
                                        if scaling.scheduled else None),
        )

        # Application Auto Scaling answers concurrent writes to one scalable target with
        # ConcurrentUpdateException (hashicorp/terraform-provider-aws#17915, open): each policy and scheduled
        # action waits for the one before it.
        previous: list[pulumi.Resource] = [self.target]

        def after_previous(resource: aws.appautoscaling.Policy | aws.appautoscaling.ScheduledAction) -> None:
            previous[:] = [resource]

        def tracking(suffix: str, metric: aws.appautoscaling.
                     PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs | None,
                     target_value: int, custom: aws.appautoscaling.
                     PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs | None = None,
                     ) -> aws.appautoscaling.Policy:
            policy = aws.appautoscaling.Policy(
                f"{name}-{suffix}",
                policy_type="TargetTrackingScaling",
                service_namespace=self.target.service_namespace,
                scalable_dimension=self.target.scalable_dimension,
                resource_id=self.target.resource_id,
                target_tracking_scaling_policy_configuration=aws.appautoscaling.
                PolicyTargetTrackingScalingPolicyConfigurationArgs(
                    predefined_metric_specification=metric,
                    customized_metric_specification=custom,
                    target_value=target_value,
                    scale_out_cooldown=scaling.scale_out_cooldown_seconds,
                    scale_in_cooldown=scaling.scale_in_cooldown_seconds,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(previous)),
            )
            after_previous(policy)
            return policy

        metric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs
        if alternate_target_group_arn_suffix is None:
            self.request_count_policy = tracking("requests", metric(
                predefined_metric_type="ALBRequestCountPerTarget",
                resource_label=pulumi.Output.all(load_balancer_arn_suffix, target_group_arn_suffix).apply(
                    lambda suffixes: request_count_label(*suffixes))),
                scaling.requests_per_target_per_minute)
        else:
            # A blue/green, linear or canary release leaves production on either target group, and the
            # predefined metric names one: requests per healthy target over both, by metric math.
            self.request_count_policy = tracking("requests", None, scaling.requests_per_target_per_minute,
                                                 requests_per_healthy_target(
                                                     load_balancer_arn_suffix,
                                                     [target_group_arn_suffix, alternate_target_group_arn_suffix]))
        self.cpu_policy = tracking("cpu", metric(predefined_metric_type="ECSServiceAverageCPUUtilization"),
                                   scaling.cpu_target_percent)
        # Requests in flight per task track what a model task is busy with, whatever each request costs.
        self.in_flight_policy = tracking("in-flight", None, scaling.in_flight_requests_per_task, aws.appautoscaling.
                                         PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs(
            namespace=metrics.NAMESPACE, metric_name=metrics.IN_FLIGHT, statistic="Average",
            dimensions=[aws.appautoscaling.
                        PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationDimensionArgs(
                            name=metrics.DIMENSION, value=scaling.metrics_service_name)]),
        ) if scaling.in_flight_requests_per_task else None

        def scheduled(suffix: str, schedule: str, low: int, high: int) -> aws.appautoscaling.ScheduledAction:
            action = aws.appautoscaling.ScheduledAction(
                f"{name}-{suffix}",
                service_namespace=self.target.service_namespace,
                scalable_dimension=self.target.scalable_dimension,
                resource_id=self.target.resource_id,
                schedule=schedule,
                timezone=scaling.schedule_timezone,
                scalable_target_action=aws.appautoscaling.ScheduledActionScalableTargetActionArgs(
                    min_capacity=low, max_capacity=high),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(previous)),
            )
            after_previous(action)
            return action

        self.scheduled_actions = [
            scheduled(suffix, schedule, low, high)
            for suffix, schedule, low, high in (
                ("scale-to-zero", scaling.scale_to_zero_cron, 0, 0),
                ("scale-up", scaling.scale_up_cron, svc.min_tasks, svc.max_tasks),
            )
        ] if scaling.scheduled else []
        self.register_outputs({})
