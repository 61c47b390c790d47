"""Release: what ECS needs to shift traffic between a blue and a green revision, and the model check between.

Only stacks whose service uses (or is leaving, or is about to use) BLUE_GREEN, LINEAR or CANARY get this piece;
a ROLLING stack has none of it. It holds:
- the alternate target group (the same health check as the primary: `infra/loadbalancer.py`);
- the production listener rule on the forwarding listener and a test listener on its own port, each forwarding
  to both groups by weight. ECS rewrites the weights in every release (and leaves production on whichever group
  green used), so Pulumi creates the actions and then ignores them: restoring them would send production to a
  group that may have no targets;
- the ECS infrastructure role for load balancers (AWS's managed policy, nothing else);
- the release check: a Lambda function in the private subnets, registered as the POST_TEST_TRAFFIC_SHIFT hook,
  that sends the smoke set (app/smoke/requests.json) to the test listener and answers FAILED on a failed
  request, too few right answers or a slow p99, and the role ECS invokes it with.

The test listener is open to `test_cidrs` and to the stack's NAT gateways' addresses only: the check runs in
the VPC and reaches the internet-facing load balancer through NAT, so no internet range is needed for it.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.iam import assume_role_policy
from infra.loadbalancer import TLS_POLICY, LoadBalancer, LoadBalancerArgs, target_group
from infra.naming import IAM_ROLE_NAME_MAX, TARGET_GROUP_NAME_MAX, bounded_name

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHECK_SOURCE = Path(__file__).resolve().parent / "release_check" / "check.py"
SMOKE_SET = PROJECT_DIR / "app" / "smoke" / "requests.json"
HOOK_STAGE = "POST_TEST_TRAFFIC_SHIFT"  # green holds all test traffic, production still on blue
LOAD_BALANCER_POLICY = "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"
# The production rule matches every request, ahead of the listener's default action (kept for ROLLING).
RULE_PRIORITY = 1
NAT_PREFIX_LIST_ENTRIES = 6  # one NAT gateway per AZ at most (availabilityZoneCount <= 6)
CHECK_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class ReleaseCheckArgs:
    min_accuracy_percent: int
    p99_ms: int
    log_retention_days: int


@dataclass(frozen=True)
class ReleaseArgs:
    name_prefix: str
    test_listener_port: int
    certificate_arn: str  # "": the test listener serves HTTP, like the production one
    test_cidrs: tuple[str, ...]
    check: ReleaseCheckArgs | None  # None: no hook (a service on ROLLING while it enters or leaves shifting)


@dataclass(frozen=True)
class ReleaseTraffic:
    """What the service's load balancer `advancedConfiguration` and lifecycle hook name."""

    alternate_target_group_arn: pulumi.Output[str]
    production_listener_rule_arn: pulumi.Output[str]
    test_listener_rule_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    hook_function_arn: pulumi.Output[str] | None
    hook_role_arn: pulumi.Output[str] | None


def cidr_key(cidr: str) -> str:
    """A logical-name part from a CIDR, so each rule is keyed by what it allows."""
    return cidr.replace(".", "-").replace("/", "-")


class Release(pulumi.ComponentResource):
    alternate_target_group: aws.lb.TargetGroup
    production_rule: aws.lb.ListenerRule
    test_listener: aws.lb.Listener
    test_rule: aws.lb.ListenerRule
    test_ingress_rules: list[aws.vpc.SecurityGroupIngressRule]
    nat_addresses: aws.ec2.ManagedPrefixList
    infrastructure_role: aws.iam.Role
    infrastructure_attachment: aws.iam.RolePolicyAttachment
    test_url: pulumi.Output[str]
    check_function: aws.lambda_.Function | None
    check_role: aws.iam.Role | None
    check_security_group: aws.ec2.SecurityGroup | None
    hook_role: aws.iam.Role | None
    hook_policy: aws.iam.RolePolicy | None
    traffic: ReleaseTraffic

    def __init__(self, name: str, args: ReleaseArgs, *, load_balancer: LoadBalancer,
                 load_balancer_args: LoadBalancerArgs, vpc_id: pulumi.Input[str],
                 alb_security_group_id: pulumi.Input[str], private_subnet_ids: pulumi.Input[Sequence[str]],
                 nat_public_ips: pulumi.Input[Sequence[str]], log_kms_key_arn: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Release", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        primary = load_balancer.target_group

        self.alternate_target_group = target_group(
            bounded_name(args.name_prefix, "tg-alt", TARGET_GROUP_NAME_MAX), load_balancer_args, vpc_id, child)
        weights = aws.lb.ListenerRuleActionArgs(type="forward", forward=aws.lb.ListenerRuleActionForwardArgs(
            target_groups=[
                aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=primary.arn, weight=100),
                aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=self.alternate_target_group.arn, weight=0),
            ]))
        every_path = [aws.lb.ListenerRuleConditionArgs(
            path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=["/*"]))]
        ecs_owns_weights = pulumi.ResourceOptions(parent=self, ignore_changes=["actions"])
        # The listener that forwards (HTTPS with a certificate; HTTP otherwise): ECS refuses a listener that
        # mixes forward with redirect actions.
        serving = load_balancer.https_listener or load_balancer.http_listener
        self.production_rule = aws.lb.ListenerRule(
            f"{name}-production", listener_arn=serving.arn, priority=RULE_PRIORITY, actions=[weights],
            conditions=every_path, opts=ecs_owns_weights)
        self.test_listener = aws.lb.Listener(
            f"{name}-test", load_balancer_arn=load_balancer.load_balancer.arn, port=args.test_listener_port,
            # TLS like production when the stack has a certificate (the check verifies the chain, not the name:
            # it calls the load balancer's own DNS name, which the certificate does not list).
            protocol="HTTPS" if args.certificate_arn else "HTTP",
            ssl_policy=TLS_POLICY if args.certificate_arn else None,
            certificate_arn=args.certificate_arn or None,
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=primary.arn)],
            opts=child)
        self.test_rule = aws.lb.ListenerRule(
            f"{name}-test", listener_arn=self.test_listener.arn, priority=RULE_PRIORITY, actions=[weights],
            conditions=every_path, opts=ecs_owns_weights)

        port = args.test_listener_port
        self.nat_addresses = aws.ec2.ManagedPrefixList(
            f"{name}-nat", name=f"{args.name_prefix}-nat-egress", address_family="IPv4",
            max_entries=NAT_PREFIX_LIST_ENTRIES,
            entries=pulumi.Output.from_input(nat_public_ips).apply(lambda ips: [
                aws.ec2.ManagedPrefixListEntryArgs(cidr=f"{ip}/32", description="NAT gateway of the stack")
                for ip in sorted(ips or [])]),
            opts=child)
        self.test_ingress_rules = [aws.vpc.SecurityGroupIngressRule(
            f"{name}-test-in-nat", security_group_id=alb_security_group_id,
            description=f"Release check (through the NAT gateways) to the test listener on {port}",
            ip_protocol="tcp", from_port=port, to_port=port, prefix_list_id=self.nat_addresses.id, opts=child)]
        self.test_ingress_rules += [aws.vpc.SecurityGroupIngressRule(
            f"{name}-test-in-{cidr_key(cidr)}", security_group_id=alb_security_group_id,
            description=f"Testers to the test listener on {port} from {cidr}",
            ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4=cidr, opts=child)
            for cidr in args.test_cidrs]

        self.infrastructure_role = aws.iam.Role(
            bounded_name(args.name_prefix, "ecs-lb", IAM_ROLE_NAME_MAX),
            assume_role_policy=assume_role_policy("ecs.amazonaws.com"),
            description="ECS moves traffic between the blue and green target groups during releases",
            opts=child)
        self.infrastructure_attachment = aws.iam.RolePolicyAttachment(
            f"{name}-ecs-lb-policy", role=self.infrastructure_role.name, policy_arn=LOAD_BALANCER_POLICY,
            opts=child)

        self.check_function = self.check_role = self.check_security_group = self.hook_role = self.hook_policy = None
        scheme = "https" if args.certificate_arn else "http"
        self.test_url = pulumi.Output.concat(scheme, "://", load_balancer.load_balancer.dns_name, ":", str(port))
        if args.check:
            self._release_check(name, args, args.check, self.test_url, vpc_id, private_subnet_ids, log_kms_key_arn)

        self.traffic = ReleaseTraffic(
            alternate_target_group_arn=self.alternate_target_group.arn,
            production_listener_rule_arn=self.production_rule.arn,
            test_listener_rule_arn=self.test_rule.arn,
            role_arn=self.infrastructure_role.arn,
            hook_function_arn=self.check_function.arn if self.check_function else None,
            hook_role_arn=self.hook_role.arn if self.hook_role else None,
        )
        self.register_outputs({"testListenerPort": port})

    def _release_check(self, name: str, args: ReleaseArgs, check: ReleaseCheckArgs, test_url: pulumi.Output[str],
                       vpc_id: pulumi.Input[str], private_subnet_ids: pulumi.Input[Sequence[str]],
                       log_kms_key_arn: pulumi.Input[str] | None) -> None:
        child = pulumi.ResourceOptions(parent=self)
        port = args.test_listener_port
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-check-logs", name_prefix=f"/aws/lambda/{args.name_prefix}-release-check-",
            retention_in_days=check.log_retention_days, kms_key_id=log_kms_key_arn, opts=child)
        self.check_security_group = aws.ec2.SecurityGroup(
            f"{name}-check", description="Release check: HTTP to the test listener only", vpc_id=vpc_id,
            tags={"Name": f"{args.name_prefix}-release-check"}, opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-check-out-test", security_group_id=self.check_security_group.id,
            description=f"Release check to the load balancer's test listener on {port} (its public addresses)",
            ip_protocol="tcp", from_port=port, to_port=port, cidr_ipv4="0.0.0.0/0", opts=child)

        identity = aws.get_caller_identity_output()
        region = aws.get_region_output()
        ec2_arn = pulumi.Output.concat("arn:aws:ec2:", region.region, ":", identity.account_id, ":")
        self.check_role = aws.iam.Role(
            bounded_name(args.name_prefix, "release-check", IAM_ROLE_NAME_MAX),
            assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            description="Release check: write its own logs, attach to the VPC", opts=child)
        # Logs of its own group, and the network interfaces Lambda creates for a function in a VPC
        # (AWSLambdaVPCAccessExecutionRole's actions, narrowed to this function's group and interfaces).
        policy = pulumi.Output.all(log_group.arn, ec2_arn, self.check_security_group.id).apply(
            lambda values: json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": f"{values[0]}:*"},
                {"Effect": "Allow", "Action": "ec2:CreateNetworkInterface",
                 "Resource": [f"{values[1]}network-interface/*", f"{values[1]}subnet/*",
                              f"{values[1]}security-group/{values[2]}"]},
                {"Effect": "Allow", "Action": ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                                               "ec2:UnassignPrivateIpAddresses"],
                 "Resource": f"{values[1]}network-interface/*"},
                {"Effect": "Allow", "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
                 "Resource": "*"},
            ]}))
        check_policy = aws.iam.RolePolicy(f"{name}-check-policy", role=self.check_role.id, policy=policy,
                                          opts=child)
        self.check_function = aws.lambda_.Function(
            f"{name}-check",
            role=self.check_role.arn,
            runtime="python3.12",
            handler="check.handler",
            # The check and the smoke set, packaged from the repository on every `pulumi up`.
            code=pulumi.AssetArchive({"check.py": pulumi.FileAsset(str(CHECK_SOURCE)),
                                      "smoke.json": pulumi.FileAsset(str(SMOKE_SET))}),
            timeout=CHECK_TIMEOUT_SECONDS,
            memory_size=128,
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=private_subnet_ids, security_group_ids=[self.check_security_group.id]),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                "TEST_URL": test_url,
                "MIN_ACCURACY_PERCENT": str(check.min_accuracy_percent),
                "P99_MS": str(check.p99_ms),
            }),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[check_policy]),
        )
        self.hook_role = aws.iam.Role(
            bounded_name(args.name_prefix, "release-hook", IAM_ROLE_NAME_MAX),
            assume_role_policy=assume_role_policy("ecs.amazonaws.com"),
            description="ECS invokes the release check during releases", opts=child)
        self.hook_policy = aws.iam.RolePolicy(
            f"{name}-hook-policy", role=self.hook_role.id,
            policy=self.check_function.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn}]})),
            opts=child)
