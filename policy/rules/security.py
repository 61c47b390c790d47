"""Security and reliability policies: the rules of shared/notes/security-and-reliability-rules.md that apply
to resources this project creates. Each description ends with the rule's sources (Checkov CKV_*, AWS
Security Hub controls SH, Pulumi awsguard AG, the ECS best-practices guide BP).

Not enforced: WAF on the ALB (CKV2_AWS_28, SH ELB.16) is optional by the rules and documented instead.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
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
from .shared.secret_patterns import SHELL_REFERENCE, is_secret_name, secret_value_kind, secrets_in_text

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
# The exclusive variants list every managed policy of a role, user or group in `policyArns`.
EXCLUSIVE_ATTACHMENTS = (ROLE_POLICY_ATTACHMENTS,
                         "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive",
                         "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive")
IAM_POLICY_DOCUMENTS = ("aws:iam/policy:Policy", ROLE_POLICY, "aws:iam/userPolicy:UserPolicy",
                        "aws:iam/groupPolicy:GroupPolicy")
IAM_ATTACHMENTS = (ROLE_POLICY_ATTACHMENT, "aws:iam/policyAttachment:PolicyAttachment",
                   "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                   "aws:iam/groupPolicyAttachment:GroupPolicyAttachment", *EXCLUSIVE_ATTACHMENTS)
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
KMS_KEY = "aws:kms/key:Key"

WORLD = ("0.0.0.0/0", "::/0")
LISTENER_PORTS = (80, 443)
# TLS 1.2 minimum with TLS 1.3 (SH ELB.17's list): ELBSecurityPolicy-TLS13-1-2-2021-06 and newer variants.
MODERN_TLS_POLICY = re.compile(r"^ELBSecurityPolicy-TLS13-1-[23]-")
# AWS-managed policies that grant administrator or full access to a service (AdministratorAccess, PowerUserAccess,
# IAMFullAccess, AmazonS3FullAccess, AmazonECS_FullAccess, ...), wherever they are attached.
ADMIN_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*"
                          r"(?:AdministratorAccess|PowerUserAccess|\w*FullAccess\w*)$")
# ecs: the load-balancer infrastructure role and the release hook role; lambda: the release check.
TRUSTED_SERVICES = ("ecs-tasks.amazonaws.com", "ec2.amazonaws.com", "ecs.amazonaws.com", "lambda.amazonaws.com")
# Actions that take no resource ARN (AWS's service authorization reference lists them with "*" only), so
# `Resource: "*"` is the only way to grant them; every other action must name its resources (CKV_AWS_355).
UNRESTRICTABLE_ACTIONS = frozenset(a.lower() for a in (
    "ecr:GetAuthorizationToken", "sts:GetCallerIdentity", "cloudwatch:PutMetricData", "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricWidgetImage", "kms:GenerateRandom",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
    "ecs:DiscoverPollEndpoint", "ecs:CreateCluster", "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition",
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel", "ec2messages:GetMessages", "ec2messages:AcknowledgeMessage",
    "ec2messages:SendReply", "ec2messages:GetEndpoint", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
    "s3:ListAllMyBuckets", "kms:ListKeys", "kms:ListAliases", "tag:GetResources", "ssm:DescribeParameters",
    "logs:DescribeLogGroups", "secretsmanager:ListSecrets", "secretsmanager:GetRandomPassword",
))
# Read-only metadata listings: no resource-level permissions for most services, and no data.
METADATA_ACTION = re.compile(r"^[a-z0-9-]+:(Describe|ListAll|List(?!Bucket|Objects|Multipart))[A-Za-z]*\*?$",
                             re.IGNORECASE)
# iam:PassRole beside one of these on any role (`*`) lets the holder run code as any role (CKV_AWS_286).
RUN_ACTIONS = frozenset(a.lower() for a in (
    "ecs:RunTask", "ecs:StartTask", "ecs:CreateService", "ecs:UpdateService", "ecs:RegisterTaskDefinition",
    "ec2:RunInstances", "ec2:RequestSpotInstances", "autoscaling:CreateAutoScalingGroup",
    "autoscaling:CreateLaunchConfiguration", "lambda:CreateFunction", "lambda:UpdateFunctionConfiguration",
    "cloudformation:CreateStack", "cloudformation:UpdateStack", "glue:CreateDevEndpoint", "glue:CreateJob",
    "sagemaker:CreateNotebookInstance", "sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob",
    "codebuild:CreateProject", "datapipeline:CreatePipeline", "batch:SubmitJob", "ec2:CreateLaunchTemplate",
    "ec2:CreateLaunchTemplateVersion",
))
# Linux capabilities that give a container control of the host or its network, as `privileged` does.
PRIVILEGED_CAPABILITIES = frozenset({
    "ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "SYS_BOOT", "SYS_TIME",
    "DAC_READ_SEARCH", "MAC_ADMIN", "MAC_OVERRIDE", "BPF", "PERFMON", "SYSLOG", "LINUX_IMMUTABLE",
})
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

ECS_SETTING = re.compile(r"\b(ECS_[A-Z0-9_]+)=[\"']?([^\s\"']*)")


def ecs_config(user_data: str) -> dict[str, str]:
    """The ECS agent settings user data writes to /etc/ecs/ecs.config (heredoc lines or `echo NAME=value >>`),
    by name; commented-out lines do not count."""
    return {name: value for line in user_data.splitlines() if not line.lstrip().startswith("#")
            for name, value in ECS_SETTING.findall(line)}


def _imdsv2(args: ResourceValidationArgs) -> Iterator[str]:
    metadata = as_map(args.props.get("metadataOptions"))
    if metadata.get("httpEndpoint") == "disabled":
        if ecs_config(decoded_user_data(args.props.get("userData"))):
            yield ("metadataOptions.httpEndpoint is disabled on an ECS container instance: the ECS agent needs "
                   "IMDS (identity, region, credentials); keep it enabled with IMDSv2 and block tasks with "
                   "ECS_AWSVPC_BLOCK_IMDS=true")
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


def decoded_user_data(raw: Any) -> str:
    """User data as text: the provider takes it base64-encoded (`userData`), or as plain text."""
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return raw


def _user_data_secrets(args: ResourceValidationArgs) -> Iterator[str]:
    for what in secrets_in_text(decoded_user_data(args.props.get("userData"))):
        yield f"userData contains {what}: read secrets at boot from SSM Parameter Store or Secrets Manager"


def _tasks_blocked_from_imds(args: ResourceValidationArgs) -> Iterator[str]:
    config = ecs_config(decoded_user_data(args.props.get("userData")))
    if config and config.get("ECS_AWSVPC_BLOCK_IMDS", "").lower() != "true":
        yield ("userData must set ECS_AWSVPC_BLOCK_IMDS=true: awsvpc tasks otherwise reach IMDS and the instance "
               "role's credentials (the hop limit does not stop them)")


# --- Task definition --------------------------------------------------------------------------------------

def _containers(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for index, container in enumerate(container_definitions(args.props)):
        yield container_label(container, index), container


def _not_privileged(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        if truthy(container.get("privileged")):
            yield f"{label} is privileged: it has root on the instance"
        linux = as_map(container.get("linuxParameters"))
        added = {str(c).upper().removeprefix("CAP_") for c in as_list(as_map(linux.get("capabilities")).get("add"))}
        for capability in sorted(added & PRIVILEGED_CAPABILITIES):
            yield f"{label} adds the Linux capability {capability}: as good as privileged on the instance"
        if as_list(linux.get("devices")):
            yield f"{label} maps host devices (linuxParameters.devices): it reaches the instance's hardware"


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
        driver = config.get("logDriver")
        if driver == "awsfirelens" and any(as_map(c.get("firelensConfiguration"))
                                           for _, c in _containers(args)):
            continue  # FireLens: the log router container of the same task ships the logs
        if driver != "awslogs" or not as_map(config.get("options")).get("awslogs-group"):
            yield (f"{label} must log with the awslogs driver to a log group, or through a FireLens log router "
                   "(logConfiguration)")


def _environment_secrets(args: ResourceValidationArgs) -> Iterator[str]:
    for label, container in _containers(args):
        for variable in as_list(container.get("environment")):
            name, value = str(as_map(variable).get("name") or ""), str(as_map(variable).get("value") or "")
            kind = secret_value_kind(value)
            if is_secret_name(name) or kind:
                what = f" ({kind})" if kind else ""
                yield (f"{label} passes {name}{what} as a plain environment variable: use `secrets` "
                       "(Secrets Manager/SSM)")
        for field in ("command", "entryPoint"):
            for what in _command_secrets([str(part) for part in as_list(container.get(field))]):
                yield f"{label} has {what} in its {field}: pass it through `secrets` and read it from the environment"


def _command_secrets(parts: list[str]) -> list[str]:
    """Credentials in a command line: what `secrets_in_text` finds, and `--flag value` pairs with a secret flag
    name (`--hf-token hf_...`), which have no `=` to find."""
    found = secrets_in_text(" ".join(parts))
    for flag, value in itertools.pairwise(parts):
        name = flag.lstrip("-")
        if flag.startswith("-") and "=" not in flag and is_secret_name(name) and not SHELL_REFERENCE.match(value):
            found.append(f"a value passed as {flag}")
    return found


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
    # ECS rounds the maximum down and the minimum up: a deployment must be able to run one task more than it keeps.
    # A maximum below 200 only makes deployments slower (fewer new tasks at once); none above the minimum stalls them.
    maximum, minimum = (200 if maximum is None else maximum), (100 if minimum is None else minimum)
    tasks = number(args.props.get("desiredCount")) or 0
    if maximum <= minimum or (tasks and math.floor(tasks * maximum / 100) <= math.ceil(tasks * minimum / 100)):
        shown = f" of {tasks:g} tasks" if tasks else ""
        yield (f"deploymentMaximumPercent {maximum:g}{shown} leaves no room above deploymentMinimumHealthyPercent "
               f"{minimum:g}: a deployment can neither start a new task nor stop an old one; raise it (200 is "
               "AWS's default)")


def _grace_period_set(args: ResourceValidationArgs) -> Iterator[str]:
    if as_list(args.props.get("loadBalancers")) and not number(args.props.get("healthCheckGracePeriodSeconds")):
        yield "healthCheckGracePeriodSeconds must be set: without it the ALB kills tasks still loading the model"


def _az_spread(args: ResourceValidationArgs) -> Iterator[str]:
    subnets = as_list(as_map(args.props.get("networkConfiguration")).get("subnets"))
    if args.props.get("networkConfiguration") is not None and len(set(map(str, subnets))) < 2:
        yield (f"networkConfiguration.subnets has {len(set(map(str, subnets)))} subnet(s): tasks in one subnet live "
               "in one availability zone; give the service subnets in two or more")
    if args.props.get("launchType") == "FARGATE" or args.props.get("schedulingStrategy") == "DAEMON":
        return
    strategies = [as_map(s) for s in as_list(args.props.get("orderedPlacementStrategies"))]
    az = [i for i, s in enumerate(strategies)
          if s.get("type") == "spread" and s.get("field") == "attribute:ecs.availability-zone"]
    if not az:
        yield "orderedPlacementStrategies must spread on attribute:ecs.availability-zone"
    elif any(s.get("type") in ("binpack", "random") for s in strategies[:az[0]]):
        yield ("orderedPlacementStrategies binpack (or random) before spreading across availability zones: tasks "
               "pack into one zone; put the availability-zone spread first")


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


def _https_on_443(args: ResourceValidationArgs) -> Iterator[str]:
    port, protocol = number(args.props.get("port")), args.props.get("protocol")
    if port == 443 and protocol in ("HTTP", None):
        yield ("the listener on port 443 serves plain HTTP: clients expecting TLS get cleartext; use protocol "
               "HTTPS with a certificate")


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
    errors = _error_codes(str(check.get("matcher") or ""))
    if errors:
        yield (f"healthCheck.matcher {check.get('matcher')} counts {errors} as healthy: a target answering client or "
               "server errors keeps receiving traffic; match 2xx/3xx only")


def _error_codes(matcher: str) -> str:
    """The part of an HTTP matcher ("200", "200,202", "200-299") that accepts 4xx or 5xx, or ""."""
    accepted = []
    for part in filter(None, (p.strip() for p in matcher.split(","))):
        low, _, high = part.partition("-")
        try:
            if max(int(low), int(high or low)) >= 400:
                accepted.append(part)
        except ValueError:
            continue  # gRPC matchers (0-99) and malformed values are AWS's to refuse
    return ",".join(accepted)


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


def _all_ports(props: Mapping[str, Any]) -> bool:
    protocol = str(props.get("ipProtocol", props.get("protocol", "")))
    from_port, to_port = _ports(props)
    return protocol in ("-1", "all") or (from_port in (None, 0, -1) and to_port in (None, 65535, -1))


def _unrestricted_egress(args: ResourceValidationArgs) -> Iterator[str]:
    props, kind = args.props, args.resource_type
    if kind == SECURITY_GROUP:
        blocks = [(f"egress[{i}]", as_map(b), "inline") for i, b in enumerate(as_list(props.get("egress")))]
    elif kind == SG_RULE:
        blocks = [("the rule", props, "legacy")] if props.get("type") == "egress" else []
    else:
        blocks = [("the rule", props, "standalone")]
    for where, block, style in blocks:
        if _world_open(block, style) and _all_ports(block):
            yield (f"{where} allows every port and protocol to the internet: allow only what the workload needs "
                   "(HTTPS to AWS APIs, the load balancer to the tasks' port)")


SUBNET = "aws:ec2/subnet:Subnet"
SUBNET_INPUTS = ((SERVICE, "networkConfiguration"), (ASG, "vpcZoneIdentifiers"), (LOAD_BALANCERS[0], "subnets"),
                 (LOAD_BALANCERS[1], "subnets"))


def _subnets_span_zones(stack: StackView) -> Iterator[tuple[str, str]]:
    """Where the subnets are resources of this stack, their availability zones are known: two subnets in one
    zone are one zone."""
    for kind, prop in SUBNET_INPUTS:
        for resource in stack.of_type(kind):
            subnets = stack.linked(resource, prop, SUBNET)
            zones = {str(s.props.get("availabilityZone") or s.props.get("availabilityZoneId")) for s in subnets}
            if subnets and len(zones) < 2:
                yield (f"'{resource.name}' uses {len(subnets)} subnet(s), all in {', '.join(sorted(zones))}: one "
                       "zone's outage stops it; use subnets in two or more availability zones", resource.urn)


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


def _actions(statement: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in as_list(statement.get("Action"))]


def _any_resource(statement: Mapping[str, Any]) -> bool:
    return "*" in as_list(statement.get("Resource")) or statement.get("NotResource") is not None


def _restrictable(action: str) -> bool:
    return action.lower() not in UNRESTRICTABLE_ACTIONS and not METADATA_ACTION.match(action)


def _wildcard_findings(document: Any, where: str) -> Iterator[str]:
    allowed = [(index, s) for index, s in enumerate(_statements(document)) if s.get("Effect") == "Allow"]
    for index, statement in allowed:
        if statement.get("NotAction") is not None:
            yield f"{where} statement {index} allows NotAction: it grants everything not listed"
        for action in _actions(statement):
            if action in ("*", "*:*"):
                yield f"{where} statement {index} allows every action (*): administrator access"
            elif action.endswith(":*"):
                yield f"{where} statement {index} allows {action}: every action of the service"
        if _any_resource(statement):
            scoped = sorted({a for a in _actions(statement) if a not in ("*", "*:*") and not a.endswith(":*")
                             and _restrictable(a)})
            if scoped:
                yield (f"{where} statement {index} allows {', '.join(scoped)} on every resource (*): name the "
                       "ARNs these actions may touch")
    # iam:PassRole on any role beside an action that runs code: the holder runs code as any role in the account.
    pass_any = any(_any_resource(s) and any(a.lower() in ("iam:passrole", "iam:*") for a in _actions(s))
                   for _, s in allowed)
    runs = sorted({a for _, s in allowed for a in _actions(s) if a.lower() in RUN_ACTIONS})
    if pass_any and runs:
        yield (f"{where} allows iam:PassRole on every role with {', '.join(runs)}: privilege escalation to any "
               "role; pass only the roles the workload launches")


def _managed_policy_arns(args: ResourceValidationArgs) -> list[str]:
    """Managed policies a resource attaches: `policyArn` of the attachments, `policyArns` of the exclusive
    variants, `managedPolicyArns` of a role."""
    props = args.props
    return [str(arn) for arn in [props.get("policyArn"), *as_list(props.get("policyArns")),
                                 *as_list(props.get("managedPolicyArns"))] if arn]


def _no_wildcards_or_admin(args: ResourceValidationArgs) -> Iterator[str]:
    props, kind = args.props, args.resource_type
    if kind in IAM_POLICY_DOCUMENTS:
        yield from _wildcard_findings(props.get("policy"), "policy")
    elif kind == ROLE:
        for inline in as_list(props.get("inlinePolicies")):
            yield from _wildcard_findings(as_map(inline).get("policy"), f"inline policy {as_map(inline).get('name')}")
    for arn in _managed_policy_arns(args):
        if ADMIN_POLICY.match(arn):
            yield f"attaches {arn}: administrator or full access; scope the permissions instead"


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
          "Launch templates require IMDSv2 with a hop limit of 1; IMDS is disabled only where nothing needs it "
          "(never on ECS container instances: the agent needs it). "
          "Sources: CKV_AWS_79, CKV_AWS_341, SH EC2.170, SH AutoScaling.3, SH AutoScaling.4.",
          [LAUNCH_TEMPLATE], _imdsv2, "Set metadata_options http_tokens='required', http_put_response_hop_limit=1."),
    _high("launch-template-no-public-ip",
          "Container instances get no public IP address. Sources: CKV_AWS_88, SH AutoScaling.5.",
          [LAUNCH_TEMPLATE], _no_public_ip, "Set network_interfaces[].associate_public_ip_address='false'."),
    _high("launch-template-encrypted-ebs",
          "Container instance volumes are encrypted. Sources: CKV_AWS_8, CKV_AWS_189, SH EC2.3.",
          [LAUNCH_TEMPLATE], _encrypted_ebs, "Declare the root block device with ebs.encrypted='true'."),
    _high("launch-template-no-user-data-secrets",
          "Instance user data holds no credentials: secret-named assignments, AWS keys, private keys, passwords in "
          "URLs. Sources: CKV_AWS_46.",
          [LAUNCH_TEMPLATE], _user_data_secrets, "Read secrets at boot from SSM Parameter Store or Secrets Manager."),
    _high("launch-template-blocks-task-imds",
          "ECS container instances set ECS_AWSVPC_BLOCK_IMDS=true, so awsvpc tasks cannot take the instance "
          "role's credentials from IMDS. Sources: BP (ECS task IAM roles).",
          [LAUNCH_TEMPLATE], _tasks_blocked_from_imds, "Write ECS_AWSVPC_BLOCK_IMDS=true to /etc/ecs/ecs.config."),
    _high("ecs-no-privileged-containers",
          "No container runs privileged, adds a Linux capability that amounts to privilege (SYS_ADMIN, NET_ADMIN, "
          "...) or maps host devices. Sources: CKV_AWS_334, SH ECS.4.",
          [TASK_DEFINITION], _not_privileged,
          "Remove privileged=true, linuxParameters.capabilities.add and linuxParameters.devices."),
    _medium("ecs-read-only-root-filesystem",
            "Containers run with a read-only root filesystem. Sources: CKV_AWS_336, SH ECS.5.",
            [TASK_DEFINITION], _read_only_root, "Set readOnlyRootFilesystem=true (config) and keep a scratch volume."),
    _high("ecs-task-awsvpc-network-mode",
          "Task definitions use awsvpc and never the host's network, PID or IPC namespace. "
          "Sources: SH ECS.17, SH ECS.3, CKV_AWS_335.",
          [TASK_DEFINITION], _awsvpc, "Set network_mode='awsvpc' and leave pid_mode/ipc_mode unset."),
    _medium("ecs-non-root-user", "Containers run as a non-root user. Sources: SH ECS.20.",
            [TASK_DEFINITION], _non_root, "Set containerUser to a non-root uid[:gid] (config)."),
    _medium("ecs-logging-configured",
            "Containers log with awslogs to a log group, or through the task's FireLens log router. Sources: SH ECS.9.",
            [TASK_DEFINITION], _logging, "Set logConfiguration.logDriver='awslogs' with awslogs-group."),
    _high("ecs-no-secrets-in-environment",
          "Container environment, command and entryPoint hold no credentials (secret-named variables, AWS keys, "
          "private keys, passwords in URLs). Sources: SH ECS.8.",
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
            "ECS deployments keep 100% healthy and have room above it to start new tasks. Sources: BP.",
            [SERVICE], _deployment_percentages,
            "Set deploymentMinimumHealthyPercent=100 and deploymentMaximumPercent above it, 200 by default "
            "(config)."),
    _medium("ecs-service-health-check-grace-period",
            "ECS services behind a load balancer set a health-check grace period. Sources: BP.",
            [SERVICE], _grace_period_set, "Set healthCheckGracePeriodSeconds (config) to cover the model's load time."),
    _medium("ecs-service-az-spread",
            "ECS services run in 2+ subnets and spread tasks across availability zones before any binpack. "
            "Sources: BP.",
            [SERVICE], _az_spread,
            "Give the service subnets in 2+ AZs; put spread on attribute:ecs.availability-zone first, binpack after."),
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
    _high("alb-https-on-443", "A listener on port 443 uses HTTPS, never plain HTTP. Sources: CKV_AWS_2.",
          LISTENERS, _https_on_443, "Set protocol='HTTPS' with certificate_arn and a TLS 1.2+/1.3 ssl_policy."),
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
            "Target groups declare an explicit health check whose matcher accepts no 4xx/5xx. Sources: CKV_AWS_261, "
            "BP.",
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
    _high("sg-no-unrestricted-egress",
          "No security group allows egress on every port and protocol to 0.0.0.0/0 or ::/0. Sources: CKV_AWS_382.",
          [SECURITY_GROUP, EGRESS_RULE, SG_RULE], _unrestricted_egress,
          "Open only the ports the workload calls (443 to AWS APIs) or reference a security group."),
    stack_policy("subnets-span-availability-zones",
                 "Services, Auto Scaling groups and load balancers whose subnets this stack creates use subnets in "
                 "two or more availability zones. Sources: SH ELB.13, SH AutoScaling.2, BP.",
                 _subnets_span_zones, tag=SECURITY, severity=Severity.MEDIUM,
                 remediation="Create one subnet per availability zone and give each resource one per zone."),
    _medium("sg-rule-descriptions", "Security groups and every rule carry a description. Sources: CKV_AWS_23.",
            [SECURITY_GROUP, INGRESS_RULE, EGRESS_RULE, SG_RULE], _rule_descriptions, "Add a description."),
    stack_policy("no-inline-and-standalone-rule-mix",
                 "A security group or IAM role uses inline rules/policies or standalone ones, never both. "
                 "Sources: AG.",
                 _one_rule_style, tag=SECURITY, severity=Severity.MEDIUM,
                 remediation="Keep only the standalone resources (SecurityGroupIngressRule, RolePolicyAttachment)."),
    _high("iam-no-wildcard-actions-or-admin",
          "IAM policies grant no `*` or service-wide actions, no resource-scoped action on `Resource: *`, no "
          "iam:PassRole on any role beside actions that run code, and no administrator or *FullAccess managed "
          "policy through any attachment (roles, users, groups, exclusive attachments). "
          "Sources: CKV_AWS_1, CKV_AWS_49, CKV_AWS_62, CKV_AWS_63, CKV_AWS_286, CKV_AWS_288, CKV_AWS_290, "
          "CKV_AWS_355, SH IAM.1, SH IAM.21.",
          [*IAM_POLICY_DOCUMENTS, ROLE, *IAM_ATTACHMENTS], _no_wildcards_or_admin,
          "List the actions the workload needs on the ARNs it needs; pass only named roles; never attach "
          "AdministratorAccess, PowerUserAccess or a *FullAccess policy."),
    _high("iam-role-trust-scoped-to-service",
          "IAM roles trust only the service principals of the stack (ECS tasks, EC2, ECS releases, the release "
          "check's Lambda). Sources: CKV_AWS_60, CKV_AWS_61.",
          [ROLE], _trust_scoped, "Trust one of " + ", ".join(TRUSTED_SERVICES) + " with sts:AssumeRole only."),
    _medium("log-group-retention-set", "Log groups set a retention period. Sources: CKV_AWS_66.",
            [LOG_GROUP], _retention_set, "Set logRetentionDays (config)."),
    _medium("log-group-retention-one-year", "Log groups keep logs for at least 365 days. Sources: CKV_AWS_338.",
            [LOG_GROUP], _retention_one_year, "Set logRetentionDays to 365 or more (config)."),
    _medium("log-group-kms", "Log groups are encrypted with a customer-managed KMS key. Sources: CKV_AWS_158.",
            [LOG_GROUP], _log_group_kms, "Set logKmsEncryption=true (config)."),
    _high("kms-key-rotation", "Symmetric KMS keys rotate yearly. Sources: CKV_AWS_7, AG.",
          [KMS_KEY], _key_rotation, "Set enable_key_rotation=True."),
]
