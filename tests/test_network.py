"""Network: VPC per environment, existing-VPC mode, and the security-group chain."""

import json

from tests.conftest import setting
from tests.harness import REGION, VPC_ROUTE_TABLES, StackRun

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
GROUP = "aws:ec2/securityGroup:SecurityGroup"


def groups(run: StackRun) -> dict[str, str]:
    """Security group suffix (alb, tasks, instances) -> its mock id."""
    return {g.name.rsplit("-", 1)[-1]: f"{g.name}-id" for g in run.of_type(GROUP)}


def test_new_vpc_per_stack(run: StackRun) -> None:
    vpc = run.one("awsx:ec2:Vpc")
    assert vpc["numberOfAvailabilityZones"] == int(setting(run, "availabilityZoneCount"))
    assert vpc["natGateways"] == {"strategy": setting(run, "natGateways")}
    assert vpc["cidrBlock"] == setting(run, "vpcCidr")
    assert [spec["type"] for spec in vpc["subnetSpecs"]] == ["Public", "Private"]


def test_instances_and_tasks_live_in_private_subnets_and_the_alb_in_public_ones(run: StackRun) -> None:
    vpc = run.one("awsx:ec2:Vpc").state
    for group in run.of_type("aws:autoscaling/group:Group"):
        assert group["vpcZoneIdentifiers"] == vpc["privateSubnetIds"]
    assert run.one("aws:ecs/service:Service")["networkConfiguration"]["subnets"] == vpc["privateSubnetIds"]
    assert run.one("aws:lb/loadBalancer:LoadBalancer")["subnets"] == vpc["publicSubnetIds"]


def test_existing_vpc_is_used_as_given(dev_variant: StackRun) -> None:
    existing = dev_variant
    assert existing.of_type("awsx:ec2:Vpc") == []
    assert {g["vpcId"] for g in existing.of_type(GROUP)} == {"vpc-0aaaaaaaaaaaaaaaa"}
    assert existing.one("aws:lb/targetGroup:TargetGroup", "-tg")["vpcId"] == "vpc-0aaaaaaaaaaaaaaaa"
    for group in existing.of_type("aws:autoscaling/group:Group"):
        assert group["vpcZoneIdentifiers"] == ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"]
    assert existing.one("aws:lb/loadBalancer:LoadBalancer")["subnets"] == [
        "subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]


def test_alb_accepts_http_only_from_configured_cidrs_without_a_certificate(plain_http: StackRun) -> None:
    alb = groups(plain_http)["alb"]
    rules = [r for r in plain_http.of_type(INGRESS) if r["securityGroupId"] == alb and "-test-in-" not in r.name]
    cidrs = json.loads(setting(plain_http, "ingressCidrs"))
    assert {(r["fromPort"], r["toPort"], r["cidrIpv4"]) for r in rules} == {(80, 80, cidr) for cidr in cidrs}
    assert len(rules) == len(cidrs)


def test_alb_opens_443_for_each_cidr_when_a_certificate_is_configured(dev_variant: StackRun) -> None:
    secured = dev_variant
    alb = groups(secured)["alb"]
    rules = [r for r in secured.of_type(INGRESS) if r["securityGroupId"] == alb]
    assert {(r["fromPort"], r["cidrIpv4"]) for r in rules} == {
        (80, "203.0.113.0/24"), (80, "198.51.100.0/24"), (443, "203.0.113.0/24"), (443, "198.51.100.0/24")}


def test_tasks_accept_only_the_container_port_from_the_alb_group(run: StackRun) -> None:
    ids = groups(run)
    rules = [r for r in run.of_type(INGRESS) if r["securityGroupId"] == ids["tasks"]]
    assert len(rules) == 1
    assert rules[0]["referencedSecurityGroupId"] == ids["alb"]
    assert (rules[0]["fromPort"], rules[0]["toPort"], rules[0]["ipProtocol"]) == (8080, 8080, "tcp")
    assert "cidrIpv4" not in rules[0].inputs


def test_instances_have_no_inbound_rule(run: StackRun) -> None:
    instances = groups(run)["instances"]
    assert [r for r in run.of_type(INGRESS) if r["securityGroupId"] == instances] == []


def test_alb_egress_reaches_only_the_tasks_on_the_container_port(run: StackRun) -> None:
    ids = groups(run)
    (rule,) = [r for r in run.of_type(EGRESS) if r["securityGroupId"] == ids["alb"]]
    assert rule["referencedSecurityGroupId"] == ids["tasks"]
    assert (rule["fromPort"], rule["toPort"]) == (8080, 8080)


def test_every_rule_is_standalone_and_described(run: StackRun) -> None:
    for group in run.of_type(GROUP):
        assert "ingress" not in group.inputs and "egress" not in group.inputs, group.name
        assert group["description"]
    for rule in run.of_type(INGRESS) + run.of_type(EGRESS):
        assert len(rule["description"]) > 10, rule.name


def test_a_new_vpc_pulls_image_layers_through_an_s3_gateway_endpoint(run: StackRun, dev_variant: StackRun) -> None:
    """Not through the NAT gateway, which bills every GB of every multi-GB model image pull."""
    endpoint = run.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    zones = {"dev": 2, "prod": 3}[run.stack]
    assert (endpoint["vpcEndpointType"], endpoint["serviceName"]) == ("Gateway", f"com.amazonaws.{REGION}.s3")
    assert endpoint["vpcId"] == run.one("awsx:ec2:Vpc").state["vpcId"]
    assert endpoint["routeTableIds"] == VPC_ROUTE_TABLES[:2 * zones]  # every route table awsx made, private ones too
    assert dev_variant.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") == []  # an existing VPC keeps its own routing

