"""Observability: every alarm's metric, statistic, threshold, window, dimensions and actions; the service's
deployment alarms; the encrypted alarm topic; a dashboard that shows this stack and nothing else; the
server's metrics and batching env; the optional in-flight scaling policy; the settings rules.

Besides the shared dev and prod runs, one dev run (`observed`) sets every observability setting at once.
"""

import functools
import json
import re
from typing import Any

import pytest

from infra.settings import SettingsError, parse_settings
from infra.settings.args import ERROR_RATE_PERCENT, LATENCY_OBJECTIVE_MS
from tests.harness import ACCOUNT_ID, PROJECT, PROJECT_DIR, REGION, StackRun, run_stack
from tests.test_settings import raw_config

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ALB = "AWS/ApplicationELB"
EMAILS = ["ops@example.com", "ml-oncall@example.org"]
OBSERVED = {
    "alarmEmails": EMAILS, "alarmErrorRatePercent": 3, "alarmMinRequestsPerMinute": 50, "latencyObjectiveMs": 500,
    "alarmCpuPercent": 80, "alarmMemoryPercent": 85, "inFlightRequestsPerTask": 8, "batchMaxSize": 16,
    "batchMaxWaitMs": 5, "containerInsights": False,
}


@functools.cache
def observed_run() -> StackRun:
    return run_stack("dev", overrides=OBSERVED)


@pytest.fixture
def observed() -> StackRun:
    """dev with mail subscriptions, its own thresholds, in-flight scaling, batching and no Container Insights."""
    return observed_run()


def stack(name: str, request: pytest.FixtureRequest) -> StackRun:
    return request.getfixturevalue(name)


def alarms(run: StackRun) -> dict[str, Any]:
    """The stack's alarms by what they watch (the name without `<project>-<stack>-`)."""
    prefix = run.outputs["alarmNamePrefix"]
    found = {}
    for alarm in run.of_type(ALARM):
        assert alarm["name"].startswith(prefix), alarm["name"]
        found[alarm["name"].removeprefix(prefix)] = alarm
    return found


def resources(run: StackRun) -> dict[str, str]:
    """The names and ARN suffixes that identify this stack's resources in CloudWatch dimensions."""
    lb = run.one("aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    return {"LoadBalancer": lb, "ClusterName": run.one("aws:ecs/cluster:Cluster").state["name"],
            "ServiceName": run.one("aws:ecs/service:Service").state["name"]}


def target_groups(run: StackRun) -> set[str]:
    """ARN suffixes of the primary target group and, with a shifting release strategy, the alternate one."""
    return {tg.state["arnSuffix"] for tg in run.of_type("aws:lb/targetGroup:TargetGroup")}


@pytest.mark.parametrize(("name", "groups"), [("dev", 1), ("prod", 2)])  # prod releases by canary
def test_unhealthy_targets_counts_every_target_group_production_may_be_on(
        name: str, groups: int, request: pytest.FixtureRequest) -> None:
    run = stack(name, request)
    alarm, lb = alarms(run)["unhealthy-targets"], resources(run)["LoadBalancer"]
    read = inputs_of(alarm)
    assert {(namespace, metric, stat, period) for namespace, metric, stat, _, period in read} == {
        (ALB, "UnHealthyHostCount", "Maximum", 60)}
    assert [d["LoadBalancer"] for *_, d, _ in read] == [lb] * groups
    assert {d["TargetGroup"] for *_, d, _ in read} == target_groups(run) and len(target_groups(run)) == groups
    ids = [q["id"] for q in alarm["metricQueries"] if "metric" in q]
    assert expression_of(alarm) == " + ".join(f"FILL({query}, 0)" for query in ids)
    assert (alarm["threshold"], alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (0, 5, 5)


def inputs_of(alarm: Any) -> list[tuple[str, str, str, dict[str, str], int]]:
    """(namespace, metric, statistic, dimensions, period) of each metric the alarm reads."""
    if "metricQueries" not in alarm.inputs:
        stat = alarm.get("statistic") or alarm["extendedStatistic"]
        return [(alarm["namespace"], alarm["metricName"], stat, alarm["dimensions"], int(alarm["period"]))]
    return [(q["metric"]["namespace"], q["metric"]["metricName"], q["metric"]["stat"], q["metric"]["dimensions"],
             int(q["metric"]["period"])) for q in alarm["metricQueries"] if "metric" in q]


def expression_of(alarm: Any) -> str:
    (returned,) = [q for q in alarm.get("metricQueries", []) if q.get("returnData")]
    assert all("metric" in q for q in alarm["metricQueries"] if q is not returned)
    return returned["expression"]


# what -> metrics read (namespace, metric, statistic, dimension keys), period, evaluation periods, datapoints
SPECS: dict[str, tuple[list[tuple[str, str, str, tuple[str, ...]]], int, int, int]] = {
    # By load balancer: the figures follow production to whichever target group a release leaves it on.
    "target-5xx-rate": ([(ALB, "HTTPCode_Target_5XX_Count", "Sum", ("LoadBalancer",)),
                         (ALB, "RequestCount", "Sum", ("LoadBalancer",))], 60, 3, 3),
    "elb-5xx-rate": ([(ALB, "HTTPCode_ELB_5XX_Count", "Sum", ("LoadBalancer",)),
                      (ALB, "RequestCount", "Sum", ("LoadBalancer",))], 60, 3, 3),
    "latency-p99": ([(ALB, "TargetResponseTime", "p99", ("LoadBalancer",)),
                     (ALB, "RequestCount", "Sum", ("LoadBalancer",))], 60, 5, 3),
    "running-tasks-low": ([("ECS/ContainerInsights", "RunningTaskCount", "Minimum", ("ClusterName", "ServiceName")),
                           ("ECS/ContainerInsights", "DesiredTaskCount", "Maximum", ("ClusterName", "ServiceName"))],
                          60, 5, 5),
    "cpu-high": ([("AWS/ECS", "CPUUtilization", "Average", ("ClusterName", "ServiceName"))], 300, 3, 3),
    "memory-high": ([("AWS/ECS", "MemoryUtilization", "Average", ("ClusterName", "ServiceName"))], 300, 3, 3),
}
# stack -> what -> threshold; dev and prod from the environment class's values (infra/settings/args.py)
THRESHOLDS = {
    "dev": {"target-5xx-rate": 5, "elb-5xx-rate": 5, "latency-p99": 2.0, "cpu-high": 90, "memory-high": 90},
    "prod": {"target-5xx-rate": 1, "elb-5xx-rate": 1, "latency-p99": 1.0, "cpu-high": 90, "memory-high": 90},
    "observed": {"target-5xx-rate": 3, "elb-5xx-rate": 3, "latency-p99": 0.5, "cpu-high": 80, "memory-high": 85},
}
MIN_REQUESTS = {"dev": 20, "prod": 20, "observed": 50}
MIN_TASKS = {"dev": 1, "prod": 2}


@pytest.mark.parametrize("name", ["dev", "prod", "observed"])
@pytest.mark.parametrize("what", list(SPECS))
def test_alarm_reads_its_metrics_of_this_stack_with_its_threshold_and_window(
        name: str, what: str, request: pytest.FixtureRequest) -> None:
    run = stack(name, request)
    found = alarms(run)
    if what == "running-tasks-low" and name == "observed":  # no Container Insights, no such alarm
        assert what not in found
        return
    alarm, (metrics, period, evaluation, datapoints) = found[what], SPECS[what]
    ours = resources(run)
    assert inputs_of(alarm) == [(namespace, metric, stat, {key: ours[key] for key in keys}, period)
                                for namespace, metric, stat, keys in metrics]
    assert (alarm["evaluationPeriods"], alarm.get("datapointsToAlarm", evaluation)) == (evaluation, datapoints)
    assert alarm["comparisonOperator"] == "GreaterThanThreshold"
    # No data is no traffic or no tasks on purpose (the dev schedule): never a reason to page.
    assert alarm["treatMissingData"] == "notBreaching"
    assert alarm["alarmDescription"].strip()
    if what in THRESHOLDS[name]:
        assert alarm["threshold"] == THRESHOLDS[name][what]


@pytest.mark.parametrize("name", ["dev", "prod", "observed"])
def test_rates_and_latency_count_only_minutes_with_enough_requests(name: str, request: pytest.FixtureRequest) -> None:
    found, floor = alarms(stack(name, request)), MIN_REQUESTS[name]
    for what in ("target-5xx-rate", "elb-5xx-rate"):
        # percent of requests; a minute without a 5xx datapoint is 0%, not missing
        assert expression_of(found[what]) == f"IF(requests >= {floor}, 100 * FILL(errors, 0) / requests, 0)"
    assert expression_of(found["latency-p99"]) == f"IF(requests >= {floor}, latency, 0)"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_running_tasks_alarm_is_a_shortfall_below_the_minimum_that_ignores_scaling_to_zero(
        name: str, request: pytest.FixtureRequest) -> None:
    alarm, low = alarms(stack(name, request))["running-tasks-low"], MIN_TASKS[name]
    assert expression_of(alarm) == f"IF(desired >= {low}, {low} - running, 0)"
    assert alarm["threshold"] == 0


def test_without_container_insights_the_stack_says_what_it_lacks(observed: StackRun) -> None:
    assert any("containerInsights is false: no running-tasks alarm" in w for w in observed.warnings)


def test_each_capacity_provider_has_a_reservation_alarm_above_100_percent(run: StackRun) -> None:
    found, cluster = alarms(run), resources(run)["ClusterName"]
    providers = {p.name: p.state["name"] for p in run.of_type("aws:ecs/capacityProvider:CapacityProvider")}
    waiting = {what: alarm for what, alarm in found.items() if what.startswith("capacity-waiting-")}
    assert sorted(waiting) == ["capacity-waiting-onDemand", "capacity-waiting-spot"]  # both stacks have Spot
    assert sorted(alarm["dimensions"]["CapacityProviderName"] for alarm in waiting.values()) == sorted(
        providers.values())
    for alarm in waiting.values():
        assert inputs_of(alarm)[0][:3] == ("AWS/ECS/ManagedScaling", "CapacityProviderReservation", "Minimum")
        assert alarm["dimensions"]["ClusterName"] == cluster
        # Tasks waiting push the reservation above 100 whatever capacityTargetPercent keeps it at.
        assert (alarm["threshold"], alarm["evaluationPeriods"], alarm["period"]) == (100, 15, 60)


def test_outputs_name_every_alarm_and_their_prefix(run: StackRun) -> None:
    names = sorted(alarm["name"] for alarm in run.of_type(ALARM))
    assert run.outputs["alarmNamePrefix"] == f"{PROJECT}-{run.stack}-"
    assert sorted(run.outputs["alarmNames"]) == names and len(set(names)) == len(names)


def test_service_rolls_back_on_the_error_rate_and_latency_alarms(run: StackRun) -> None:
    service, prefix = run.one("aws:ecs/service:Service"), run.outputs["alarmNamePrefix"]
    expected = [prefix + what for what in ("target-5xx-rate", "elb-5xx-rate", "latency-p99")]
    assert service["alarms"] == {"alarmNames": expected, "enable": True, "rollback": True}
    assert set(expected) <= set(run.outputs["alarmNames"])  # each named alarm exists
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}  # beside the breaker


@pytest.mark.parametrize(("name", "notified"), [("dev", False), ("prod", True), ("observed", True)])
def test_alarm_actions_per_environment_class(name: str, notified: bool, request: pytest.FixtureRequest) -> None:
    run = stack(name, request)
    topics = run.of_type("aws:sns/topic:Topic")
    assert len(topics) == int(notified)
    actions = [topics[0].state["arn"]] if notified else []
    for alarm in run.of_type(ALARM):
        assert (alarm["alarmActions"], alarm["okActions"], alarm["actionsEnabled"]) == (actions, actions, True)
    assert ("alarmTopicArn" in run.outputs) == notified


@pytest.mark.parametrize(("name", "deletion_window"), [("prod", 30), ("observed", 7)])
def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(name: str, deletion_window: int,
                                                               request: pytest.FixtureRequest) -> None:
    run = stack(name, request)
    topic, prefix = run.one("aws:sns/topic:Topic"), run.outputs["alarmNamePrefix"]
    (key,) = [k for k in run.of_type("aws:kms/key:Key") if k.name.endswith("-alarms")]
    assert topic["kmsMasterKeyId"] == key.state["arn"]  # a CMK: alias/aws/sns would shut CloudWatch out
    assert (key["enableKeyRotation"], key["deletionWindowInDays"]) == (True, deletion_window)
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    assert statements["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statements["CloudWatchAlarmsPublish"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    policy = run.one("aws:sns/topicPolicy:TopicPolicy")
    assert policy["arn"] == topic.state["arn"]
    publish = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}["CloudWatchAlarmsPublish"]
    # CloudWatch may publish for this stack's alarms only
    alarms_of_stack = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{prefix}*"
    assert publish["Condition"] == {"ArnLike": {"aws:SourceArn": alarms_of_stack},
                                    "StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_emails_subscribe_to_the_topic_keyed_by_address(observed: StackRun, dev: StackRun) -> None:
    topic = observed.one("aws:sns/topic:Topic")
    subscriptions = observed.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert {(s.name, s["endpoint"], s["protocol"], s["topic"]) for s in subscriptions} == {
        (f"model-serving-dev-alarms-{email}", email, "email", topic.state["arn"]) for email in EMAILS}
    assert dev.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def dashboard(run: StackRun) -> dict[str, Any]:
    return json.loads(run.one("aws:cloudwatch/dashboard:Dashboard")["dashboardBody"])


def metric_rows(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str], str]]:
    """(namespace, metric, dimensions, statistic) of every metric the dashboard graphs."""
    rows = []
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            *names, options = row
            namespace, metric, *pairs = names
            rows.append((namespace, metric, dict(zip(pairs[::2], pairs[1::2], strict=True)), options["stat"]))
    return rows


@pytest.mark.parametrize("name", ["dev", "prod", "observed"])
def test_dashboard_references_only_this_stacks_metrics_and_dimensions(name: str,
                                                                      request: pytest.FixtureRequest) -> None:
    run = stack(name, request)
    body, ours = dashboard(run), resources(run)
    groups = {g.state["name"] for g in run.of_type("aws:autoscaling/group:Group")}
    providers = {p.state["name"] for p in run.of_type("aws:ecs/capacityProvider:CapacityProvider")}
    env = {e["name"]: e["value"] for e in json.loads(
        run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])[0]["environment"]}
    allowed = {
        ALB: {"LoadBalancer": {ours["LoadBalancer"]}, "TargetGroup": target_groups(run)},
        "AWS/ECS": {"ClusterName": {ours["ClusterName"]}, "ServiceName": {ours["ServiceName"]}},
        "ECS/ContainerInsights": {"ClusterName": {ours["ClusterName"]}, "ServiceName": {ours["ServiceName"]}},
        "AWS/ECS/ManagedScaling": {"ClusterName": {ours["ClusterName"]}, "CapacityProviderName": providers},
        "AWS/AutoScaling": {"AutoScalingGroupName": groups},
        # the server publishes under the namespace and service name the task's env gives it
        env["METRICS_NAMESPACE"]: {"ServiceName": {env["METRICS_SERVICE_NAME"]}},
    }
    rows = metric_rows(body)
    for namespace, metric, dimensions, _ in rows:
        assert namespace in allowed, (namespace, metric)
        assert dimensions, (namespace, metric)
        for key, value in dimensions.items():
            assert value in allowed[namespace].get(key, set()), (namespace, metric, key, value)
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {REGION}
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(a.state["arn"] for a in run.of_type(ALARM))
    # What it shows: ALB and model latency percentiles side by side, tasks, instances and reservation per group.
    shown = {(namespace, metric, stat) for namespace, metric, _, stat in rows}
    for percentile in ("p50", "p90", "p99"):
        assert {(ALB, "TargetResponseTime", percentile), ("ModelServing", "InferenceLatency", percentile)} <= shown
    assert {("ModelServing", "BatchSize", "Average"), ("ModelServing", "InFlightRequests", "Average")} <= shown
    for metric in ("RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count",
                   "HTTPCode_Target_4XX_Count", "HTTPCode_ELB_4XX_Count", "HealthyHostCount", "UnHealthyHostCount"):
        assert any(row[:2] == (ALB, metric) for row in rows), metric
    assert {("AWS/ECS", "CPUUtilization", "Average"), ("AWS/ECS", "MemoryUtilization", "Average")} <= shown
    instances = {d["AutoScalingGroupName"] for n, m, d, _ in rows if m == "GroupInServiceInstances"}
    reservations = {d["CapacityProviderName"] for n, m, d, _ in rows if m == "CapacityProviderReservation"}
    assert (instances, reservations) == (groups, providers)
    insights = {m for n, m, _, _ in rows if n == "ECS/ContainerInsights"}
    assert insights == (set() if name == "observed" else {"RunningTaskCount", "DesiredTaskCount", "PendingTaskCount"})
    # The instance groups publish the metrics the dashboard graphs.
    for group in run.of_type("aws:autoscaling/group:Group"):
        assert {"GroupInServiceInstances", "GroupDesiredCapacity"} <= set(group["enabledMetrics"])
        assert group["metricsGranularity"] == "1Minute"


def test_dashboard_url_opens_the_stacks_dashboard(run: StackRun) -> None:
    name = run.one("aws:cloudwatch/dashboard:Dashboard")["dashboardName"]
    assert name == f"{PROJECT}-{run.stack}"
    assert run.outputs["dashboardUrl"] == (f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
                                           f"#dashboards/dashboard/{name}")


@pytest.mark.parametrize(("name", "batching"), [("dev", ("64", "2")), ("prod", ("64", "2")), ("observed", ("16", "5"))])
def test_container_tells_the_server_where_its_metrics_go_and_how_to_batch(
        name: str, batching: tuple[str, str], request: pytest.FixtureRequest) -> None:
    run = stack(name, request)
    (container,) = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert {key: env[key] for key in ("METRICS_NAMESPACE", "METRICS_SERVICE_NAME")} == {
        "METRICS_NAMESPACE": "ModelServing", "METRICS_SERVICE_NAME": f"{PROJECT}-{run.stack}"}
    assert (env["BATCH_MAX_SIZE"], env["BATCH_MAX_WAIT_MS"]) == batching  # on (measured) unless configured


def test_in_flight_policy_tracks_the_servers_per_task_signal_only_when_set(observed: StackRun, run: StackRun) -> None:
    def in_flight(r: StackRun) -> list[Any]:
        return [p for p in r.of_type("aws:appautoscaling/policy:Policy") if p.name.endswith("-in-flight")]

    assert in_flight(run) == []
    (policy,) = in_flight(observed)
    config = policy["targetTrackingScalingPolicyConfiguration"]
    assert config["customizedMetricSpecification"] == {
        "namespace": "ModelServing", "metricName": "InFlightRequests", "statistic": "Average",
        "dimensions": [{"name": "ServiceName", "value": "model-serving-dev"}]}
    assert config["targetValue"] == 8
    target = observed.one("aws:appautoscaling/target:Target")
    assert policy["resourceId"] == target["resourceId"]
    cpu = next(p for p in observed.of_type("aws:appautoscaling/policy:Policy") if p.name.endswith("-cpu"))
    assert observed.depends_on(policy, cpu)  # one policy change at a time on one target


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"containerEnvironment": ["METRICS_NAMESPACE=Other"]},
     "model-serving:containerEnvironment = 'METRICS_NAMESPACE': is set by the stack"),
    ({"containerEnvironment": ["BATCH_MAX_SIZE=8"]},
     "model-serving:containerEnvironment = 'BATCH_MAX_SIZE': is set by the stack"),
    ({"batchMaxSize": 1, "batchMaxWaitMs": 5}, "model-serving:batchMaxWaitMs = 5: must be 0 while batchMaxSize is 1"),
    ({"batchMaxSize": 0}, "model-serving:batchMaxSize = 0: must be from 1 to 4096"),
    ({"latencyObjectiveMs": 60000},
     "model-serving:latencyObjectiveMs = 60000: must be below albIdleTimeoutSeconds (60 s)"),
    ({"alarmEmails": ["ops@example.com", "OPS@example.com"]},
     "model-serving:alarmEmails = 'OPS@example.com': must not list an address twice"),
    ({"alarmEmails": ["ops at example.com"]},
     "model-serving:alarmEmails = 'ops at example.com': must be an email address like ops@example.com"),
    ({"alarmErrorRatePercent": 101}, "model-serving:alarmErrorRatePercent = 101: must be from 0 to 100"),
    ({"alarmCpuPercent": 0}, "model-serving:alarmCpuPercent = 0: must be from 1 to 100"),
])
def test_bad_observability_settings_are_refused(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(PROJECT, "dev", raw_config("dev", **overrides))
    assert expected in str(caught.value)


def test_batching_is_on_with_a_size_and_a_wait() -> None:
    settings = parse_settings(PROJECT, "dev", raw_config("dev", batchMaxSize=32, batchMaxWaitMs=3))
    assert (settings.batch_max_size, settings.batch_max_wait_ms) == (32, 3)


def test_readme_alarm_table_lists_every_kind_of_alarm(dev: StackRun, prod: StackRun, observed: StackRun) -> None:
    text = (PROJECT_DIR / "README.md").read_text()
    table = text[text.index("| alarm (`<what>`) |"):].split("\n\n", 1)[0].splitlines()[2:]
    documented = {re.match(r"^\| `([\w<>-]+)` \|", row).group(1) for row in table}  # type: ignore[union-attr]
    kinds = {re.sub(r"^capacity-waiting-\w+$", "capacity-waiting-<group>", what)
             for run in (dev, prod, observed) for what in alarms(run)}
    assert documented == kinds
    rollback = {row.split("`")[1] for row in table if row.endswith("| yes |")}
    deployment_alarms = prod.one("aws:ecs/service:Service")["alarms"]["alarmNames"]
    assert {f"{PROJECT}-prod-{what}" for what in rollback} == set(deployment_alarms)


def test_deployment_alarms_exist_before_the_service_and_the_service_alarms_after_it(run: StackRun) -> None:
    service, found = run.one("aws:ecs/service:Service"), alarms(run)
    for what in ("target-5xx-rate", "elb-5xx-rate", "latency-p99"):
        assert what in found and found[what].urn in service.dependencies, what
    for what in ("cpu-high", "memory-high", "running-tasks-low"):
        assert run.depends_on(found[what], service), what  # through the ServiceName dimension
    assert run.depends_on(run.one("aws:cloudwatch/dashboard:Dashboard"), service)


def test_readme_states_the_environment_class_objectives_of_args_py() -> None:
    text = " ".join((PROJECT_DIR / "README.md").read_text().split())
    assert ", ".join(f"{env} {ERROR_RATE_PERCENT[env]}% and {LATENCY_OBJECTIVE_MS[env]:,} ms"
                     for env in ("dev", "prod")) in text
