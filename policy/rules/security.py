"""Security and reliability policies: the rules of shared/notes/security-and-reliability-rules.md that apply
to resources this project creates. Each description ends with the rule's sources (Checkov CKV_*, AWS
Security Hub controls SH, Pulumi awsguard AG, the ECS best-practices guide BP).

Not enforced: WAF on the ALB (CKV2_AWS_28, SH ELB.16) is optional by the rules and documented instead.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy import Policy, PolicyResource, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .common import (
    SECURITY,
    ResourceCheck,
    StackView,
    as_list,
    as_map,
    container_definitions,
    container_label,
    falsy,
    json_value,
    number,
    resource_policy,
    stack_policy,
    truthy,
)

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
CLUSTER = "aws:ecs/cluster:Cluster"
CAPACITY_PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
SCALABLE_TARGET = "aws:appautoscaling/target:Target"
SCHEDULED_ACTION = "aws:appautoscaling/scheduledAction:ScheduledAction"
ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
TARGET_GROUPS = ("aws:lb/targetGroup:TargetGroup", "aws:alb/targetGroup:TargetGroup")
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ROLE_POLICY_ATTACHMENTS = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
IAM_POLICY_DOCUMENTS = ("aws:iam/policy:Policy", ROLE_POLICY, "aws:iam/userPolicy:UserPolicy",
                        "aws:iam/groupPolicy:GroupPolicy")
IAM_ATTACHMENTS = (ROLE_POLICY_ATTACHMENT, "aws:iam/policyAttachment:PolicyAttachment",
                   "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                   "aws:iam/groupPolicyAttachment:GroupPolicyAttachment")
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
KMS_KEY = "aws:kms/key:Key"

WORLD = ("0.0.0.0/0", "::/0")
LISTENER_PORTS = (80, 443)
# TLS 1.2 minimum with TLS 1.3 (SH ELB.17's list): ELBSecurityPolicy-TLS13-1-2-2021-06 and newer variants.
MODERN_TLS_POLICY = re.compile(r"^ELBSecurityPolicy-TLS13-1-[23]-")
ADMIN_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(AdministratorAccess|PowerUserAccess|IAMFullAccess)$")
TRUSTED_SERVICES = ("ecs-tasks.amazonaws.com", "ec2.amazonaws.com")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ECS_ENGINE_AUTH_DATA"
                         r"|AWS_ACCESS_KEY_ID", re.IGNORECASE)
ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA|A3T[A-Z0-9])[A-Z0-9]{16}\b")
SECRET_ASSIGNMENT = re.compile(
    r"\b[A-Za-z0-9_]*(SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|ECS_ENGINE_AUTH_DATA)[A-Za-z0-9_]*"
    r"\s*[=:]\s*\S+", re.IGNORECASE)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
ROOT_USERS = ("root", "0")
ONE_YEAR_DAYS = 365


# --- ECR --------------------------------------------------------------------------------------------------

def _scan_on_push(args: ResourceValidationArgs) -> Iterator[str]:
    if not truthy(as_map(args.props.get("imageScanningConfiguration")).get("scanOnPush")):
        yield "imageScanningConfiguration.scanOnPush must be true, so every pushed image is scanned for CVEs"


def _immutable_tags(args: ResourceValidationArgs) -> Iterator[str]:
    mutability = args.props.get("imageTagMutability") or "MUTABLE"
    if not str(mutability).startswith("IMMUTABLE"):
        yield f"imageTagMutability is {mutability}: a pushed tag can be overwritten; use IMMUTABLE"


def _ecr_kms(args: ResourceValidationArgs) -> Iterator[str]:
    kinds = [as_map(e).get("encryptionType") for e in as_list(args.props.get("encryptionConfigurations"))]
    if not any(kind in ("KMS", "KMS_DSSE") for kind in kinds):
        yield "encryptionConfigurations must set encryptionType KMS (the default is AES256 with an AWS-owned key)"


def _ecr_lifecycle(stack: StackView) -> Iterator[tuple[str, str]]:
    for repository in stack.of_type(REPOSITORY):
        if not stack.referrers(repository, "repository", LIFECYCLE_POLICY):
            yield (f"repository '{repository.name}' has no aws.ecr.LifecyclePolicy: untagged and old images pile up",
                   repository.urn)


# --- ECS cluster and capacity -----------------------------------------------------------------------------

def _container_insights(args: ResourceValidationArgs) -> Iterator[str]:
    settings = {as_map(s).get("name"): as_map(s).get("value") for s in as_list(args.props.get("settings"))}
    if settings.get("containerInsights") not in ("enabled", "enhanced"):
        yield "settings must include containerInsights = enabled (or enhanced)"


def _asg_provider(args: ResourceValidationArgs) -> Mapping[str, Any]:
    return as_map(args.props.get("autoScalingGroupProvider"))


def _termination_protection(args: ResourceValidationArgs) -> Iterator[str]:
    if _asg_provider(args).get("managedTerminationProtection") != "ENABLED":
        yield ("autoScalingGroupProvider.managedTerminationProtection must be ENABLED, so scale-in never "
               "terminates an instance that still runs tasks")


def _managed_draining(args: ResourceValidationArgs) -> Iterator[str]:
    if _asg_provider(args).get("managedDraining") != "ENABLED":
        yield "autoScalingGroupProvider.managedDraining must be ENABLED, so tasks move off an instance before it goes"


def _asg_multi_az(args: ResourceValidationArgs) -> Iterator[str]:
    props = args.props
    zones = max(len(as_list(props.get("vpcZoneIdentifiers"))), len(as_list(props.get("availabilityZones"))))
    if zones < 2:
        yield f"the group spans {zones} subnet(s)/zone(s); use at least two availability zones"
    if props.get("launchConfiguration") or not (props.get("launchTemplate") or props.get("mixedInstancesPolicy")):
        yield "the group must launch from a launch template (launch configurations are deprecated)"


# --- Launch template --------------------------------------------------------------------------------------

def _imdsv2(args: ResourceValidationArgs) -> Iterator[str]:
    metadata = as_map(args.props.get("metadataOptions"))
    if metadata.get("httpEndpoint") == "disabled":
        return
    if metadata.get("httpTokens") != "required":
        tokens = metadata.get("httpTokens") or "unset (optional)"
        yield f"metadataOptions.httpTokens is {tokens}: IMDSv2 must be required"
    hops = number(metadata.get("httpPutResponseHopLimit"))
    if hops is not None and hops > 1:
        yield f"metadataOptions.httpPutResponseHopLimit is {hops:g}: containers could reach the instance role; use 1"


def _no_public_ip(args: ResourceValidationArgs) -> Iterator[str]:
    interfaces = [as_map(n) for n in as_list(args.props.get("networkInterfaces"))]
    if not interfaces:
        yield "networkInterfaces must set associatePublicIpAddress false (otherwise the subnet decides)"
    for index, interface in enumerate(interfaces):
        if not falsy(interface.get("associatePublicIpAddress")):
            yield f"networkInterfaces[{index}].associatePublicIpAddress must be false: instances stay private"


def _encrypted_ebs(args: ResourceValidationArgs) -> Iterator[str]:
    mappings = [as_map(m) for m in as_list(args.props.get("blockDeviceMappings"))]
    volumes = [(m.get("deviceName"), as_map(m.get("ebs"))) for m in mappings if m.get("ebs") is not None]
    if not volumes:
        yield "blockDeviceMappings must declare the root volume with ebs.encrypted true"
    for device, ebs in volumes:
        if not truthy(ebs.get("encrypted")):
            yield f"EBS volume {device} must set encrypted true"


def _decoded_user_data(raw: str) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return raw


def _user_data_secrets(args: ResourceValidationArgs) -> Iterator[str]:
    raw = args.props.get("userData")
    if not isinstance(raw, str) or not raw:
        return
    text = _decoded_user_data(raw)
    for pattern, what in ((ACCESS_KEY_ID, "an AWS access key ID"), (PRIVATE_KEY, "a private key"),
                          (SECRET_ASSIGNMENT, "a secret-looking assignment")):
        found = pattern.search(text)
        if found:
            shown = found.group(0).split("=")[0].split(":")[0].strip()[:40]
            yield f"userData contains {what} ({shown}...): pass secrets through SSM or Secrets Manager"


# --- Task definition --------------------------------------------------------------------------------------

def _containers(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for index, container in enumerate(container_definitions(args.props)):
        yield container_label(container, index), container


def _not_privileged(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        if truthy(container.get("privileged")):
            yield f"{label} is privileged: it has root on the instance"


def _read_only_root(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        if not truthy(container.get("readonlyRootFilesystem")):
            yield f"{label} must set readonlyRootFilesystem true (mount a scratch volume for writable paths)"


def _awsvpc(args: ResourceValidationArgs) -> Iterator[str]:
    mode = args.props.get("networkMode") or "bridge"
    if mode != "awsvpc":
        yield f"networkMode is {mode}: use awsvpc (own ENI and security group per task; never the host's network)"
    for namespace in ("pidMode", "ipcMode"):
        if args.props.get(namespace) == "host":
            yield f"{namespace} is host: containers would share the instance's {namespace[:3].upper()} namespace"


def _non_root(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        user = str(container.get("user") or "")
        if not user:
            yield f"{label} sets no user: it runs as the image's USER, root unless the image says otherwise"
        elif user.split(":", maxsplit=1)[0] in ROOT_USERS:
            yield f"{label} runs as {user}: use a non-root uid"


def _logging(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        config = as_map(container.get("logConfiguration"))
        if config.get("logDriver") != "awslogs" or not as_map(config.get("options")).get("awslogs-group"):
            yield f"{label} must log with the awslogs driver to a log group (logConfiguration)"


def _environment_secrets(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        for variable in as_list(container.get("environment")):
            name, value = str(as_map(variable).get("name") or ""), str(as_map(variable).get("value") or "")
            if SECRET_NAME.search(name) or ACCESS_KEY_ID.search(value):
                yield f"{label} passes {name} as a plain environment variable: use `secrets` (Secrets Manager/SSM)"


def _separate_roles(args: ResourceValidationArgs) -> Iterator[str]:
    execution, task = args.props.get("executionRoleArn"), args.props.get("taskRoleArn")
    if execution and task and execution == task:
        yield "executionRoleArn and taskRoleArn are the same role: the model would hold the agent's permissions"


# --- Service ----------------------------------------------------------------------------------------------

def _service_no_public_ip(args: ResourceValidationArgs) -> Iterator[str]:
    if truthy(as_map(args.props.get("networkConfiguration")).get("assignPublicIp")):
        yield "networkConfiguration.assignPublicIp must be false: tasks are reached through the load balancer only"


def _circuit_breaker(args: ResourceValidationArgs) -> Iterator[str]:
    if as_map(args.props.get("deploymentController")).get("type") not in (None, "ECS"):
        return
    breaker = as_map(args.props.get("deploymentCircuitBreaker"))
    if not (truthy(breaker.get("enable")) and truthy(breaker.get("rollback"))):
        yield "deploymentCircuitBreaker must set enable and rollback true, so a failing deployment rolls back"


def _deployment_percentages(args: ResourceValidationArgs) -> Iterator[str]:
    minimum = number(args.props.get("deploymentMinimumHealthyPercent"))
    maximum = number(args.props.get("deploymentMaximumPercent"))
    if minimum is not None and minimum < 100:
        yield f"deploymentMinimumHealthyPercent is {minimum:g}: use 100 so a deployment never lowers capacity"
    if maximum is not None and maximum < 200:
        yield f"deploymentMaximumPercent is {maximum:g}: use 200 so a deployment can start a full new set"


def _grace_period_set(args: ResourceValidationArgs) -> Iterator[str]:
    if as_list(args.props.get("loadBalancers")) and not number(args.props.get("healthCheckGracePeriodSeconds")):
        yield "healthCheckGracePeriodSeconds must be set: without it the ALB kills tasks still loading the model"


def _az_spread(args: ResourceValidationArgs) -> Iterator[str]:
    if args.props.get("launchType") == "FARGATE" or args.props.get("schedulingStrategy") == "DAEMON":
        return
    spread = [as_map(s) for s in as_list(args.props.get("orderedPlacementStrategies"))
              if as_map(s).get("type") == "spread"]
    if not any(s.get("field") == "attribute:ecs.availability-zone" for s in spread):
        yield "orderedPlacementStrategies must spread on attribute:ecs.availability-zone"


def _min_two_tasks(args: ResourceValidationArgs) -> Iterator[str]:
    props = args.props
    if args.resource_type == SERVICE:
        desired = number(props.get("desiredCount"))
        if props.get("schedulingStrategy") != "DAEMON" and desired is not None and desired < 2:
            yield f"desiredCount is {desired:g}: run at least 2 tasks so one can fail"
    elif props.get("serviceNamespace") == "ecs" and props.get("scalableDimension") == "ecs:service:DesiredCount":
        scheduled = args.resource_type == SCHEDULED_ACTION
        minimum = number(as_map(props.get("scalableTargetAction")).get("minCapacity") if scheduled
                         else props.get("minCapacity"))
        if scheduled and minimum is not None and minimum < 2:
            yield f"the schedule {props.get('schedule')} sets minCapacity {minimum:g}: the service must keep 2+ tasks"
        elif not scheduled and (minimum is None or minimum < 2):
            yield f"minCapacity is {minimum if minimum is None else f'{minimum:g}'}: autoscaling must keep 2+ tasks"


# --- Load balancer ----------------------------------------------------------------------------------------

def _https_redirect(stack: StackView) -> Iterator[tuple[str, str]]:
    """Once a load balancer terminates TLS (a certificate exists), its HTTP listeners only redirect to it."""
    listeners = stack.of_type(*LISTENERS)
    secured = {lb.urn for listener in listeners if listener.props.get("protocol") == "HTTPS"
               for lb in stack.linked(listener, "loadBalancerArn")}
    for listener in listeners:
        if listener.props.get("protocol") != "HTTP":
            continue
        if not {lb.urn for lb in stack.linked(listener, "loadBalancerArn")} & secured:
            continue
        actions = [as_map(a) for a in as_list(listener.props.get("defaultActions"))]
        redirects = [as_map(a.get("redirect")) for a in actions if a.get("type") == "redirect"]
        if not any(r.get("protocol") == "HTTPS" for r in redirects):
            port = number(listener.props.get("port"))
            yield (f"HTTP listener '{listener.name}' on port {port if port is None else f'{port:g}'} serves plain "
                   "HTTP beside an HTTPS listener instead of redirecting (301) to it", listener.urn)


def _tls_policy(args: ResourceValidationArgs) -> Iterator[str]:
    if args.props.get("protocol") != "HTTPS":
        return
    policy = str(args.props.get("sslPolicy") or "")
    if not MODERN_TLS_POLICY.match(policy):
        yield f"sslPolicy is {policy or 'unset (ELBSecurityPolicy-2016-08, TLS 1.0)'}: use " \
              "ELBSecurityPolicy-TLS13-1-2-2021-06 or newer"


def _is_application_lb(args: ResourceValidationArgs) -> bool:
    return (args.props.get("loadBalancerType") or "application") == "application"


def _drop_invalid_headers(args: ResourceValidationArgs) -> Iterator[str]:
    if _is_application_lb(args) and not truthy(args.props.get("dropInvalidHeaderFields")):
        yield "dropInvalidHeaderFields must be true: invalid HTTP headers are dropped, not forwarded"


def _desync_mitigation(args: ResourceValidationArgs) -> Iterator[str]:
    mode = args.props.get("desyncMitigationMode") or "defensive"  # AWS's default
    if _is_application_lb(args) and mode not in ("defensive", "strictest"):
        yield f"desyncMitigationMode is {mode}: use defensive or strictest against HTTP desync"


def _deletion_protection(args: ResourceValidationArgs) -> Iterator[str]:
    if not truthy(args.props.get("enableDeletionProtection")):
        yield "enableDeletionProtection must be true: the ALB and its DNS name survive a mistaken delete"


def _access_logs(args: ResourceValidationArgs) -> Iterator[str]:
    logs = as_map(args.props.get("accessLogs"))
    if not (truthy(logs.get("enabled")) and logs.get("bucket")):
        yield "accessLogs must be enabled with a bucket: requests are auditable"


def _lb_multi_az(args: ResourceValidationArgs) -> Iterator[str]:
    subnets = max(len(as_list(args.props.get("subnets"))), len(as_list(args.props.get("subnetMappings"))))
    if subnets < 2:
        yield f"the load balancer has {subnets} subnet(s): use subnets in at least two availability zones"


def _target_group_health_check(args: ResourceValidationArgs) -> Iterator[str]:
    if args.props.get("targetType") == "lambda":
        return
    check = as_map(args.props.get("healthCheck"))
    if not check or falsy(check.get("enabled")):
        yield "healthCheck must be set and enabled"
        return
    missing = [key for key in ("interval", "healthyThreshold", "unhealthyThreshold") if check.get(key) is None]
    if check.get("protocol", "HTTP") in ("HTTP", "HTTPS"):
        missing += [key for key in ("path", "matcher") if not check.get(key)]
    if missing:
        yield "healthCheck must set " + ", ".join(missing) + " explicitly"


def _deregistration_delay(args: ResourceValidationArgs) -> Iterator[str]:
    delay = number(args.props.get("deregistrationDelay"))
    if delay is None or not 30 <= delay <= 60:
        shown = "unset (AWS's 300 s)" if delay is None else f"{delay:g} s"
        yield f"deregistrationDelay is {shown}: use 30-60 s (above the slowest request, far below 300 s)"


# --- Security groups --------------------------------------------------------------------------------------

def _load_balancer_groups(stack: StackView) -> set[str]:
    return {sg.urn for lb in stack.of_type(*LOAD_BALANCERS) for sg in stack.linked(lb, "securityGroups")}


def _ingress(stack: StackView) -> Iterator[tuple[PolicyResource, list[PolicyResource], Mapping[str, Any], str]]:
    """Every ingress permission: (resource declaring it, target groups, rule properties, style)."""
    for rule in stack.of_type(INGRESS_RULE):
        yield rule, stack.linked(rule, "securityGroupId"), rule.props, "standalone"
    for rule in stack.of_type(SG_RULE):
        if rule.props.get("type") == "ingress":
            yield rule, stack.linked(rule, "securityGroupId"), rule.props, "legacy"
    for group in stack.of_type(SECURITY_GROUP):
        for block in as_list(group.props.get("ingress")):
            yield group, [group], as_map(block), "inline"


def _world_open(props: Mapping[str, Any], style: str) -> bool:
    if style == "standalone":
        return props.get("cidrIpv4") in WORLD or props.get("cidrIpv6") in WORLD
    cidrs = as_list(props.get("cidrBlocks")) + as_list(props.get("ipv6CidrBlocks"))
    return any(cidr in WORLD for cidr in cidrs)


def _ports(props: Mapping[str, Any]) -> tuple[float | None, float | None]:
    return number(props.get("fromPort")), number(props.get("toPort"))


def _ingress_only_through_alb(stack: StackView) -> Iterator[tuple[str, str]]:
    alb_groups = _load_balancer_groups(stack)
    for declaring, targets, props, style in _ingress(stack):
        target_names = ", ".join(t.name for t in targets) or "an unknown group"
        from_port, to_port = _ports(props)
        if _world_open(props, style):
            if not targets or any(t.urn not in alb_groups for t in targets):
                yield f"'{declaring.name}' opens {target_names} to the internet: only the ALB's group may be", \
                    declaring.urn
            elif from_port != to_port or from_port not in LISTENER_PORTS or props.get(
                    "ipProtocol", props.get("protocol")) not in ("tcp", "6"):
                yield f"'{declaring.name}' opens ports {from_port}-{to_port} to the internet: only 80 and 443", \
                    declaring.urn
            continue
        if targets and all(t.urn in alb_groups for t in targets):
            continue  # narrower-than-world sources into the ALB are fine
        sources = (stack.linked(declaring, "referencedSecurityGroupId") if style == "standalone"
                   else stack.linked(declaring, "sourceSecurityGroupId") if style == "legacy"
                   else [])
        if not sources or any(s.urn not in alb_groups for s in sources):
            yield (f"'{declaring.name}' lets traffic into {target_names} from a source other than the load "
                   "balancer's security group", declaring.urn)


def _rule_descriptions(args: ResourceValidationArgs) -> Iterator[str]:
    if not args.props.get("description"):
        yield "description must say what the group or rule is for"
    if args.resource_type == SECURITY_GROUP:
        for direction in ("ingress", "egress"):
            for index, block in enumerate(as_list(args.props.get(direction))):
                if not as_map(block).get("description"):
                    yield f"{direction}[{index}] must have a description"


def _one_rule_style(stack: StackView) -> Iterator[tuple[str, str]]:
    for group in stack.of_type(SECURITY_GROUP):
        inline = as_list(group.props.get("ingress")) + as_list(group.props.get("egress"))
        standalone = stack.referrers(group, "securityGroupId", INGRESS_RULE, EGRESS_RULE, SG_RULE)
        if inline and standalone:
            yield (f"security group '{group.name}' has inline rules and standalone rules "
                   f"({', '.join(r.name for r in standalone)}): they overwrite each other", group.urn)
    for role in stack.of_type(ROLE):
        checks = (("inlinePolicies", ROLE_POLICY), ("managedPolicyArns", ROLE_POLICY_ATTACHMENT))
        for inline_prop, standalone_type in checks:
            standalone = stack.referrers(role, "role", standalone_type, ROLE_POLICY_ATTACHMENTS)
            if as_list(role.props.get(inline_prop)) and standalone:
                yield (f"role '{role.name}' sets {inline_prop} and has standalone "
                       f"{', '.join(r.name for r in standalone)}: one style per role", role.urn)


# --- IAM --------------------------------------------------------------------------------------------------

def _statements(document: Any) -> list[Mapping[str, Any]]:
    return [as_map(s) for s in as_list(as_map(json_value(document)).get("Statement"))]


def _wildcard_findings(document: Any, where: str) -> Iterator[str]:
    for index, statement in enumerate(_statements(document)):
        if statement.get("Effect") != "Allow":
            continue
        if statement.get("NotAction") is not None:
            yield f"{where} statement {index} allows NotAction: it grants everything not listed"
        for action in as_list(statement.get("Action")):
            if action in ("*", "*:*"):
                yield f"{where} statement {index} allows every action (*): administrator access"
            elif isinstance(action, str) and action.endswith(":*"):
                yield f"{where} statement {index} allows {action}: every action of the service"


def _no_wildcards_or_admin(args: ResourceValidationArgs) -> Iterator[str]:
    props, kind = args.props, args.resource_type
    if kind in IAM_POLICY_DOCUMENTS:
        yield from _wildcard_findings(props.get("policy"), "policy")
    elif kind == ROLE:
        for inline in as_list(props.get("inlinePolicies")):
            yield from _wildcard_findings(as_map(inline).get("policy"), f"inline policy {as_map(inline).get('name')}")
        for arn in as_list(props.get("managedPolicyArns")):
            if ADMIN_POLICY.match(str(arn)):
                yield f"managedPolicyArns grants {arn}"
    elif ADMIN_POLICY.match(str(props.get("policyArn") or "")):
        yield f"attaches {props.get('policyArn')}: scope the permissions instead"


def _trust_scoped(args: ResourceValidationArgs) -> Iterator[str]:
    for index, statement in enumerate(_statements(args.props.get("assumeRolePolicy"))):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        services = as_list(as_map(principal).get("Service"))
        others = [key for key in as_map(principal) if key != "Service"]
        if principal == "*" or others or not services:
            yield f"trust statement {index} lets {principal} assume the role: trust only an AWS service principal"
        for service in services:
            if service not in TRUSTED_SERVICES:
                yield f"trust statement {index} trusts {service}: only {' / '.join(TRUSTED_SERVICES)} run this stack"
        actions = as_list(statement.get("Action"))
        if any(a in ("*", "sts:*") for a in actions):
            yield f"trust statement {index} allows {actions}: allow only sts:AssumeRole"


# --- Logs and keys ----------------------------------------------------------------------------------------

def _retention_set(args: ResourceValidationArgs) -> Iterator[str]:
    if not number(args.props.get("retentionInDays")):
        yield "retentionInDays must be set: logs otherwise never expire and cost grows without bound"


def _retention_one_year(args: ResourceValidationArgs) -> Iterator[str]:
    days = number(args.props.get("retentionInDays"))
    if days and days < ONE_YEAR_DAYS:
        yield f"retentionInDays is {days:g}: keep logs for at least {ONE_YEAR_DAYS} days"


def _log_group_kms(args: ResourceValidationArgs) -> Iterator[str]:
    if not args.props.get("kmsKeyId"):
        yield "kmsKeyId must name a customer-managed KMS key"


def _key_rotation(args: ResourceValidationArgs) -> Iterator[str]:
    spec = args.props.get("customerMasterKeySpec") or args.props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and not truthy(args.props.get("enableKeyRotation")):
        yield "enableKeyRotation must be true"


def _high(name: str, description: str, types: Iterable[str], check: ResourceCheck,
          remediation: str) -> ResourceValidationPolicy:
    return resource_policy(name, description, types, check, tag=SECURITY, severity=Severity.HIGH,
                           remediation=remediation)


def _medium(name: str, description: str, types: Iterable[str], check: ResourceCheck,
            remediation: str) -> ResourceValidationPolicy:
    return resource_policy(name, description, types, check, tag=SECURITY, severity=Severity.MEDIUM,
                           remediation=remediation)


POLICIES: list[Policy] = [
    _high("ecr-scan-on-push", "ECR repositories scan images on push. Sources: CKV_AWS_163, SH ECR.1.",
          [REPOSITORY], _scan_on_push, "Set image_scanning_configuration.scan_on_push=True."),
    _medium("ecr-immutable-tags", "ECR image tags are immutable. Sources: CKV_AWS_51, SH ECR.2.",
            [REPOSITORY], _immutable_tags, "Set image_tag_mutability='IMMUTABLE' and deploy version tags or digests."),
    _medium("ecr-kms-encryption", "ECR repositories are encrypted with KMS. Sources: CKV_AWS_136.",
            [REPOSITORY], _ecr_kms, "Set encryption_configurations=[{encryption_type: 'KMS'}]."),
    stack_policy("ecr-lifecycle-policy", "Every ECR repository has a lifecycle policy. Sources: SH ECR.3.",
                 _ecr_lifecycle, tag=SECURITY, severity=Severity.MEDIUM,
                 remediation="Add an aws.ecr.LifecyclePolicy for the repository."),
    _medium("ecs-container-insights", "ECS clusters enable Container Insights. Sources: CKV_AWS_65, SH ECS.12.",
            [CLUSTER], _container_insights, "Set settings=[{name: 'containerInsights', value: 'enabled'}]."),
    _high("ecs-managed-termination-protection",
          "Capacity providers enable managed termination protection. Sources: SH ECS.19.",
          [CAPACITY_PROVIDER], _termination_protection,
          "Set managed_termination_protection='ENABLED' (with managed scaling and a scale-in-protected group)."),
    _medium("ecs-managed-draining", "Capacity providers enable managed instance draining. Sources: BP.",
            [CAPACITY_PROVIDER], _managed_draining, "Set managed_draining='ENABLED'."),
    _medium("asg-multi-az-launch-template",
            "Auto Scaling groups span 2+ availability zones and use a launch template. "
            "Sources: SH AutoScaling.2, SH AutoScaling.9.",
            [ASG], _asg_multi_az, "Give the group subnets in two or more AZs and a launch_template."),
    _high("launch-template-imdsv2",
          "Launch templates require IMDSv2 with a hop limit of 1. "
          "Sources: CKV_AWS_79, CKV_AWS_341, SH EC2.170, SH AutoScaling.3, SH AutoScaling.4.",
          [LAUNCH_TEMPLATE], _imdsv2, "Set metadata_options http_tokens='required', http_put_response_hop_limit=1."),
    _high("launch-template-no-public-ip",
          "Container instances get no public IP address. Sources: CKV_AWS_88, SH AutoScaling.5.",
          [LAUNCH_TEMPLATE], _no_public_ip, "Set network_interfaces[].associate_public_ip_address='false'."),
    _high("launch-template-encrypted-ebs",
          "Container instance volumes are encrypted. Sources: CKV_AWS_8, CKV_AWS_189, SH EC2.3.",
          [LAUNCH_TEMPLATE], _encrypted_ebs, "Declare the root block device with ebs.encrypted='true'."),
    _high("launch-template-no-user-data-secrets",
          "Instance user data holds no secrets. Sources: CKV_AWS_46.",
          [LAUNCH_TEMPLATE], _user_data_secrets, "Read secrets at boot from SSM Parameter Store or Secrets Manager."),
    _high("ecs-no-privileged-containers", "No container runs privileged. Sources: CKV_AWS_334, SH ECS.4.",
          [TASK_DEFINITION], _not_privileged, "Remove privileged=true from the container definition."),
    _medium("ecs-read-only-root-filesystem",
            "Containers run with a read-only root filesystem. Sources: CKV_AWS_336, SH ECS.5.",
            [TASK_DEFINITION], _read_only_root, "Set readOnlyRootFilesystem=true (config) and keep a scratch volume."),
    _high("ecs-task-awsvpc-network-mode",
          "Task definitions use awsvpc and never the host's network, PID or IPC namespace. "
          "Sources: SH ECS.17, SH ECS.3, CKV_AWS_335.",
          [TASK_DEFINITION], _awsvpc, "Set network_mode='awsvpc' and leave pid_mode/ipc_mode unset."),
    _medium("ecs-non-root-user", "Containers run as a non-root user. Sources: SH ECS.20.",
            [TASK_DEFINITION], _non_root, "Set containerUser to a non-root uid[:gid] (config)."),
    _medium("ecs-logging-configured", "Containers log with awslogs to a log group. Sources: SH ECS.9.",
            [TASK_DEFINITION], _logging, "Set logConfiguration.logDriver='awslogs' with awslogs-group."),
    _high("ecs-no-secrets-in-environment",
          "Container environments hold no credentials. Sources: SH ECS.8.",
          [TASK_DEFINITION], _environment_secrets, "Move the value to Secrets Manager and reference it in `secrets`."),
    _medium("ecs-separate-task-and-execution-roles",
            "Task definitions use different execution and task roles. Sources: CKV_AWS_249.",
            [TASK_DEFINITION], _separate_roles, "Give the task its own role, separate from the execution role."),
    _high("ecs-service-no-public-ip", "ECS services assign no public IP to tasks. Sources: CKV_AWS_333, SH ECS.2.",
          [SERVICE], _service_no_public_ip, "Set network_configuration.assign_public_ip=False."),
    _medium("ecs-service-circuit-breaker",
            "ECS services use the deployment circuit breaker with rollback. Sources: BP.",
            [SERVICE], _circuit_breaker, "Set deployment_circuit_breaker enable=True, rollback=True."),
    _medium("ecs-service-deployment-percentages",
            "ECS deployments keep 100% healthy and may run 200%. Sources: BP.",
            [SERVICE], _deployment_percentages,
            "Set deploymentMinimumHealthyPercent=100 and deploymentMaximumPercent=200 (config)."),
    _medium("ecs-service-health-check-grace-period",
            "ECS services behind a load balancer set a health-check grace period. Sources: BP.",
            [SERVICE], _grace_period_set, "Set healthCheckGracePeriodSeconds (config) to cover the model's load time."),
    _medium("ecs-service-az-spread",
            "ECS services spread tasks across availability zones. Sources: BP.",
            [SERVICE], _az_spread, "Add ordered_placement_strategies spread on attribute:ecs.availability-zone."),
    _medium("ecs-service-min-two-tasks",
            "ECS services run at least two tasks, and autoscaling (scheduled actions included) keeps two. Sources: BP.",
            [SERVICE, SCALABLE_TARGET, SCHEDULED_ACTION], _min_two_tasks,
            "Set desiredTaskCount and minTaskCount to 2 or more and no scale-to-zero schedule (config)."),
    stack_policy("alb-http-redirects-to-https",
                 "When a certificate exists (an HTTPS listener), HTTP listeners of that load balancer redirect to "
                 "HTTPS. Sources: SH ELB.1, CKV2_AWS_20, AG.",
                 _https_redirect, tag=SECURITY, severity=Severity.HIGH,
                 remediation="Redirect port 80 (301) to the HTTPS listener: the stack does so when certificateArn "
                             "is set."),
    _high("alb-modern-tls-policy",
          "HTTPS listeners use a TLS 1.2+/1.3 security policy. Sources: SH ELB.17, CKV_AWS_103.",
          LISTENERS, _tls_policy, "Set ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06' or newer."),
    _medium("alb-drop-invalid-headers",
            "ALBs drop invalid HTTP header fields. Sources: CKV_AWS_131, SH ELB.4.",
            LOAD_BALANCERS, _drop_invalid_headers, "Set drop_invalid_header_fields=True."),
    _medium("alb-desync-mitigation",
            "ALBs mitigate HTTP desync in defensive or strictest mode. Sources: CKV_AWS_328, SH ELB.12.",
            LOAD_BALANCERS, _desync_mitigation, "Set desync_mitigation_mode='defensive' or 'strictest'."),
    _medium("alb-deletion-protection",
            "Load balancers have deletion protection. Sources: CKV_AWS_150, SH ELB.6, AG.",
            LOAD_BALANCERS, _deletion_protection, "Set enable_deletion_protection=True (environmentClass prod)."),
    _medium("alb-access-logs", "Load balancers write access logs. Sources: CKV_AWS_91, SH ELB.5, AG.",
            LOAD_BALANCERS, _access_logs, "Set albAccessLogs=true (config)."),
    _medium("alb-multi-az", "Load balancers span 2+ availability zones. Sources: SH ELB.13.",
            LOAD_BALANCERS, _lb_multi_az, "Give the load balancer subnets in two or more AZs."),
    _medium("target-group-health-check",
            "Target groups declare an explicit health check. Sources: CKV_AWS_261, BP.",
            TARGET_GROUPS, _target_group_health_check,
            "Set health_check path, matcher, interval, healthy and unhealthy thresholds."),
    _medium("target-group-deregistration-delay",
            "Target groups drain targets for 30-60 s, not AWS's 300 s. Sources: BP.",
            TARGET_GROUPS, _deregistration_delay, "Set deregistrationDelaySeconds (config) to 30-60."),
    stack_policy("sg-ingress-only-through-alb",
                 "Only the ALB's security group is open to the internet (ports 80/443); tasks and instances accept "
                 "traffic only from the ALB's group. Sources: CKV_AWS_24, CKV_AWS_25, CKV_AWS_260, SH EC2.18, "
                 "SH EC2.19.",
                 _ingress_only_through_alb, tag=SECURITY, severity=Severity.HIGH,
                 remediation="Reference the ALB's security group instead of a CIDR; open only 80/443 on the ALB."),
    _medium("sg-rule-descriptions", "Security groups and every rule carry a description. Sources: CKV_AWS_23.",
            [SECURITY_GROUP, INGRESS_RULE, EGRESS_RULE, SG_RULE], _rule_descriptions, "Add a description."),
    stack_policy("no-inline-and-standalone-rule-mix",
                 "A security group or IAM role uses inline rules/policies or standalone ones, never both. "
                 "Sources: AG.",
                 _one_rule_style, tag=SECURITY, severity=Severity.MEDIUM,
                 remediation="Keep only the standalone resources (SecurityGroupIngressRule, RolePolicyAttachment)."),
    _high("iam-no-wildcard-actions-or-admin",
          "IAM policies grant no `*` or service-wide actions and no administrator policies. "
          "Sources: CKV_AWS_1, CKV_AWS_49, CKV_AWS_62, CKV_AWS_63, CKV_AWS_355, SH IAM.1, SH IAM.21.",
          [*IAM_POLICY_DOCUMENTS, ROLE, *IAM_ATTACHMENTS], _no_wildcards_or_admin,
          "List the actions the workload needs; never attach AdministratorAccess/PowerUserAccess/IAMFullAccess."),
    _high("iam-role-trust-scoped-to-service",
          "IAM roles trust only the ECS tasks or EC2 service principal. Sources: CKV_AWS_60, CKV_AWS_61.",
          [ROLE], _trust_scoped, "Trust ecs-tasks.amazonaws.com or ec2.amazonaws.com with sts:AssumeRole only."),
    _medium("log-group-retention-set", "Log groups set a retention period. Sources: CKV_AWS_66.",
            [LOG_GROUP], _retention_set, "Set logRetentionDays (config)."),
    _medium("log-group-retention-one-year", "Log groups keep logs for at least 365 days. Sources: CKV_AWS_338.",
            [LOG_GROUP], _retention_one_year, "Set logRetentionDays to 365 or more (config)."),
    _medium("log-group-kms", "Log groups are encrypted with a customer-managed KMS key. Sources: CKV_AWS_158.",
            [LOG_GROUP], _log_group_kms, "Set logKmsEncryption=true (config)."),
    _high("kms-key-rotation", "Symmetric KMS keys rotate yearly. Sources: CKV_AWS_7, AG.",
          [KMS_KEY], _key_rotation, "Set enable_key_rotation=True."),
]
