"""Service autoscaling: the scalable target and its two target-tracking policies."""

import itertools

import pytest

from infra.autoscaling import request_count_label
from tests.harness import StackRun

POLICY = "aws:appautoscaling/policy:Policy"


def policy(run: StackRun, metric: str) -> dict:
    (found,) = [p for p in run.of_type(POLICY) if p["targetTrackingScalingPolicyConfiguration"][
        "predefinedMetricSpecification"]["predefinedMetricType"] == metric]
    return found["targetTrackingScalingPolicyConfiguration"]


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


def test_request_count_policy_is_labelled_lb_suffix_slash_tg_suffix(run: StackRun) -> None:
    config = policy(run, "ALBRequestCountPerTarget")
    lb = run.one("aws:lb/loadBalancer:LoadBalancer").state["arnSuffix"]
    tg = run.one("aws:lb/targetGroup:TargetGroup", "-tg").state["arnSuffix"]
    label = config["predefinedMetricSpecification"]["resourceLabel"]
    assert label == f"{lb}/{tg}" == request_count_label(lb, tg)
    assert label.startswith("app/") and "/targetgroup/" in label
    assert config["targetValue"] == {"dev": 20000, "prod": 80000}[run.stack]  # app/README.md, benchmark


def test_cpu_policy_and_cooldowns(run: StackRun) -> None:
    cpu = policy(run, "ECSServiceAverageCPUUtilization")
    assert cpu["targetValue"] == 60
    for config in (cpu, policy(run, "ALBRequestCountPerTarget")):
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
