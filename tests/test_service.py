"""Service: capacity-provider placement, deployments, networking and the dependencies that matter."""

import json

import pytest

from tests.harness import StackRun

SERVICE = "aws:ecs/service:Service"


def test_service_uses_a_capacity_provider_strategy_and_never_a_launch_type(run: StackRun) -> None:
    service = run.one(SERVICE)
    assert "launchType" not in service.inputs
    providers = {p.state["name"] for p in run.of_type("aws:ecs/capacityProvider:CapacityProvider")}
    assert service["capacityProviderStrategies"]
    assert {item["capacityProvider"] for item in service["capacityProviderStrategies"]} <= providers


@pytest.mark.parametrize(("stack", "desired", "grace"), [("dev", 1, 120), ("prod", 3, 180)])
def test_service_counts_and_grace_period_come_from_config(stack: str, desired: int, grace: int,
                                                         request: pytest.FixtureRequest) -> None:
    service = request.getfixturevalue(stack).one(SERVICE)
    assert service["desiredCount"] == desired
    assert service["healthCheckGracePeriodSeconds"] == grace
    assert service.ignore_changes == ["desiredCount"]


def test_grace_period_covers_the_container_start_period(run: StackRun) -> None:
    (container,) = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    assert run.one(SERVICE)["healthCheckGracePeriodSeconds"] >= container["healthCheck"]["startPeriod"]


def test_deployments_roll_back_and_keep_full_capacity(run: StackRun) -> None:
    service = run.one(SERVICE)
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert (service["deploymentMinimumHealthyPercent"], service["deploymentMaximumPercent"]) == (100, 200)


def test_placement_spreads_across_zones_then_binpacks_memory(run: StackRun) -> None:
    assert run.one(SERVICE)["orderedPlacementStrategies"] == [
        {"type": "spread", "field": "attribute:ecs.availability-zone"}, {"type": "binpack", "field": "memory"}]


def test_tasks_run_privately_behind_the_target_group(run: StackRun) -> None:
    service = run.one(SERVICE)
    tasks_group = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-tasks"))
    assert service["networkConfiguration"]["assignPublicIp"] is False
    assert service["networkConfiguration"]["securityGroups"] == [f"{tasks_group.name}-id"]
    # advancedConfiguration (prod's canary releases) is tests/test_release.py's
    assert [{k: v for k, v in lb.items() if k != "advancedConfiguration"} for lb in service["loadBalancers"]] == [
        {"targetGroupArn": run.one("aws:lb/targetGroup:TargetGroup", "-tg").state["arn"],
         "containerName": "model-server", "containerPort": 8080}]
    assert service["taskDefinition"] == run.one("aws:ecs/taskDefinition:TaskDefinition").state["arn"]
    assert service["cluster"] == run.one("aws:ecs/cluster:Cluster").state["arn"]


def test_service_depends_on_association_listener_and_role_attachments(run: StackRun) -> None:
    service = run.one(SERVICE)
    needed = [run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"),
              *run.of_type("aws:lb/listener:Listener"),
              *run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert len(needed) >= 5  # the association, a listener, two instance policies and the execution policy
    for dependency in needed:
        assert dependency.urn in service.dependencies, dependency.name


def test_service_tags_its_tasks_and_deletes_without_hanging(run: StackRun) -> None:
    service = run.one(SERVICE)
    assert service["enableEcsManagedTags"] is True
    assert service["propagateTags"] == "SERVICE"
    assert service["forceDelete"] is True
    assert service["availabilityZoneRebalancing"] == "ENABLED"


def test_strategy_changes_deploy_because_every_update_forces_a_deployment(run: StackRun) -> None:
    assert run.one(SERVICE)["forceNewDeployment"] is True


def test_zone_rebalancing_is_off_when_a_deployment_cannot_exceed_100_percent(dev_variant: StackRun) -> None:
    """AWS refuses rebalancing unless deploymentMaximumPercent is above 100 (tests/conftest.py sets it to 100)."""
    service = dev_variant.one(SERVICE)
    assert (service["deploymentMinimumHealthyPercent"], service["deploymentMaximumPercent"]) == (50, 100)
    assert service["availabilityZoneRebalancing"] == "DISABLED"
