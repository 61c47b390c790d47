"""Observability: the stack's alarms, their notification topic, and one dashboard.

Every alarm is named `<name_prefix>-<what>`, so tools (tools/verify_deployment.py) find all of a stack's alarms
by prefix. The error-rate and latency alarms also guard deployments: the service names them as its deployment
alarms (infra/service.py), and ECS rolls back a release that trips one of them. Rates are metric math over
one-minute sums with a floor of requests, so a quiet service neither flaps nor alarms on a single error.
The component is built in two steps around the service: the deployment alarms must exist before the service
that names them deploys, and the alarms on the service's own metrics need its name (`watch_service`).
Notifications go to an SNS topic encrypted with a customer-managed KMS key: the AWS-managed `alias/aws/sns`
key does not let CloudWatch use it, and alarms could then not publish.
"""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import metrics

ALB = "AWS/ApplicationELB"
ECS = "AWS/ECS"
INSIGHTS = "ECS/ContainerInsights"
MANAGED_SCALING = "AWS/ECS/ManagedScaling"
TARGET_GROUP_ROLES = ("primary", "alternate")
AUTO_SCALING = "AWS/AutoScaling"
MINUTE = 60

# The alarms ECS watches during a deployment (and its bake time) and rolls back on.
DEPLOYMENT_ALARMS = ("target-5xx-rate", "elb-5xx-rate", "latency-p99")


def alarm_name(name_prefix: str, what: str) -> str:
    return f"{name_prefix}-{what}"


def deployment_alarm_names(name_prefix: str) -> tuple[str, ...]:
    return tuple(alarm_name(name_prefix, what) for what in DEPLOYMENT_ALARMS)


def dashboard_name(name_prefix: str) -> str:
    # Dashboard names allow letters, digits, - and _ only; stack names may also hold dots.
    return re.sub(r"[^A-Za-z0-9_-]", "-", name_prefix)


@dataclass(frozen=True)
class AlarmThresholds:
    error_rate_percent: int  # target and ELB 5xx, as a share of requests
    min_requests_per_minute: int  # below this many requests a minute, the rate and latency alarms stay OK
    latency_objective_ms: int  # p99 of TargetResponseTime
    cpu_percent: int
    memory_percent: int


@dataclass(frozen=True)
class ObservabilityArgs:
    name_prefix: str
    thresholds: AlarmThresholds
    min_tasks: int
    container_insights: bool  # False: no running-tasks alarm or widget (they read Container Insights)
    notify: bool  # an encrypted SNS topic as every alarm's action; False: alarms without actions
    alarm_emails: tuple[str, ...]  # subscribed to the topic (needs notify)
    kms_deletion_window_days: int
    metrics_service_name: str  # the ServiceName dimension of the server's metrics
    capacity_groups: tuple[str, ...]  # onDemand, spot: one reservation alarm per capacity provider


def topic_key_policy(partition: str, account_id: str) -> str:
    """Account admins manage the key; CloudWatch may use it to publish alarm notifications to the topic."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministration", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"},
        ],
    })


def topic_policy(topic_arn: str, partition: str, account_id: str, region: str, name_prefix: str) -> str:
    """The account manages the topic; CloudWatch publishes to it only for this stack's alarms."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministration", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
             "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission",
                        "sns:RemovePermission", "sns:DeleteTopic", "sns:Subscribe", "sns:ListSubscriptionsByTopic",
                        "sns:Publish"],
             "Resource": topic_arn},
            {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish", "Resource": topic_arn,
             "Condition": {
                 "ArnLike": {
                     "aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:{name_prefix}-*"},
                 "StringEquals": {"aws:SourceAccount": account_id}}},
        ],
    })


def rate_expression(errors: str, requests: str, min_requests: int, scale: str = "100 * ") -> str:
    """Errors per request (percent) once the minute saw `min_requests`, else 0; no error datapoint is 0."""
    return f"IF({requests} >= {min_requests}, {scale}FILL({errors}, 0) / {requests}, 0)"


@dataclass(frozen=True)
class DashboardTargets:
    """What the dashboard shows: this stack's resources only."""

    region: str
    cluster_name: str
    service_name: str
    load_balancer: str  # ARN suffix
    target_groups: Sequence[str]  # ARN suffixes: the primary, and the alternate of a blue/green-style release
    capacity_providers: Mapping[str, str]  # group -> capacity provider name
    auto_scaling_groups: Mapping[str, str]  # group -> Auto Scaling group name
    alarm_arns: Sequence[str]
    metrics_service_name: str
    container_insights: bool


def dashboard_body(t: DashboardTargets) -> str:
    """The dashboard: traffic and latency (ALB and model side by side), errors, targets, tasks, capacity."""
    # Traffic by load balancer: it counts every target group the service may serve from (a release alternates
    # them); target health is per target group.
    lb = ["LoadBalancer", t.load_balancer]
    tgs = [["LoadBalancer", t.load_balancer, "TargetGroup", tg] for tg in t.target_groups]
    svc = ["ClusterName", t.cluster_name, "ServiceName", t.service_name]
    model = [metrics.DIMENSION, t.metrics_service_name]

    def graph(title: str, rows: list[list[Any]], stat: str = "Sum", **extra: Any) -> dict[str, Any]:
        return {"type": "metric", "width": 12, "height": 6, "properties": {
            "title": title, "region": t.region, "view": "timeSeries", "stat": stat, "period": MINUTE,
            "metrics": rows, **extra}}

    def stat(label: str, statistic: str) -> dict[str, str]:
        return {"stat": statistic, "label": label}

    widgets = [
        graph("Requests", [[ALB, "RequestCount", *lb, stat("requests", "Sum")]]),
        graph("Errors (4xx/5xx)", [
            [ALB, "HTTPCode_Target_5XX_Count", *lb, stat("target 5xx", "Sum")],
            [ALB, "HTTPCode_ELB_5XX_Count", *lb, stat("ELB 5xx", "Sum")],
            [ALB, "HTTPCode_Target_4XX_Count", *lb, stat("target 4xx", "Sum")],
            [ALB, "HTTPCode_ELB_4XX_Count", *lb, stat("ELB 4xx", "Sum")]]),
        graph("ALB target response time (seconds)", [
            [ALB, "TargetResponseTime", *lb, stat(p, p)] for p in ("p50", "p90", "p99")]),
        graph("Model inference time (milliseconds, from the server)", [
            [metrics.NAMESPACE, metrics.INFERENCE_LATENCY, *model, stat(p, p)] for p in ("p50", "p90", "p99")]),
        graph("Targets", [row for index, tg in enumerate(tgs) for row in (
            [ALB, "HealthyHostCount", *tg, stat(f"healthy ({TARGET_GROUP_ROLES[index]})", "Minimum")],
            [ALB, "UnHealthyHostCount", *tg, stat(f"unhealthy ({TARGET_GROUP_ROLES[index]})", "Maximum")])]),
        graph("Service CPU and memory (percent of the task's reservation)", [
            [ECS, "CPUUtilization", *svc, stat("CPU average", "Average")],
            [ECS, "CPUUtilization", *svc, stat("CPU maximum", "Maximum")],
            [ECS, "MemoryUtilization", *svc, stat("memory average", "Average")],
            [ECS, "MemoryUtilization", *svc, stat("memory maximum", "Maximum")]]),
        graph("Batches and requests in flight per task (from the server)", [
            [metrics.NAMESPACE, metrics.BATCH_SIZE, *model, stat("batch size average", "Average")],
            [metrics.NAMESPACE, metrics.BATCH_SIZE, *model, stat("batch size maximum", "Maximum")],
            [metrics.NAMESPACE, metrics.IN_FLIGHT, *model, stat("in flight per task, average", "Average")],
            [metrics.NAMESPACE, metrics.IN_FLIGHT, *model, stat("in flight per task, maximum", "Maximum")]]),
        graph("Instances per capacity group", [
            [AUTO_SCALING, name, "AutoScalingGroupName", group_name, stat(f"{group} {label}", "Maximum")]
            for group, group_name in t.auto_scaling_groups.items()
            for name, label in (("GroupInServiceInstances", "in service"), ("GroupDesiredCapacity", "desired"))]),
        graph("Capacity provider reservation (percent; above 100: tasks wait for instances)", [
            [MANAGED_SCALING, "CapacityProviderReservation", "ClusterName", t.cluster_name, "CapacityProviderName",
             provider, stat(group, "Maximum")] for group, provider in t.capacity_providers.items()]),
    ]
    if t.container_insights:
        widgets.insert(5, graph("Tasks: running, desired, pending (Container Insights)", [
            [INSIGHTS, name, *svc, stat(label, "Average")] for name, label in (
                ("RunningTaskCount", "running"), ("DesiredTaskCount", "desired"), ("PendingTaskCount", "pending"))]))
    widgets.append({"type": "alarm", "width": 24, "height": 4, "properties": {
        "title": "Alarms", "alarms": sorted(t.alarm_arns), "sortBy": "stateUpdatedTimestamp"}})
    return json.dumps({"widgets": widgets}, sort_keys=True)


def dashboard_url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


class Observability(pulumi.ComponentResource):
    key: aws.kms.Key | None
    topic: aws.sns.Topic | None
    topic_policy: aws.sns.TopicPolicy | None
    subscriptions: dict[str, aws.sns.TopicSubscription]  # by email address
    alarms: dict[str, aws.cloudwatch.MetricAlarm]  # by what (the name without the prefix)
    deployment_alarms: list[aws.cloudwatch.MetricAlarm]  # the service names these (infra/service.py)
    dashboard: aws.cloudwatch.Dashboard  # from watch_service on
    dashboard_url: pulumi.Output[str]  # from watch_service on
    alarm_names: list[pulumi.Output[str]]  # from watch_service on

    def __init__(self, name: str, args: ObservabilityArgs, *, cluster_name: pulumi.Input[str],
                 load_balancer_arn_suffix: pulumi.Input[str],
                 target_group_arn_suffixes: Sequence[pulumi.Input[str]],
                 capacity_provider_names: Mapping[str, pulumi.Input[str]],
                 auto_scaling_group_names: Mapping[str, pulumi.Input[str]],
                 opts: pulumi.ResourceOptions | None = None):
        """First step, before the service: the topic and every alarm that does not watch the service itself,
        the deployment alarms among them, so they exist before the service that names them deploys.
        `watch_service` completes the component once the service exists."""
        super().__init__("model-serving:infra:Observability", name, None, opts)
        self.name, self.args = name, args
        # What watch_service needs again: the dashboard shows all of it.
        self._cluster_name, self._lb, self._tgs = cluster_name, load_balancer_arn_suffix, target_group_arn_suffixes
        self._provider_names, self._group_names = capacity_provider_names, auto_scaling_group_names
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        self._region = region = aws.get_region_output(opts=invoke).region

        self.key, self.topic, self.topic_policy, self.subscriptions = None, None, None, {}
        if args.notify:
            self.key = aws.kms.Key(
                f"{name}-alarms",
                description=f"Encrypts the alarm notifications of {args.name_prefix}",
                enable_key_rotation=True,
                deletion_window_in_days=args.kms_deletion_window_days,
                policy=pulumi.Output.all(partition, account_id).apply(lambda v: topic_key_policy(*v)),
                opts=child,
            )
            self.topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=self.key.arn, opts=child)
            self.topic_policy = aws.sns.TopicPolicy(
                f"{name}-alarms",
                arn=self.topic.arn,
                policy=pulumi.Output.all(self.topic.arn, partition, account_id, region).apply(
                    lambda v: topic_policy(v[0], v[1], v[2], v[3], args.name_prefix)),
                opts=child,
            )
            self.subscriptions = {
                email: aws.sns.TopicSubscription(f"{name}-alarms-{email}", topic=self.topic.arn, protocol="email",
                                                 endpoint=email, opts=child)
                for email in args.alarm_emails}

        limits = args.thresholds
        # Requests, target errors and latency by load balancer: a blue/green, linear or canary release moves
        # production to the other target group, and the load balancer's figures follow it (they are the target
        # group's own while there is one).
        lb_dims = {"LoadBalancer": load_balancer_arn_suffix}
        unhealthy = {f"unhealthy{index}": (ALB, "UnHealthyHostCount",
                                           {"LoadBalancer": load_balancer_arn_suffix, "TargetGroup": tg}, "Maximum")
                     for index, tg in enumerate(target_group_arn_suffixes)}
        floor = limits.min_requests_per_minute
        self.alarms = {}
        self._math_alarm(
            "target-5xx-rate",
            f"The model server answered 5xx to more than {limits.error_rate_percent}% of requests for 3 minutes. "
            "Rolls back a deployment in progress. Otherwise read the server's log group for the stack traces; a "
            "recent config change or a dependency of the model is the usual cause.",
            {"errors": (ALB, "HTTPCode_Target_5XX_Count", lb_dims, "Sum"),
             "requests": (ALB, "RequestCount", lb_dims, "Sum")},
            rate_expression("errors", "requests", floor), limits.error_rate_percent, evaluation=3)
        self._math_alarm(
            "elb-5xx-rate",
            f"The load balancer itself answered 5xx (502/503/504) to more than {limits.error_rate_percent}% of "
            "requests for 3 minutes: no healthy target (503), targets closing connections or crashing (502), or "
            "requests slower than albIdleTimeoutSeconds (504). Rolls back a deployment in progress. Check the "
            "healthy targets and the stopped tasks' reasons (aws ecs describe-tasks).",
            {"errors": (ALB, "HTTPCode_ELB_5XX_Count", lb_dims, "Sum"),
             "requests": (ALB, "RequestCount", lb_dims, "Sum")},
            rate_expression("errors", "requests", floor), limits.error_rate_percent, evaluation=3)
        self._math_alarm(
            "latency-p99",
            f"p99 of the target response time exceeded {limits.latency_objective_ms} ms in 3 of 5 minutes. Rolls "
            "back a deployment in progress. Otherwise compare with the dashboard's model inference time: if the "
            "model is slow, scale out (maxTaskCount) or batch; if only the ALB time is high, requests queue for "
            "a busy task.",
            {"latency": (ALB, "TargetResponseTime", lb_dims, "p99"),
             "requests": (ALB, "RequestCount", lb_dims, "Sum")},
            f"IF(requests >= {floor}, latency, 0)", limits.latency_objective_ms / 1000, evaluation=5, to_alarm=3)
        self._math_alarm(
            "unhealthy-targets",
            "At least one target failed the ALB health check for 5 minutes. Find the task (target IP) and read "
            "its log; a task that keeps failing is replaced by ECS, one that passes the container check but not "
            "the ALB's usually has a wrong healthCheckPath or port.",
            unhealthy, " + ".join(f"FILL({query}, 0)" for query in unhealthy), 0, evaluation=5)
        for group in args.capacity_groups:
            self._alarm(
                f"capacity-waiting-{group}",
                f"The {group} capacity provider's reservation stayed above 100% for 15 minutes: tasks wait for "
                "instances that do not come. The group is at its maximum size (raise it), the instance type "
                "is short in the region (Spot: add types), or instances fail to join the cluster (check the "
                "group's activity history).",
                metric_name="CapacityProviderReservation", namespace=MANAGED_SCALING,
                dimensions={"ClusterName": cluster_name, "CapacityProviderName": capacity_provider_names[group]},
                statistic="Minimum", period=MINUTE, evaluation_periods=15, threshold=100,
                comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching")

        self.deployment_alarms = [self.alarms[what] for what in DEPLOYMENT_ALARMS]

    def watch_service(self, service_name: pulumi.Input[str]) -> None:
        """Second step, once the service exists: the alarms on its own metrics, the dashboard, the outputs."""
        args, limits = self.args, self.args.thresholds
        svc_dims = {"ClusterName": self._cluster_name, "ServiceName": service_name}
        if not args.container_insights:
            # The policy pack refuses this in prod (CKV_AWS_65); a dev-like stack just sees less.
            pulumi.log.warn("containerInsights is false: no running-tasks alarm and no task-count widget (both read "
                            "Container Insights' RunningTaskCount); the target alarms still see missing tasks.",
                            resource=self)
        else:
            self._math_alarm(
                "running-tasks-low",
                f"Fewer than {args.min_tasks} tasks (minTaskCount) ran for 5 minutes while the service wanted at "
                "least that many. Tasks fail to start or are stopped: see the service events and the stopped "
                "tasks' reasons (aws ecs describe-services / describe-tasks), and the capacity alarms.",
                {"running": (INSIGHTS, "RunningTaskCount", svc_dims, "Minimum"),
                 "desired": (INSIGHTS, "DesiredTaskCount", svc_dims, "Maximum")},
                # The schedule may take the service to zero on purpose: only a shortfall below what is wanted counts.
                f"IF(desired >= {args.min_tasks}, {args.min_tasks} - running, 0)", 0, evaluation=5)
        for what, metric, percent, resource, size_key in (
                ("cpu-high", "CPUUtilization", limits.cpu_percent, "CPU", "taskCpu"),
                ("memory-high", "MemoryUtilization", limits.memory_percent, "memory", "taskMemoryMiB")):
            self._alarm(
                what,
                f"The service's average {resource} stayed above {percent}% of the tasks' reservation for 15 "
                "minutes: autoscaling is at maxTaskCount or cannot place tasks. Raise maxTaskCount (and the "
                f"instance maximum), or give tasks more {resource} ({size_key}).",
                metric_name=metric, namespace=ECS, dimensions=svc_dims, statistic="Average", period=5 * MINUTE,
                evaluation_periods=3, threshold=percent, comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching")
        self.alarm_names = [alarm.name for alarm in self.alarms.values()]
        providers, groups = self._provider_names, self._group_names
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{self.name}",
            dashboard_name=dashboard_name(args.name_prefix),
            dashboard_body=pulumi.Output.all(
                self._region, self._cluster_name, service_name, self._lb, pulumi.Output.all(*self._tgs),
                pulumi.Output.all(*providers.values()), pulumi.Output.all(*groups.values()),
                pulumi.Output.all(*(alarm.arn for alarm in self.alarms.values())),
            ).apply(lambda v: dashboard_body(DashboardTargets(
                region=v[0], cluster_name=v[1], service_name=v[2], load_balancer=v[3], target_groups=v[4],
                capacity_providers=dict(zip(providers, v[5], strict=True)),
                auto_scaling_groups=dict(zip(groups, v[6], strict=True)),
                alarm_arns=v[7], metrics_service_name=args.metrics_service_name,
                container_insights=args.container_insights))),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_url = pulumi.Output.all(self._region, self.dashboard.dashboard_name).apply(
            lambda v: dashboard_url(*v))
        self.register_outputs({"dashboardUrl": self.dashboard_url, "alarmNames": self.alarm_names})

    def _alarm(self, what: str, description: str, **kwargs: Any) -> aws.cloudwatch.MetricAlarm:
        actions = [self.topic.arn] if self.topic else []
        alarm = aws.cloudwatch.MetricAlarm(
            f"{self.name}-{what}",
            name=alarm_name(self.args.name_prefix, what),
            alarm_description=description,
            actions_enabled=True,
            alarm_actions=actions,
            ok_actions=actions,  # say when it is over, too
            opts=pulumi.ResourceOptions(parent=self),
            **kwargs,
        )
        self.alarms[what] = alarm
        return alarm

    def _math_alarm(self, what: str, description: str,
                    inputs: Mapping[str, tuple[str, str, Mapping[str, pulumi.Input[str]], str]], expression: str,
                    threshold: float, evaluation: int, to_alarm: int | None = None) -> aws.cloudwatch.MetricAlarm:
        """An alarm on `expression` over one-minute `inputs` (id -> namespace, metric, dimensions, statistic)."""
        queries = [aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=query_id, return_data=False, metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=namespace, metric_name=metric, dimensions=dict(dimensions), stat=statistic,
                period=MINUTE)) for query_id, (namespace, metric, dimensions, statistic) in inputs.items()]
        queries.append(aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="alarm", expression=expression, label=what, return_data=True))
        # No data means no traffic (or no tasks on purpose): nothing to judge, so not breaching.
        return self._alarm(what, description, metric_queries=queries, threshold=threshold,
                           comparison_operator="GreaterThanThreshold", evaluation_periods=evaluation,
                           datapoints_to_alarm=to_alarm or evaluation, treat_missing_data="notBreaching")
