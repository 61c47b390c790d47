"""Cluster capacity: cluster, instance role, launch templates, Auto Scaling groups, capacity providers."""

import base64
import json

import pytest

from infra.cluster import AMI_PARAMETERS
from infra.naming import RESERVED_CAPACITY_PROVIDER_PREFIXES
from tests.conftest import SPOT, run_with, setting
from tests.harness import AMI_ID, Registered, StackRun

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
CP = "aws:ecs/capacityProvider:CapacityProvider"
ASSOCIATION = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
KINDS = ("instances", "spot")  # the On-Demand group and the Spot group (tests/conftest.py: `with_spot`)


def group(run: StackRun, type_: str, kind: str) -> Registered:
    """The launch template, Auto Scaling group or capacity provider of the On-Demand or Spot group."""
    (found,) = [r for r in run.of_type(type_) if r.name.endswith("-spot") == (kind == "spot")]
    return found


def agent_config(run: StackRun, kind: str) -> dict[str, str]:
    script = base64.b64decode(group(run, LT, kind)["userData"]).decode()
    assert script.startswith("#!/bin/bash\n") and "/etc/ecs/ecs.config" in script
    lines = script.split("<<'EOF' >> /etc/ecs/ecs.config\n", 1)[1].split("\nEOF", 1)[0].splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_cluster_has_container_insights(run: StackRun) -> None:
    assert run.one("aws:ecs/cluster:Cluster")["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_instance_role_is_for_ec2_with_ecs_and_ssm_policies_only(run: StackRun) -> None:
    (role,) = [r for r in run.of_type("aws:iam/role:Role") if r.name.endswith("-instance")]
    trust = json.loads(role["assumeRolePolicy"])["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = {a["policyArn"] for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a["role"] == role.state["name"]}
    assert attached == {"arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
                        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    assert run.one("aws:iam/instanceProfile:InstanceProfile")["role"] == role.state["name"]


@pytest.mark.parametrize("kind", KINDS)
def test_launch_templates_read_the_ecs_ami_from_ssm_at_deploy_time(with_spot: StackRun, kind: str) -> None:
    run = with_spot
    assert AMI_PARAMETERS["x86_64"] == "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
    assert ("aws:ssm/getParameter:getParameter", {"name": AMI_PARAMETERS["x86_64"]}) in run.invokes
    assert group(run, LT, kind)["imageId"] == AMI_ID


@pytest.mark.parametrize("kind", KINDS)
def test_launch_templates_require_imdsv2_with_hop_limit_one(with_spot: StackRun, kind: str) -> None:
    run = with_spot
    metadata = group(run, LT, kind)["metadataOptions"]
    assert metadata["httpTokens"] == "required"
    assert metadata["httpPutResponseHopLimit"] == 1
    assert metadata["httpEndpoint"] == "enabled"


@pytest.mark.parametrize("kind", KINDS)
def test_root_volume_is_encrypted_gp3_sized_by_config(with_spot: StackRun, kind: str) -> None:
    (root,) = group(with_spot, LT, kind)["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert root["ebs"] == {"volumeSize": int(setting(with_spot, "instanceRootVolumeGiB")), "volumeType": "gp3",
                           "encrypted": "true", "deleteOnTermination": "true"}


@pytest.mark.parametrize("kind", KINDS)
def test_instances_get_no_public_ip_and_the_instance_group(with_spot: StackRun, kind: str) -> None:
    run = with_spot
    template = group(run, LT, kind)
    (nic,) = template["networkInterfaces"]
    assert nic["associatePublicIpAddress"] == "false"
    instances = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-instances"))
    assert nic["securityGroups"] == [f"{instances.name}-id"]
    assert template["iamInstanceProfile"]["arn"] == run.one("aws:iam/instanceProfile:InstanceProfile").state["arn"]


def test_user_data_configures_the_ecs_agent(with_spot: StackRun) -> None:
    run = with_spot
    common = {
        "ECS_CLUSTER": run.one("aws:ecs/cluster:Cluster").state["name"],
        "ECS_ENABLE_TASK_IAM_ROLE": "true",
        "ECS_AWSVPC_BLOCK_IMDS": "true",
        "ECS_CONTAINER_STOP_TIMEOUT": setting(run, "containerStopTimeoutSeconds") + "s",
        # `once`, not `prefer-cached`: AWS turns image clean-up off under prefer-cached and disks fill up.
        "ECS_IMAGE_PULL_BEHAVIOR": "once",
        "ECS_IMAGE_CLEANUP_INTERVAL": "10m",
        "ECS_IMAGE_MINIMUM_CLEANUP_AGE": "1h",
        "ECS_NUM_IMAGES_DELETE_PER_CYCLE": "5",
        "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "30m",
        "ECS_ENABLE_CONTAINER_METADATA": "true",
    }
    warm_pool = int(setting(run, "warmPoolMinSize")) > 0
    on_demand = {**common, "ECS_WARM_POOLS_CHECK": "true"} if warm_pool else common
    assert agent_config(run, "instances") == on_demand
    assert agent_config(run, "spot") == {**common, "ECS_ENABLE_SPOT_INSTANCE_DRAINING": "true"}


def test_auto_scaling_group_sizes_come_from_config(with_spot: StackRun) -> None:
    run = with_spot
    for kind, keys in (("instances", ("instanceMinCount", "instanceMaxCount")), ("spot", ("spotMinCount",
                                                                                          "spotMaxCount"))):
        asg = group(run, ASG, kind)
        assert (asg["minSize"], asg["maxSize"]) == tuple(int(setting(run, key)) for key in keys)
        assert "desiredCapacity" not in asg.inputs


@pytest.mark.parametrize("kind", KINDS)
def test_auto_scaling_groups_are_ecs_managed(with_spot: StackRun, kind: str) -> None:
    run = with_spot
    asg = group(run, ASG, kind)
    assert asg["protectFromScaleIn"] is True
    assert asg["forceDelete"] is True
    assert asg.ignore_changes == ["desiredCapacity"]
    assert {"key": "AmazonECSManaged", "value": "true", "propagateAtLaunch": True} in asg["tags"]
    tags = {t["key"]: t for t in asg["tags"]}
    for key in ("project", "environment", "stack", "Name"):
        assert tags[key]["propagateAtLaunch"] is True
    assert asg["vpcZoneIdentifiers"] == run.one("awsx:ec2:Vpc").state["privateSubnetIds"]


def test_on_demand_group_uses_its_launch_template(run: StackRun) -> None:
    asg, template = group(run, ASG, "instances"), group(run, LT, "instances")
    assert asg["launchTemplate"] == {"id": f"{template.name}-id", "version": "1"}
    assert template["instanceType"] == setting(run, "instanceType")
    assert "mixedInstancesPolicy" not in asg.inputs


def test_spot_group_mixes_interchangeable_types_price_capacity_optimized(with_spot: StackRun) -> None:
    run = with_spot
    types = json.loads(setting(run, "spotInstanceTypes"))
    asg, template = group(run, ASG, "spot"), group(run, LT, "spot")
    policy = asg["mixedInstancesPolicy"]
    assert policy["instancesDistribution"] == {"onDemandBaseCapacity": 0, "onDemandPercentageAboveBaseCapacity": 0,
                                               "spotAllocationStrategy": "price-capacity-optimized"}
    assert policy["launchTemplate"]["launchTemplateSpecification"] == {"launchTemplateId": f"{template.name}-id",
                                                                       "version": "1"}
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == sorted(types)
    assert "instanceType" not in template.inputs and "launchTemplate" not in asg.inputs
    assert asg["capacityRebalance"] is True
    assert "warmPool" not in asg.inputs  # AWS refuses warm pools on Spot groups


@pytest.mark.parametrize(("stack", "size"), [("dev", 0), ("prod", 1)])  # as the shipped stack files set it
def test_the_on_demand_group_keeps_the_configured_warm_pool(stack: str, size: int) -> None:
    asg = group(run_with(stack, warmPoolMinSize=size), ASG, "instances")
    if size:
        # The pool holds exactly minSize (not max size minus desired), and no reuse on scale-in: ECS groups may
        # not return instances to the pool.
        assert asg["warmPool"] == {"poolState": "Stopped", "minSize": size, "maxGroupPreparedCapacity": size}
        assert asg["forceDeleteWarmPool"] is True
    else:
        assert "warmPool" not in asg.inputs


@pytest.mark.parametrize("kind", KINDS)
def test_capacity_providers_manage_scaling_termination_and_draining(with_spot: StackRun, kind: str) -> None:
    run = with_spot
    provider = group(run, CP, kind)["autoScalingGroupProvider"]
    assert provider["autoScalingGroupArn"] == group(run, ASG, kind).state["arn"]
    assert provider["managedTerminationProtection"] == "ENABLED"
    assert provider["managedDraining"] == "ENABLED"
    assert provider["managedScaling"] == {
        "status": "ENABLED", "targetCapacity": int(setting(run, "capacityTargetPercent")),
        "minimumScalingStepSize": int(setting(run, "capacityMinScalingStep")),
        "maximumScalingStepSize": int(setting(run, "capacityMaxScalingStep")),
        "instanceWarmupPeriod": int(setting(run, "instanceWarmupSeconds"))}


def test_termination_protection_implies_a_scale_in_protected_group(run: StackRun) -> None:
    for provider in run.of_type(CP):
        config = provider["autoScalingGroupProvider"]
        asg = next(g for g in run.of_type(ASG) if g.state["arn"] == config["autoScalingGroupArn"])
        assert config["managedTerminationProtection"] != "ENABLED" or asg["protectFromScaleIn"] is True
        assert config["managedScaling"]["status"] == "ENABLED"


def test_capacity_provider_names_are_accepted_by_aws(run: StackRun) -> None:
    for provider in run.of_type(CP):
        assert "name" not in provider.inputs  # auto-named from the logical name
        assert not provider.name.lower().startswith(RESERVED_CAPACITY_PROVIDER_PREFIXES)


@pytest.mark.parametrize(("stack", "strategy"), [
    ("dev", [("spot", 1, 0)]),
    ("prod", [("instances", 1, 2), ("spot", 3, 0)]),
])
def test_both_providers_are_associated_with_the_strategy_as_default(stack: str,
                                                                    strategy: list[tuple[str, int, int]]) -> None:
    run = run_with(stack, **SPOT[stack])
    association = run.one(ASSOCIATION)
    names = {kind: group(run, CP, kind).state["name"] for kind in KINDS}
    assert association["clusterName"] == run.one("aws:ecs/cluster:Cluster").state["name"]
    assert association["capacityProviders"] == [names["instances"], names["spot"]]
    expected = [{"capacityProvider": names[kind], "weight": weight, "base": base} for kind, weight, base in strategy]
    assert association["defaultCapacityProviderStrategies"] == expected
    assert run.one("aws:ecs/service:Service")["capacityProviderStrategies"] == expected


@pytest.mark.parametrize("kind", KINDS)
def test_destroy_order_is_service_association_provider_group_cluster(with_spot: StackRun, kind: str) -> None:
    run = with_spot
    service, association = run.one("aws:ecs/service:Service"), run.one(ASSOCIATION)
    provider, asg, template = group(run, CP, kind), group(run, ASG, kind), group(run, LT, kind)
    # Pulumi deletes a dependent before its dependency, so this chain is the deletion order.
    assert run.depends_on(service, association)
    assert run.depends_on(association, provider)
    assert run.depends_on(provider, asg)
    assert run.depends_on(asg, template) and run.depends_on(template, run.one("aws:ecs/cluster:Cluster"))
    # The instances' agents keep their ECS permissions until the group, and every task on it, is gone.
    (role,) = [r for r in run.of_type("aws:iam/role:Role") if r.name.endswith("-instance")]
    instance_policies = [a for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                         if a["role"] == role.state["name"]]
    assert len(instance_policies) == 2
    assert all(run.depends_on(asg, policy) for policy in instance_policies)  # the service: tests/test_service.py


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_launch_template_version_refreshes_every_instance_through_ecs_draining(run: StackRun,
                                                                                     kind: str) -> None:
    asg, provider = group(run, ASG, kind), group(run, CP, kind)
    assert asg["instanceRefresh"] == {"strategy": "Rolling", "preferences": {
        "minHealthyPercentage": 100, "maxHealthyPercentage": 200, "scaleInProtectedInstances": "Refresh",
        "skipMatching": True, "instanceWarmup": "300"}}
    # The refresh is triggered by the version, which changes with every template change (a new AMI included).
    assert run.depends_on(asg, group(run, LT, kind))
    assert provider["autoScalingGroupProvider"]["managedDraining"] == "ENABLED"


@pytest.mark.parametrize(("stack", "credits"), [("dev", {"cpuCredits": "standard"}), ("prod", None)])
def test_dev_burstable_groups_use_standard_cpu_credits(stack: str, credits: dict[str, str] | None,
                                                       request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    # dev's On-Demand group is all t3.medium; its Spot group mixes in m5/m6 types, so AWS's defaults apply.
    assert group(run, LT, "instances").get("creditSpecification") == credits
    assert "creditSpecification" not in group(run, LT, "spot").inputs
