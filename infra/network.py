"""Network: a new VPC (or an existing one) and the security-group chain ALB -> tasks.

Instances get no inbound rule at all (SSM replaces SSH); tasks accept the container port only from the
ALB's group. Every rule is a standalone resource with a description, never an inline block, so no group
mixes the two styles (they overwrite each other).
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

HTTP_PORT = 80
HTTPS_PORT = 443
ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class NetworkArgs:
    name_prefix: str
    existing_vpc_id: str  # "": create a VPC from the three settings below
    existing_public_subnet_ids: tuple[str, ...]
    existing_private_subnet_ids: tuple[str, ...]
    vpc_cidr: str
    availability_zone_count: int
    nat_gateways: str
    ingress_cidrs: tuple[str, ...]
    listener_ports: tuple[int, ...]  # the load balancer's listeners, open to ingress_cidrs
    container_port: int


def ingress_rule_name(name: str, port: int, cidr: str) -> str:
    """Keyed by content, `<name>-alb-in-443-203.0.113.0_24` (the CIDR as ipaddress writes it)."""
    return f"{name}-alb-in-{port}-{str(ipaddress.IPv4Network(cidr)).replace('/', '_')}"


def route_table_ids(tables: Sequence[aws.ec2.RouteTable]) -> Any:  # an Output of the ids
    return pulumi.Output.all(*[table.id for table in tables])


class Network(pulumi.ComponentResource):
    vpc: awsx.ec2.Vpc | None
    s3_endpoint: aws.ec2.VpcEndpoint | None  # only in a VPC the stack creates
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[Sequence[str]]
    private_subnet_ids: pulumi.Output[Sequence[str]]
    alb_security_group: aws.ec2.SecurityGroup
    task_security_group: aws.ec2.SecurityGroup
    instance_security_group: aws.ec2.SecurityGroup
    ingress_rules: list[aws.vpc.SecurityGroupIngressRule]
    egress_rules: list[aws.vpc.SecurityGroupEgressRule]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Network", name, None, opts)
        net = args
        child = pulumi.ResourceOptions(parent=self)

        if net.existing_vpc_id:
            self.vpc = None
            self.s3_endpoint = None
            self.vpc_id = pulumi.Output.from_input(net.existing_vpc_id)
            self.public_subnet_ids = pulumi.Output.from_input(list(net.existing_public_subnet_ids))
            self.private_subnet_ids = pulumi.Output.from_input(list(net.existing_private_subnet_ids))
        else:
            self.vpc = awsx.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=net.vpc_cidr,
                number_of_availability_zones=net.availability_zone_count,
                nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                    strategy=awsx.ec2.NatGatewayStrategy(net.nat_gateways)),
                subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
                subnet_specs=[
                    awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC),
                    awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE),
                ],
                enable_dns_hostnames=True,
                enable_dns_support=True,
                opts=child,
            )
            self.vpc_id = self.vpc.vpc_id
            self.public_subnet_ids = self.vpc.public_subnet_ids
            self.private_subnet_ids = self.vpc.private_subnet_ids
            # Image layers come from S3: through a gateway endpoint (free) instead of the NAT gateway, which
            # bills every GB of multi-GB model images. An existing VPC keeps its own routing (it may already
            # have one; a second S3 endpoint on the same route tables is refused).
            region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
            self.s3_endpoint = aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=self.vpc_id,
                service_name=pulumi.Output.concat("com.amazonaws.", region, ".s3"),
                vpc_endpoint_type="Gateway",
                route_table_ids=self.vpc.route_tables.apply(route_table_ids),
                tags={"Name": f"{net.name_prefix}-s3"},
                opts=child,
            )

        def group(suffix: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(f"{name}-{suffix}", description=description, vpc_id=self.vpc_id,
                                         tags={"Name": f"{net.name_prefix}-{suffix}"}, opts=child)

        self.alb_security_group = group("alb", "Load balancer: HTTP(S) from the allowed CIDRs")
        self.task_security_group = group("tasks", "Model server tasks: container port from the load balancer")
        self.instance_security_group = group("instances", "ECS container instances: no inbound, HTTPS out")

        port = net.container_port
        # One rule per listener port and CIDR, named by both: adding, removing or reordering a CIDR creates or
        # deletes only its own rules. Earlier versions named them by list position; the alias adopts such a
        # rule under its new name on the first `pulumi up`, so the upgrade replaces nothing.
        self.ingress_rules = [
            aws.vpc.SecurityGroupIngressRule(
                ingress_rule_name(name, listener_port, cidr),
                security_group_id=self.alb_security_group.id,
                description=f"Clients to the load balancer on {listener_port} from {cidr}",
                ip_protocol="tcp", from_port=listener_port, to_port=listener_port, cidr_ipv4=cidr,
                opts=pulumi.ResourceOptions(parent=self, aliases=[
                    pulumi.Alias(name=f"{name}-alb-in-{listener_port}-{index}")]),
            )
            for listener_port in net.listener_ports
            for index, cidr in enumerate(net.ingress_cidrs)
        ]
        self.ingress_rules.append(aws.vpc.SecurityGroupIngressRule(
            f"{name}-tasks-in-from-alb",
            security_group_id=self.task_security_group.id,
            description=f"Load balancer to the model server on {port}",
            ip_protocol="tcp", from_port=port, to_port=port,
            referenced_security_group_id=self.alb_security_group.id,
            opts=child,
        ))
        self.egress_rules = [
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-alb-out-to-tasks",
                security_group_id=self.alb_security_group.id,
                description=f"Load balancer to the model server tasks on {port} (traffic and health checks)",
                ip_protocol="tcp", from_port=port, to_port=port,
                referenced_security_group_id=self.task_security_group.id,
                opts=child,
            ),
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-tasks-out-https",
                security_group_id=self.task_security_group.id,
                description="Model server to AWS APIs over HTTPS through the NAT gateway",
                ip_protocol="tcp", from_port=HTTPS_PORT, to_port=HTTPS_PORT, cidr_ipv4=ANYWHERE,
                opts=child,
            ),
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-instances-out-https",
                security_group_id=self.instance_security_group.id,
                description="ECS agent, image pulls (ECR, S3), logs and SSM over HTTPS through the NAT gateway",
                ip_protocol="tcp", from_port=HTTPS_PORT, to_port=HTTPS_PORT, cidr_ipv4=ANYWHERE,
                opts=child,
            ),
        ]

        self.register_outputs({
            "vpcId": self.vpc_id,
            "publicSubnetIds": self.public_subnet_ids,
            "privateSubnetIds": self.private_subnet_ids,
        })
