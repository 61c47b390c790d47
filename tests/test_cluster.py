"""Cluster capacity: cluster, instance role, launch template, Auto Scaling group, capacity provider."""

import base64
import json

import pytest

from infra.cluster import AMI_PARAMETER
from infra.naming import RESERVED_CAPACITY_PROVIDER_PREFIXES
from tests.harness import AMI_ID, StackRun

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
CP = "aws:ecs/capacityProvider:CapacityProvider"
ASSOCIATION = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"


def agent_config(run: StackRun) -> dict[str, str]:
    script = base64.b64decode(run.one(LT)["userData"]).decode()
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


def test_launch_template_reads_the_ecs_ami_from_ssm_at_deploy_time(run: StackRun) -> None:
    assert ("aws:ssm/getParameter:getParameter", {"name": AMI_PARAMETER}) in run.invokes
    assert AMI_PARAMETER == "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
    assert run.one(LT)["imageId"] == AMI_ID


def test_launch_template_requires_imdsv2_with_hop_limit_one(run: StackRun) -> None:
    metadata = run.one(LT)["metadataOptions"]
    assert metadata["httpTokens"] == "required"
    assert metadata["httpPutResponseHopLimit"] == 1
    assert metadata["httpEndpoint"] == "enabled"


@pytest.mark.parametrize(("stack", "size"), [("dev", 30), ("prod", 50)])
def test_root_volume_is_encrypted_gp3_sized_by_config(stack: str, size: int, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    (root,) = run.one(LT)["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert root["ebs"] == {"volumeSize": size, "volumeType": "gp3", "encrypted": "true",
                           "deleteOnTermination": "true"}


def test_instances_get_no_public_ip_and_the_instance_group(run: StackRun) -> None:
    (nic,) = run.one(LT)["networkInterfaces"]
    assert nic["associatePublicIpAddress"] == "false"
    instances = next(g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-instances"))
    assert nic["securityGroups"] == [f"{instances.name}-id"]
    assert run.one(LT)["iamInstanceProfile"]["arn"] == run.one("aws:iam/instanceProfile:InstanceProfile").state["arn"]


@pytest.mark.parametrize(("stack", "stop_timeout"), [("dev", "30s"), ("prod", "60s")])
def test_user_data_configures_the_ecs_agent(stack: str, stop_timeout: str, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    assert agent_config(run) == {
        "ECS_CLUSTER": run.one("aws:ecs/cluster:Cluster").state["name"],
        "ECS_ENABLE_TASK_IAM_ROLE": "true",
        "ECS_AWSVPC_BLOCK_IMDS": "true",
        "ECS_CONTAINER_STOP_TIMEOUT": stop_timeout,
        "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
        "ECS_ENABLE_CONTAINER_METADATA": "true",
    }


@pytest.mark.parametrize(("stack", "sizes"), [("dev", (1, 2)), ("prod", (2, 6))])
def test_auto_scaling_group_size_comes_from_config(stack: str, sizes: tuple[int, int],
                                                   request: pytest.FixtureRequest) -> None:
    group = request.getfixturevalue(stack).one(ASG)
    assert (group["minSize"], group["maxSize"]) == sizes
    assert "desiredCapacity" not in group.inputs


def test_auto_scaling_group_is_ecs_managed(run: StackRun) -> None:
    group = run.one(ASG)
    assert group["protectFromScaleIn"] is True
    assert group["forceDelete"] is True
    assert group.ignore_changes == ["desiredCapacity"]
    assert {"key": "AmazonECSManaged", "value": "true", "propagateAtLaunch": True} in group["tags"]
    assert group["launchTemplate"] == {"id": f"{run.one(LT).name}-id", "version": "1"}


def test_instances_carry_the_stack_tags(run: StackRun) -> None:
    tags = {t["key"]: t for t in run.one(ASG)["tags"]}
    for key in ("project", "environment", "stack", "Name"):
        assert tags[key]["propagateAtLaunch"] is True


@pytest.mark.parametrize(("stack", "target", "max_step"), [("dev", 100, 2), ("prod", 80, 3)])
def test_capacity_provider_manages_scaling_termination_and_draining(stack: str, target: int, max_step: int,
                                                                   request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    provider = run.one(CP)["autoScalingGroupProvider"]
    assert provider["autoScalingGroupArn"] == run.one(ASG).state["arn"]
    assert provider["managedTerminationProtection"] == "ENABLED"
    assert provider["managedDraining"] == "ENABLED"
    assert provider["managedScaling"] == {"status": "ENABLED", "targetCapacity": target,
                                         "minimumScalingStepSize": 1, "maximumScalingStepSize": max_step,
                                         "instanceWarmupPeriod": 300}


def test_termination_protection_implies_a_scale_in_protected_group(run: StackRun) -> None:
    provider = run.one(CP)["autoScalingGroupProvider"]
    group = next(g for g in run.of_type(ASG) if g.state["arn"] == provider["autoScalingGroupArn"])
    assert provider["managedTerminationProtection"] != "ENABLED" or group["protectFromScaleIn"] is True
    assert provider["managedScaling"]["status"] == "ENABLED"


def test_capacity_provider_name_is_accepted_by_aws(run: StackRun) -> None:
    provider = run.one(CP)
    assert "name" not in provider.inputs  # auto-named from the logical name
    assert not provider.name.lower().startswith(RESERVED_CAPACITY_PROVIDER_PREFIXES)


def test_capacity_provider_is_associated_with_a_default_strategy(run: StackRun) -> None:
    association = run.one(ASSOCIATION)
    provider_name = run.one(CP).state["name"]
    assert association["clusterName"] == run.one("aws:ecs/cluster:Cluster").state["name"]
    assert association["capacityProviders"] == [provider_name]
    assert association["defaultCapacityProviderStrategies"] == [
        {"capacityProvider": provider_name, "weight": 1, "base": 0}]


def test_destroy_order_is_service_association_provider_group_cluster(run: StackRun) -> None:
    service, association = run.one("aws:ecs/service:Service"), run.one(ASSOCIATION)
    provider, group, cluster = run.one(CP), run.one(ASG), run.one("aws:ecs/cluster:Cluster")
    # Pulumi deletes a dependent before its dependency, so this chain is the deletion order.
    assert run.depends_on(service, association)
    assert run.depends_on(association, provider)
    assert run.depends_on(provider, group)
    assert run.depends_on(group, run.one(LT)) and run.depends_on(run.one(LT), cluster)
