"""Service autoscaling: the scalable target and its two target-tracking policies."""

import itertools

import pytest

from infra.autoscaling import request_count_label
from tests.harness import StackRun

POLICY = "aws:appautoscaling/policy:Policy"


def policy(run: StackRun, suffix: str) -> dict:
    return run.one(POLICY, f"-{suffix}")["targetTrackingScalingPolicyConfiguration"]


@pytest.mark.parametrize(("stack", "bounds"), [("dev", (1, 2)), ("prod", (2, 10))])
def test_scalable_target_is_the_service_with_bounds_from_config(stack: str, bounds: tuple[int, int],
                                                               request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    target = run.one("aws:appautoscaling/target:Target")
    assert (target["minCapacity"], target["maxCapacity"]) == bounds
    assert target["serviceNamespace"] == "ecs"
    assert target["scalableDimension"] == "ecs:service:DesiredCount"
    assert target["resourceId"] == f"service/{run.outputs['clusterName']}/{run.outputs['serviceName']}"
    for p in run.of_type(POLICY):
        assert p["resourceId"] == target["resourceId"]
        assert p["policyType"] == "TargetTrackingScaling"


def test_a_rolling_stack_scales_on_requests_per_target_of_its_one_target_group(dev: StackRun) -> None:
    config = policy(dev, "requests")
    lb = dev.one("aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    tg = dev.one("aws:lb/targetGroup:TargetGroup", "-tg").state["arnSuffix"]
    assert config["predefinedMetricSpecification"]["predefinedMetricType"] == "ALBRequestCountPerTarget"
    label = config["predefinedMetricSpecification"]["resourceLabel"]
    assert label == f"{lb}/{tg}" == request_count_label(lb, tg)
    assert label.startswith("app/") and "/targetgroup/" in label
    assert config["targetValue"] == 20000  # app/README.md, benchmark


def test_a_shifting_stack_scales_on_requests_per_healthy_target_of_both_target_groups(prod: StackRun) -> None:
    """prod releases by canary: production may be on either target group, so the requests policy must not name
    one (it would see no traffic after every other release)."""
    config = policy(prod, "requests")
    assert "predefinedMetricSpecification" not in config and config["targetValue"] == 80000
    queries = {q["id"]: q for q in config["customizedMetricSpecification"]["metrics"]}
    lb = prod.one("aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    groups = {tg.state["arnSuffix"] for tg in prod.of_type("aws:lb/targetGroup:TargetGroup")}

    def read(query: dict) -> tuple[str, str, str, dict[str, str]]:
        stat = query["metricStat"]
        return (stat["metric"]["namespace"], stat["metric"]["metricName"], stat["stat"],
                {d["name"]: d["value"] for d in stat["metric"]["dimensions"]})

    assert read(queries["requests"]) == ("AWS/ApplicationELB", "RequestCount", "Sum", {"LoadBalancer": lb})
    healthy = [read(q) for query_id, q in queries.items() if query_id.startswith("healthy")]
    assert {(ns, name, stat) for ns, name, stat, _ in healthy} == {("AWS/ApplicationELB", "HealthyHostCount",
                                                                     "Average")}
    assert {d["TargetGroup"] for *_, d in healthy} == groups and len(groups) == 2
    assert {d["LoadBalancer"] for *_, d in healthy} == {lb}
    (returned,) = [q for q in queries.values() if q.get("returnData")]
    assert returned["expression"] == ("IF((FILL(healthy0, 0) + FILL(healthy1, 0)) > 0, FILL(requests, 0) / "
                                      "(FILL(healthy0, 0) + FILL(healthy1, 0)), 0)")
    assert not any(q.get("returnData") for q in queries.values() if q is not returned)


def test_cpu_policy_and_cooldowns(run: StackRun) -> None:
    cpu = policy(run, "cpu")
    assert cpu["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert cpu["targetValue"] == 60
    for config in (cpu, policy(run, "requests")):
        assert (config["scaleOutCooldown"], config["scaleInCooldown"]) == (60, 300)


def test_policies_and_scheduled_actions_are_written_one_after_another(dev: StackRun, prod: StackRun) -> None:
    """Parallel writes to one scalable target fail with ConcurrentUpdateException (terraform-provider-aws#17915)."""
    for run, scheduled in ((dev, 2), (prod, 0)):
        target = run.one("aws:appautoscaling/target:Target")
        actions = run.of_type("aws:appautoscaling/scheduledAction:ScheduledAction")
        chain = [target, *run.of_type(POLICY), *actions]
        assert len(chain) == 3 + scheduled
        for before, after in itertools.pairwise(chain):
            assert before.urn in after.dependencies, f"{after.name} does not wait for {before.name}"
