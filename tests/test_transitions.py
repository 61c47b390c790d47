"""Day two: what a config change or a new AMI does to a stack that already runs.

Each test runs the program with configuration A (the shared dev run) and B, and compares what Pulumi would
compare: logical resources (URNs) that appear or disappear, and resources whose inputs change.
"""

import json
from typing import Any

import pytest

from infra.network import ingress_rule_name
from tests import harness
from tests.conftest import stack_run
from tests.harness import StackRun, run_stack

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
CP = "aws:ecs/capacityProvider:CapacityProvider"
ASSOCIATION = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
SERVICE = "aws:ecs/service:Service"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
NEW_CIDR = "198.51.100.0/24"
NEW_AMI = "ami-0fedcba9876543210"
NO_SPOT = {"spotInstanceTypes": [], "spotMaxCount": 0, "spotWeight": 0, "onDemandWeight": 1, "instanceMaxCount": 2}


def diff(a: StackRun, b: StackRun) -> tuple[set[str], set[str], set[str]]:
    """Names of the resources that appear, disappear, and change inputs from `a` to `b`."""
    before, after = {r.urn: r for r in a.resources}, {r.urn: r for r in b.resources}
    name = {urn: r.name for urn, r in (before | after).items()}
    changed = {name[urn] for urn in before.keys() & after.keys() if before[urn].inputs != after[urn].inputs}
    return ({name[urn] for urn in after.keys() - before.keys()}, {name[urn] for urn in before.keys() - after.keys()},
            changed)


def of(run: StackRun, type_: str, suffix: str) -> Any:
    (found,) = [r for r in run.of_type(type_) if r.name.endswith(suffix)]
    return found


@pytest.fixture(scope="module")
def dev() -> StackRun:
    return stack_run("dev")


@pytest.fixture(scope="module")
def edited(dev: StackRun) -> StackRun:
    """dev with a CIDR inserted before the existing one, and its Spot types reordered plus one more."""
    spot_types = [*reversed(json.loads(dev.config["model-serving:spotInstanceTypes"])), "c5.large"]
    return run_stack("dev", overrides={"ingressCidrs": [NEW_CIDR, "0.0.0.0/0"], "spotInstanceTypes": spot_types})


@pytest.fixture(scope="module")
def spot_off() -> StackRun:
    return run_stack("dev", overrides=NO_SPOT)


@pytest.fixture(scope="module")
def new_ami() -> StackRun:
    """dev after AWS published a new ECS-optimised AMI (the SSM parameter's value changed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "AMI_ID", NEW_AMI)
        return run_stack("dev")


def test_inserting_a_cidr_and_a_spot_type_creates_one_rule_and_touches_only_the_spot_group(
        dev: StackRun, edited: StackRun) -> None:
    appeared, disappeared, changed = diff(dev, edited)
    assert appeared == {ingress_rule_name("model-serving-dev", 80, NEW_CIDR)}
    assert disappeared == set()
    # The new type is one more override of the Spot group; the reordered ones change nothing (sorted).
    assert changed == {of(dev, ASG, "-spot").name}
    overrides = of(edited, ASG, "-spot")["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert [o["instanceType"] for o in overrides] == sorted(
        ["t3.medium", "t3a.medium", "m5.large", "m6i.large", "m6a.large", "c5.large"])


def test_upgrading_from_index_named_rules_adopts_each_rule_unchanged() -> None:
    """Earlier versions named ALB rules `<name>-alb-in-<port>-<index>`. Pulumi follows an alias to the resource
    in state, so each old rule must be claimed by exactly one new rule with the same port and CIDR."""
    run = stack_run("dev-variant")  # two CIDRs and two listener ports
    cidrs = json.loads(run.config["model-serving:ingressCidrs"])
    old_state = {f"model-serving-dev-alb-in-{port}-{index}": (port, cidr)
                 for port in (80, 443) for index, cidr in enumerate(cidrs)}
    rules = [r for r in run.of_type(INGRESS) if "-alb-in-" in r.name]
    claimed = {alias: (int(r["fromPort"]), r["cidrIpv4"]) for r in rules for alias in r.aliases}
    assert claimed == old_state


def test_turning_spot_off_and_on_never_changes_the_clusters_capacity_providers(dev: StackRun,
                                                                               spot_off: StackRun) -> None:
    """ECS refuses to remove a provider the service still uses, and Pulumi would update the association before
    the service. The spot group and provider stay (empty): only sizes and the strategy change, both ways."""
    appeared, disappeared, changed = diff(dev, spot_off)
    assert appeared == disappeared == set()
    assert of(dev, ASSOCIATION, "")["capacityProviders"] == of(spot_off, ASSOCIATION, "")["capacityProviders"]
    spot = of(spot_off, CP, "-spot").state["name"]
    (on_demand,) = [p.state["name"] for p in spot_off.of_type(CP) if p.state["name"] != spot]
    assert spot_off.one(SERVICE)["capacityProviderStrategies"] == [
        {"capacityProvider": on_demand, "weight": 1, "base": 0}]
    assert dev.one(SERVICE)["capacityProviderStrategies"] == [{"capacityProvider": spot, "weight": 1, "base": 0}]
    asg = of(spot_off, ASG, "-spot")
    assert (asg["minSize"], asg["maxSize"]) == (0, 0)
    assert of(spot_off, CP, "-spot").inputs == of(dev, CP, "-spot").inputs
    assert changed == {of(dev, ASG, "-spot").name, of(dev, ASG, "-instances").name, of(dev, LT, "-spot").name,
                       of(dev, ASSOCIATION, "").name, dev.one(SERVICE).name}


def test_a_new_ami_shows_in_the_launch_templates_and_rolls_through_instance_refresh(dev: StackRun,
                                                                                   new_ami: StackRun) -> None:
    appeared, disappeared, changed = diff(dev, new_ami)
    assert appeared == disappeared == set()
    assert changed == {of(dev, LT, "-instances").name, of(dev, LT, "-spot").name}
    for suffix in ("-instances", "-spot"):
        assert (of(dev, LT, suffix)["imageId"], of(new_ami, LT, suffix)["imageId"]) == (harness.AMI_ID, NEW_AMI)
        # A new template version is a change of the group's launch template: it starts an instance refresh.
        assert of(new_ami, ASG, suffix)["instanceRefresh"]["preferences"]["scaleInProtectedInstances"] == "Refresh"
