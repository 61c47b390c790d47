"""Deployability policies: one per pitfall of shared/notes/ecs-on-ec2-field-notes.md ("Things AWS rejects or
that hang a deployment") that can be seen from resource inputs, options or dependencies. Sources are the
field-note numbers (FN-1 .. FN-13).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from pulumi_policy import (
    Policy,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)

from .common import (
    DEPLOYABILITY,
    ResourceCheck,
    StackCheck,
    StackView,
    as_list,
    as_map,
    container_definitions,
    number,
    resource_policy,
    stack_policy,
    truthy,
)
from .security import (
    ASG,
    CAPACITY_PROVIDER,
    KMS_KEY,
    LAUNCH_TEMPLATE,
    LISTENERS,
    LOAD_BALANCERS,
    LOG_GROUP,
    ROLE,
    ROLE_POLICY,
    ROLE_POLICY_ATTACHMENT,
    ROLE_POLICY_ATTACHMENTS,
    SCALABLE_TARGET,
    SERVICE,
    TARGET_GROUPS,
    TASK_DEFINITION,
    decoded_user_data,
    ecs_config,
)
from .shared.image_tags import is_moving
from .shared.instance_types import instance_types, schedulable
from .storage import BUCKET_POLICY, BUCKETS, ENCRYPTION, principals, statements

CLUSTER_CAPACITY_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
AWSX_VPC = "awsx:ec2:Vpc"
VPCS = (AWSX_VPC,)

RESERVED_CAPACITY_PROVIDER_PREFIXES = ("aws", "ecs", "fargate")
LB_NAME_MAX = 32
NAME_PREFIX_MAX = 6
AUTONAME_SUFFIX = 8  # Pulumi auto-names `<logical name>-<7 hex>`
REQUEST_COUNT_LABEL = re.compile(r"^app/[^/]+/[0-9a-f]+/targetgroup/[^/]+/[0-9a-f]+$")
IGNORED_BY_OWNER = {SERVICE: ("desiredCount", "Application Auto Scaling"),
                    ASG: ("desiredCapacity", "ECS managed scaling")}


# --- resource checks --------------------------------------------------------------------------------------

def _launch_type_with_strategy(args: ResourceValidationArgs) -> Iterator[str]:
    if args.props.get("launchType") and as_list(args.props.get("capacityProviderStrategies")):
        yield (f"launchType {args.props.get('launchType')} is set beside capacityProviderStrategies: AWS refuses "
               "the pair; place tasks through the strategy only")


def _capacity_provider_name(args: ResourceValidationArgs) -> Iterator[str]:
    name = str(args.props.get("name") or args.name)  # auto-named: the physical name starts with the logical one
    if name.lower().startswith(RESERVED_CAPACITY_PROVIDER_PREFIXES):
        yield f"capacity provider name '{name}' starts with aws, ecs or fargate, which AWS refuses"


def _name_length(args: ResourceValidationArgs) -> Iterator[str]:
    name, prefix = args.props.get("name"), args.props.get("namePrefix")
    if name:
        if len(str(name)) > LB_NAME_MAX:
            yield f"name '{name}' has {len(str(name))} characters; AWS allows {LB_NAME_MAX}"
    elif prefix:
        if len(str(prefix)) > NAME_PREFIX_MAX:
            yield f"namePrefix '{prefix}' has {len(str(prefix))} characters; AWS allows {NAME_PREFIX_MAX}"
    elif len(args.name) + AUTONAME_SUFFIX > LB_NAME_MAX:
        yield (f"logical name '{args.name}' auto-names to {len(args.name) + AUTONAME_SUFFIX} characters; "
               f"AWS allows {LB_NAME_MAX}: shorten it to {LB_NAME_MAX - AUTONAME_SUFFIX}")


def _request_count_label(args: ResourceValidationArgs) -> Iterator[str]:
    config = as_map(args.props.get("targetTrackingScalingPolicyConfiguration"))
    metric = as_map(config.get("predefinedMetricSpecification"))
    if metric.get("predefinedMetricType") != "ALBRequestCountPerTarget":
        return
    label = str(metric.get("resourceLabel") or "")
    if not REQUEST_COUNT_LABEL.match(label):
        yield (f"resourceLabel '{label}' is not app/<lb>/<id>/targetgroup/<tg>/<id> "
               "(the load balancer's and target group's arnSuffix joined by /)")


def _desired_count_ignored(args: ResourceValidationArgs) -> Iterator[str]:
    prop, owner = IGNORED_BY_OWNER[args.resource_type]
    if not {prop, "*"} & set(args.opts.ignore_changes or []):
        yield f"ignore_changes must list {prop}: {owner} owns it, and every `pulumi up` would reset it"


def _asg_force_delete(args: ResourceValidationArgs) -> Iterator[str]:
    if not truthy(args.props.get("forceDelete")):
        yield ("forceDelete must be true: instances protected from scale-in otherwise make the group's "
               "deletion (and `pulumi destroy`) hang")


def _asg_ecs_managed_tag(args: ResourceValidationArgs) -> Iterator[str]:
    tags = [as_map(t) for t in as_list(args.props.get("tags"))]
    if not any(t.get("key") == "AmazonECSManaged" and truthy(t.get("propagateAtLaunch")) for t in tags):
        yield "tags must include AmazonECSManaged with propagateAtLaunch true, or ECS never scales the group in"


def _warm_pool_no_reuse(args: ResourceValidationArgs) -> Iterator[str]:
    policy = as_map(as_map(args.props.get("warmPool")).get("instanceReusePolicy"))
    if truthy(policy.get("reuseOnScaleIn")):
        yield ("warmPool.instanceReusePolicy.reuseOnScaleIn must not be true: ECS does not allow a warm pool of an "
               "ECS Auto Scaling group to take instances back on scale-in")


# --- stack checks -----------------------------------------------------------------------------------------

def _termination_protection_prerequisites(stack: StackView) -> Iterator[tuple[str, str]]:
    for provider in stack.of_type(CAPACITY_PROVIDER):
        settings = as_map(provider.props.get("autoScalingGroupProvider"))
        if settings.get("managedTerminationProtection") != "ENABLED":
            continue
        if as_map(settings.get("managedScaling")).get("status") != "ENABLED":
            yield (f"capacity provider '{provider.name}' enables managed termination protection without managed "
                   "scaling ENABLED: AWS refuses it", provider.urn)
        groups = stack.linked(provider, "autoScalingGroupProvider", ASG)
        if not groups:
            yield f"capacity provider '{provider.name}': its Auto Scaling group is not in this stack", provider.urn
        for group in groups:
            if not truthy(group.props.get("protectFromScaleIn")):
                yield (f"Auto Scaling group '{group.name}' behind capacity provider '{provider.name}' needs "
                       "protectFromScaleIn true for managed termination protection", group.urn)


def _services(stack: StackView) -> list[PolicyResource]:
    return stack.of_type(SERVICE)


def _depends_on_association(stack: StackView) -> Iterator[tuple[str, str]]:
    associations = stack.of_type(CLUSTER_CAPACITY_PROVIDERS)
    for service in _services(stack):
        for provider in stack.linked(service, "capacityProviderStrategies", CAPACITY_PROVIDER):
            linked = [a for a in associations
                      if any(p.urn == provider.urn for p in stack.linked(a, "capacityProviders"))]
            if not linked:
                yield (f"capacity provider '{provider.name}' is not associated with a cluster "
                       "(ClusterCapacityProviders)", service.urn)
            elif not any(stack.depends_on(service, a) for a in linked):
                yield (f"service '{service.name}' must depend on '{linked[0].name}', or it may be created before "
                       f"'{provider.name}' is associated with the cluster", service.urn)


def _depends_on_listener_and_role_policies(stack: StackView) -> Iterator[tuple[str, str]]:
    routes = stack.of_type(*LISTENERS, *LISTENER_RULES)
    for service in _services(stack):
        for group in stack.linked(service, "loadBalancers", *TARGET_GROUPS):
            using = [r for r in routes if any(d.urn == group.urn for deps in r.property_dependencies.values()
                                              for d in deps)]
            if not any(stack.depends_on(service, r) for r in using):
                yield (f"service '{service.name}' must depend on a listener forwarding to '{group.name}': a target "
                       "group not attached to a load balancer cannot be used", service.urn)
        roles = [role for task_definition in stack.linked(service, "taskDefinition", TASK_DEFINITION)
                 for prop in ("executionRoleArn", "taskRoleArn") for role in stack.linked(task_definition, prop, ROLE)]
        # The container instances' role too: without it their agents cannot stop the tasks.
        roles += [role for group in _groups_behind(stack, service) for template in _launch_templates(stack, group)
                  for profile in stack.linked(template, "iamInstanceProfile", INSTANCE_PROFILE)
                  for role in stack.linked(profile, "role", ROLE)]
        for role in {role.urn: role for role in roles}.values():  # both groups share the instance role
            for grant in stack.referrers(role, "role", ROLE_POLICY_ATTACHMENT, ROLE_POLICY):
                if not stack.depends_on(service, grant):
                    yield (f"service '{service.name}' must depend on '{grant.name}': deleted first, it leaves "
                           "the service stuck in DRAINING on destroy", service.urn)


def _target_type_matches_network_mode(stack: StackView) -> Iterator[tuple[str, str]]:
    for service in _services(stack):
        for task_definition in stack.linked(service, "taskDefinition", TASK_DEFINITION):
            mode = task_definition.props.get("networkMode") or "bridge"
            expected = "ip" if mode == "awsvpc" else "instance"
            for group in stack.linked(service, "loadBalancers", *TARGET_GROUPS):
                target_type = group.props.get("targetType") or "instance"
                if target_type != expected:
                    yield (f"target group '{group.name}' has targetType {target_type}, but the tasks of "
                           f"'{service.name}' use networkMode {mode}, which needs {expected}", group.urn)


def _start_periods(task_definition: PolicyResource) -> list[float]:
    return [number(as_map(c.get("healthCheck")).get("startPeriod")) or 0.0
            for c in container_definitions(task_definition.props)]


def _grace_period_covers_start(stack: StackView) -> Iterator[tuple[str, str]]:
    for service in _services(stack):
        if not as_list(service.props.get("loadBalancers")):
            continue
        grace = number(service.props.get("healthCheckGracePeriodSeconds")) or 0.0
        for task_definition in stack.linked(service, "taskDefinition", TASK_DEFINITION):
            start = max(_start_periods(task_definition), default=0.0)
            if grace < start:
                yield (f"service '{service.name}' has healthCheckGracePeriodSeconds {grace:g}, shorter than the "
                       f"container start period {start:g}: the ALB kills tasks still loading the model", service.urn)


def _task_gpus(task_definition: PolicyResource) -> float:
    return sum(number(as_map(r).get("value")) or 0.0 for c in container_definitions(task_definition.props)
               for r in as_list(c.get("resourceRequirements")) if as_map(r).get("type") == "GPU")


def _groups_behind(stack: StackView, service: PolicyResource) -> Iterator[PolicyResource]:
    """The Auto Scaling groups of the capacity providers in the service's strategy."""
    for provider in stack.linked(service, "capacityProviderStrategies", CAPACITY_PROVIDER):
        yield from stack.linked(provider, "autoScalingGroupProvider", ASG)


def _launch_templates(stack: StackView, group: PolicyResource) -> list[PolicyResource]:
    return (stack.linked(group, "launchTemplate", LAUNCH_TEMPLATE)
            + stack.linked(group, "mixedInstancesPolicy", LAUNCH_TEMPLATE))


def _instance_types_behind(stack: StackView, service: PolicyResource) -> Iterator[tuple[PolicyResource, str]]:
    """(resource naming it, instance type) for every type the service's capacity providers may launch.

    A group launches its launch template's type, or, with a mixed-instances policy (Spot), each override's.
    """
    for group in _groups_behind(stack, service):
        overrides = as_list(as_map(as_map(group.props.get("mixedInstancesPolicy")).get("launchTemplate"))
                            .get("overrides"))
        types = [str(as_map(o).get("instanceType")) for o in overrides if as_map(o).get("instanceType")]
        if types:
            yield from ((group, t) for t in types)
            continue
        for template in _launch_templates(stack, group):
            if template.props.get("instanceType"):
                yield template, str(template.props.get("instanceType"))


def _task_fits_instance_type(stack: StackView) -> Iterator[tuple[str, str]]:
    known = instance_types()
    for service in _services(stack):
        for task_definition in stack.linked(service, "taskDefinition", TASK_DEFINITION):
            cpu, memory = number(task_definition.props.get("cpu")), number(task_definition.props.get("memory"))
            gpus, task = _task_gpus(task_definition), task_definition.name
            for source, instance_type in _instance_types_behind(stack, service):
                instance = known.get(instance_type)
                if instance is None:
                    continue  # a type newer than instance_types.json: AWS knows it, the size is checked on deploy
                cpu_room, memory_room = schedulable(instance)
                for asked, room, unit in ((cpu, cpu_room, "CPU units"), (memory, memory_room, "MiB"),
                                          (gpus, instance.gpus, "GPUs")):
                    if asked and asked > room:
                        yield (f"task definition '{task}' asks {asked:g} {unit}; {instance_type} (from "
                               f"'{source.name}') schedules at most {room}: tasks stay PENDING", task_definition.urn)


# --- completeness: what ECS on EC2 needs to run at all ---------------------------------------------------------

INSTANCE_ROLE_POLICY = "AmazonEC2ContainerServiceforEC2Role"
EXECUTION_ROLE_POLICY = "AmazonECSTaskExecutionRolePolicy"
# What the execution role does for an ECR image logging to CloudWatch, if not through the managed policy.
EXECUTION_ACTIONS = ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "logs:PutLogEvents")
ELB_LOG_DELIVERY = "logdelivery.elasticloadbalancing.amazonaws.com"


def _templates_behind_providers(stack: StackView) -> dict[str, PolicyResource]:
    return {template.urn: template for provider in stack.of_type(CAPACITY_PROVIDER)
            for group in stack.linked(provider, "autoScalingGroupProvider", ASG)
            for template in _launch_templates(stack, group)}


def _instances_join_the_cluster(stack: StackView) -> Iterator[tuple[str, str]]:
    for template in _templates_behind_providers(stack).values():
        config = ecs_config(decoded_user_data(template.props.get("userData")))
        if not config.get("ECS_CLUSTER"):
            yield (f"launch template '{template.name}' behind a capacity provider writes no ECS_CLUSTER to "
                   "/etc/ecs/ecs.config: its instances join the cluster named 'default', and tasks stay PENDING",
                   template.urn)
        if not as_map(template.props.get("iamInstanceProfile")):
            yield (f"launch template '{template.name}' has no iamInstanceProfile: the ECS agent cannot register "
                   "its instances", template.urn)


def _role_policy_arns(stack: StackView, role: PolicyResource) -> set[str]:
    arns = {str(a) for a in as_list(role.props.get("managedPolicyArns"))}
    for grant in stack.referrers(role, "role", ROLE_POLICY_ATTACHMENT, ROLE_POLICY_ATTACHMENTS):
        arns |= {str(a) for a in [grant.props.get("policyArn"), *as_list(grant.props.get("policyArns"))] if a}
    return arns


def _granted_actions(stack: StackView, role: PolicyResource) -> set[str]:
    documents = [as_map(p).get("policy") for p in as_list(role.props.get("inlinePolicies"))]
    documents += [p.props.get("policy") for p in stack.referrers(role, "role", ROLE_POLICY)]
    return {str(a).lower() for d in documents for s in statements(d) if s.get("Effect") == "Allow"
            for a in as_list(s.get("Action"))}


def _grants(actions: set[str], wanted: str) -> bool:
    service = wanted.split(":", maxsplit=1)[0]
    return bool({wanted.lower(), f"{service}:*", "*"} & actions) or any(
        a.endswith("*") and wanted.lower().startswith(a[:-1]) for a in actions)


def _roles_have_required_policies(stack: StackView) -> Iterator[tuple[str, str]]:
    instance_roles = {role.urn: role for template in _templates_behind_providers(stack).values()
                      for profile in stack.linked(template, "iamInstanceProfile", INSTANCE_PROFILE)
                      for role in stack.linked(profile, "role", ROLE)}
    for role in instance_roles.values():
        if not any(arn.endswith(f"/{INSTANCE_ROLE_POLICY}") for arn in _role_policy_arns(stack, role)):
            yield (f"instance role '{role.name}' lacks {INSTANCE_ROLE_POLICY}: the agent cannot register, pull "
                   "images or report task state", role.urn)
    execution_roles = {role.urn: role for task_definition in stack.of_type(TASK_DEFINITION)
                       for role in stack.linked(task_definition, "executionRoleArn", ROLE)}
    for role in execution_roles.values():
        if any(arn.endswith(f"/{EXECUTION_ROLE_POLICY}") for arn in _role_policy_arns(stack, role)):
            continue
        actions = _granted_actions(stack, role)
        missing = [a for a in EXECUTION_ACTIONS if not _grants(actions, a)]
        if missing:
            yield (f"execution role '{role.name}' has neither {EXECUTION_ROLE_POLICY} nor {', '.join(missing)}: "
                   "tasks cannot pull the image or write logs", role.urn)


def _container_port_exposed(stack: StackView) -> Iterator[tuple[str, str]]:
    for service in _services(stack):
        for task_definition in stack.linked(service, "taskDefinition", TASK_DEFINITION):
            containers = {str(c.get("name")): c for c in container_definitions(task_definition.props)}
            for target in (as_map(t) for t in as_list(service.props.get("loadBalancers"))):
                name, port = str(target.get("containerName")), number(target.get("containerPort"))
                container = containers.get(name)
                if container is None:
                    yield (f"service '{service.name}' routes the load balancer to container '{name}', which task "
                           f"definition '{task_definition.name}' does not define", service.urn)
                    continue
                ports = {number(as_map(m).get("containerPort")) for m in as_list(container.get("portMappings"))}
                if port not in ports:
                    shown = ", ".join(f"{p:g}" for p in sorted(p for p in ports if p is not None)) or "none"
                    yield (f"service '{service.name}' sends load balancer traffic to port "
                           f"{port if port is None else f'{port:g}'} of '{name}', which exposes {shown}: AWS refuses "
                           "the service", service.urn)


def _task_runs_on_ec2(stack: StackView) -> Iterator[tuple[str, str]]:
    for service in _services(stack):
        if service.props.get("launchType") in ("FARGATE", "EXTERNAL"):
            continue
        for task_definition in stack.linked(service, "taskDefinition", TASK_DEFINITION):
            compatibilities = [str(c) for c in as_list(task_definition.props.get("requiresCompatibilities"))]
            if compatibilities and "EC2" not in compatibilities:
                yield (f"task definition '{task_definition.name}' requires {', '.join(compatibilities)}, not EC2: "
                       f"service '{service.name}' on EC2 capacity cannot place it", task_definition.urn)
            unsized = [str(c.get("name")) for c in container_definitions(task_definition.props)
                       if not number(c.get("memory")) and not number(c.get("memoryReservation"))]
            if not number(task_definition.props.get("memory")) and unsized:
                yield (f"task definition '{task_definition.name}' sets no task memory and containers "
                       f"{', '.join(unsized)} no memory or memoryReservation: EC2 tasks need one of them",
                       task_definition.urn)
            yield from ((message, task_definition.urn) for message in _task_definition_refusals(task_definition))


def _task_definition_refusals(task_definition: PolicyResource) -> Iterator[str]:
    """What RegisterTaskDefinition refuses for EC2: containers asking more memory than the task has, and awsvpc
    port mappings whose hostPort differs from the containerPort."""
    containers = container_definitions(task_definition.props)
    task_memory = number(task_definition.props.get("memory"))
    asked = sum(number(c.get("memory")) or number(c.get("memoryReservation")) or 0.0 for c in containers)
    if task_memory and asked > task_memory:
        yield (f"the containers of task definition '{task_definition.name}' ask {asked:g} MiB, more than the task's "
               f"{task_memory:g}")
    if (task_definition.props.get("networkMode") or "bridge") == "awsvpc":
        for container in containers:
            for mapping in (as_map(m) for m in as_list(container.get("portMappings"))):
                host, port = number(mapping.get("hostPort")), number(mapping.get("containerPort"))
                if host is not None and host != port:
                    yield (f"container '{container.get('name')}' maps hostPort {host:g} to containerPort "
                           f"{port if port is None else f'{port:g}'}: with awsvpc they must be equal")


def _private_subnet_ids(stack: StackView) -> set[str]:
    """Subnets known to be private: a VPC component's private subnets, and those tasks or instances use (the
    pack keeps both off public IPs)."""
    ids = {str(s) for vpc in stack.of_type(*VPCS) for s in as_list(vpc.props.get("privateSubnetIds"))}
    ids |= {str(s) for service in _services(stack)
            for s in as_list(as_map(service.props.get("networkConfiguration")).get("subnets"))}
    ids |= {str(s) for group in stack.of_type(ASG) for s in as_list(group.props.get("vpcZoneIdentifiers"))}
    return ids


def _internet_facing_in_public_subnets(stack: StackView) -> Iterator[tuple[str, str]]:
    private = _private_subnet_ids(stack)
    for lb in stack.of_type(*LOAD_BALANCERS):
        if truthy(lb.props.get("internal")):
            continue
        subnets = [str(s) for s in as_list(lb.props.get("subnets"))]
        subnets += [str(as_map(m).get("subnetId")) for m in as_list(lb.props.get("subnetMappings"))]
        inside = sorted(set(subnets) & private)
        if inside:
            yield (f"internet-facing load balancer '{lb.name}' is in private subnets ({', '.join(inside)}): without "
                   "a route to an internet gateway it is unreachable; use the public subnets", lb.urn)


def _kms_grants_logs(stack: StackView) -> Iterator[tuple[str, str]]:
    for group in stack.of_type(LOG_GROUP):
        for key in stack.linked(group, "kmsKeyId", KMS_KEY):
            granted = [s for s in statements(key.props.get("policy")) if s.get("Effect") == "Allow"
                       and any(re.fullmatch(r"logs(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?", p) for p in principals(s))]
            actions = {str(a).lower() for s in granted for a in as_list(s.get("Action"))}
            if not all(_grants(actions, a) for a in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")):
                yield (f"KMS key '{key.name}' encrypts log group '{group.name}' but its policy does not let the "
                       "CloudWatch Logs service principal use it: creating the log group fails", key.urn)


def _access_log_delivery(stack: StackView) -> Iterator[tuple[str, str]]:
    for lb in stack.of_type(*LOAD_BALANCERS):
        if not truthy(as_map(lb.props.get("accessLogs")).get("enabled")):
            continue
        for bucket in stack.linked(lb, "accessLogs", *BUCKETS):
            documents = [p.props.get("policy") for p in stack.referrers(bucket, "bucket", BUCKET_POLICY)]
            delivering = [s for d in documents for s in statements(d) if s.get("Effect") == "Allow"
                          and {"s3:putobject", "s3:*", "*"} & {str(a).lower() for a in as_list(s.get("Action"))}
                          and any(p == ELB_LOG_DELIVERY or re.fullmatch(r"(arn:aws[a-z-]*:iam::)?\d{12}(:root)?", p)
                                  for p in principals(s))]
            if not delivering:
                yield (f"access-log bucket '{bucket.name}' of '{lb.name}' has no bucket policy letting ELB log "
                       f"delivery ({ELB_LOG_DELIVERY} or the region's ELB account) PutObject: the load balancer "
                       "refuses the access-log setting", bucket.urn)
            for encryption in stack.referrers(bucket, "bucket", *ENCRYPTION):
                for rule in as_list(encryption.props.get("rules")):
                    algorithm = as_map(as_map(rule).get("applyServerSideEncryptionByDefault")).get("sseAlgorithm")
                    if algorithm not in (None, "AES256"):
                        yield (f"access-log bucket '{bucket.name}' encrypts with {algorithm}: ELB delivers access "
                               "logs only to SSE-S3 (AES256) buckets", bucket.urn)


def _min_not_above_max(args: ResourceValidationArgs) -> Iterator[str]:
    low, high = ("minCapacity", "maxCapacity") if args.resource_type == SCALABLE_TARGET else ("minSize", "maxSize")
    minimum, maximum = number(args.props.get(low)), number(args.props.get(high))
    if minimum is not None and maximum is not None and maximum < minimum:
        yield f"{high} {maximum:g} is below {low} {minimum:g}: AWS refuses the range"


def _log_group_in_stack(stack: StackView) -> Iterator[tuple[str, str]]:
    names = {str(g.props.get("name")) for g in stack.of_type(LOG_GROUP) if g.props.get("name")}
    for task_definition in stack.of_type(TASK_DEFINITION):
        for container in container_definitions(task_definition.props):
            config = as_map(container.get("logConfiguration"))
            group = as_map(config.get("options")).get("awslogs-group")
            if config.get("logDriver") == "awslogs" and group and str(group) not in names:
                yield (f"container '{container.get('name')}' of '{task_definition.name}' logs to '{group}', a log "
                       "group this stack does not create: tasks fail to start, or (with awslogs-create-group) "
                       "log without retention or encryption", task_definition.urn)


def _image_pinned(args: ResourceValidationArgs) -> Iterator[str]:
    for container in container_definitions(args.props):
        image = str(container.get("image") or "")
        if image and is_moving(image):
            yield (f"container '{container.get('name')}' runs {image}, a moving tag: every new instance may pull "
                   "a different build; deploy a version tag or a digest")


def _private_subnets_have_egress(args: ResourceValidationArgs) -> Iterator[str]:
    """On the VPC component's inputs: its outputs (what a stack policy would see) no longer hold the strategy."""
    props = args.props
    kinds = {as_map(s).get("type") for s in as_list(props.get("subnetSpecs"))} or {"Public", "Private"}
    endpoints = " ".join(str(as_map(e).get("serviceName")) for e in as_list(props.get("vpcEndpointSpecs")))
    if (as_map(props.get("natGateways")).get("strategy") == "None" and "Private" in kinds
            and not ("ecr.dkr" in endpoints and ".ecs" in endpoints)):
        yield ("private subnets without NAT gateways or ECS/ECR VPC endpoints: instances there cannot reach ECS "
               "or pull images")

def _resource(name: str, description: str, types: Iterable[str], check: ResourceCheck,
              remediation: str) -> ResourceValidationPolicy:
    return resource_policy(name, description, types, check, tag=DEPLOYABILITY, severity=Severity.HIGH,
                           remediation=remediation)


def _stack(name: str, description: str, check: StackCheck, remediation: str) -> StackValidationPolicy:
    return stack_policy(name, description, check, tag=DEPLOYABILITY, severity=Severity.HIGH,
                        remediation=remediation)


POLICIES: list[Policy] = [
    _resource("ecs-service-no-launch-type-with-strategy",
              "An ECS service with a capacity-provider strategy sets no launch type. Sources: FN-1.",
              [SERVICE], _launch_type_with_strategy, "Remove launch_type; keep capacity_provider_strategies."),
    _stack("ecs-termination-protection-prerequisites",
           "Managed termination protection comes with managed scaling and a scale-in-protected group. Sources: FN-2.",
           _termination_protection_prerequisites,
           "Set managed_scaling.status='ENABLED' and protect_from_scale_in=True on the group."),
    _resource("ecs-capacity-provider-name-prefix",
              "Capacity provider names do not start with aws, ecs or fargate. Sources: FN-3.",
              [CAPACITY_PROVIDER], _capacity_provider_name, "Name it e.g. cp-<project>-<stack>."),
    _stack("ecs-service-depends-on-capacity-association",
           "The service depends on the cluster's capacity-provider association. Sources: FN-4.",
           _depends_on_association, "Pass the ClusterCapacityProviders resource in the service's depends_on."),
    _stack("lb-target-type-matches-network-mode",
           "Target type is ip for awsvpc tasks and instance for bridge/host tasks. Sources: FN-5.",
           _target_type_matches_network_mode, "Use target_type='ip' with network_mode='awsvpc'."),
    _resource("lb-name-length",
              "Load balancer and target group names fit 32 characters (auto-naming adds 8; a name_prefix fits 6). "
              "Sources: FN-6.",
              [*LOAD_BALANCERS, *TARGET_GROUPS], _name_length, "Shorten the logical name (infra/naming.py)."),
    _stack("ecs-service-depends-on-listener-and-role-policies",
           "The service depends on the listener of its target group and on the policy attachments of its roles "
           "(execution, task and container instances). "
           "Sources: FN-7.",
           _depends_on_listener_and_role_policies,
           "Pass the listeners and role policy attachments in the service's depends_on."),
    _resource("asg-force-delete",
              "Auto Scaling groups behind ECS are force-deleted, so destroy does not hang. Sources: FN-8.",
              [ASG], _asg_force_delete, "Set force_delete=True."),
    _resource("asg-ecs-managed-tag",
              "Auto Scaling groups carry AmazonECSManaged=true, propagated at launch. Sources: FN-9.",
              [ASG], _asg_ecs_managed_tag, "Add the tag AmazonECSManaged=true with propagate_at_launch=True."),
    _resource("asg-warm-pool-no-reuse-on-scale-in",
              "A warm pool of an ECS Auto Scaling group does not return instances to the pool on scale-in. "
              "Sources: BP (ECS warm pools, using-warm-pool).",
              [ASG], _warm_pool_no_reuse, "Drop the warm pool's instance_reuse_policy."),
    _resource("desired-counts-ignored",
              "The ECS service's desiredCount and the group's desiredCapacity are in ignore_changes. Sources: FN-10.",
              [SERVICE, ASG], _desired_count_ignored,
              "Add ignore_changes=['desiredCount'] (service) / ['desiredCapacity'] (group)."),
    _stack("ecs-grace-period-covers-start-period",
           "The service's health-check grace period is at least the container health check's start period. "
           "Sources: FN-11.",
           _grace_period_covers_start, "Raise healthCheckGracePeriodSeconds to containerStartPeriodSeconds or more."),
    _stack("ecs-task-fits-instance-type",
           "The task's CPU, memory and GPUs fit what every instance type behind its capacity providers can schedule "
           "beside the ECS agent. Sources: FN-12.",
           _task_fits_instance_type, "Lower taskCpu/taskMemoryMiB or choose a larger instanceType."),
    _stack("ecs-instances-join-the-cluster",
           "Launch templates behind a capacity provider write ECS_CLUSTER to the agent's config and carry an "
           "instance profile. Sources: BP (ECS container instance bootstrap).",
           _instances_join_the_cluster, "Write ECS_CLUSTER=<cluster> to /etc/ecs/ecs.config; set an instance profile."),
    _stack("ecs-roles-have-required-policies",
           f"The container instances' role has {INSTANCE_ROLE_POLICY}; the execution role has "
           f"{EXECUTION_ROLE_POLICY} or its ECR pull and log actions. Sources: BP (ECS IAM roles).",
           _roles_have_required_policies, "Attach the AWS-managed policies with RolePolicyAttachment."),
    _stack("lb-container-port-exposed",
           "The service's load balancer targets a container and port the task definition exposes. "
           "Sources: BP (ECS service load balancing).",
           _container_port_exposed, "Point loadBalancers at a containerName/containerPort from portMappings."),
    _stack("ecs-task-runs-on-ec2",
           "Task definitions of services on EC2 capacity are EC2-compatible, sized in memory (containers within the "
           "task), and map awsvpc ports one to one. "
           "Sources: BP (ECS task definitions on EC2).",
           _task_runs_on_ec2, "Set requires_compatibilities=['EC2'] and task memory."),
    _stack("alb-internet-facing-in-public-subnets",
           "Internet-facing load balancers sit in public subnets, never in the private subnets of the tasks, "
           "instances or VPC. Sources: BP (ELB subnets).",
           _internet_facing_in_public_subnets, "Give an internet-facing ALB the VPC's public subnets."),
    _stack("kms-key-grants-cloudwatch-logs",
           "A KMS key encrypting a log group lets the CloudWatch Logs service principal use it. "
           "Sources: BP (CloudWatch Logs encryption).",
           _kms_grants_logs, "Allow logs.<region>.amazonaws.com kms:Encrypt*/Decrypt*/GenerateDataKey* in the key "
                             "policy, conditioned on the log group ARN."),
    _stack("alb-access-log-delivery",
           "An access-log bucket lets ELB log delivery write (bucket policy) and is encrypted with SSE-S3. "
           "Sources: BP (ALB access logs).",
           _access_log_delivery, "Allow s3:PutObject to logdelivery.elasticloadbalancing.amazonaws.com (or the "
                                 "region's ELB account) on <bucket>/<prefix>/AWSLogs/<account>/*; use AES256."),
    _resource("autoscaling-min-not-above-max",
              "Scalable targets and Auto Scaling groups have a maximum at or above their minimum. "
              "Sources: BP (Application Auto Scaling).",
              [SCALABLE_TARGET, ASG], _min_not_above_max, "Raise maxTaskCount/instanceMaxCount or lower the minimum."),
    _stack("ecs-log-group-in-stack",
           "Containers log with awslogs to a log group this stack creates (retention and encryption set). "
           "Sources: SH ECS.9, CKV_AWS_158.",
           _log_group_in_stack, "Point awslogs-group at the stack's log group."),
    _resource("ecs-image-pinned",
              "Containers run an image by version tag or digest, never latest, no tag or another moving tag. "
              "Sources: BP (ECS image tags), CKV_AWS_51.",
              [TASK_DEFINITION], _image_pinned, "Deploy a version tag (image) or a digest (sha256:...)."),
    _resource("vpc-private-subnets-have-egress",
              "A new VPC's private subnets reach AWS through NAT gateways or ECS/ECR VPC endpoints. "
              "Sources: BP (ECS networking).",
              [AWSX_VPC], _private_subnets_have_egress, "Set natGateways (config) to OnePerAz or Single."),
    _resource("autoscaling-request-count-label",
              "ALBRequestCountPerTarget scaling uses the label app/<lb>/<id>/targetgroup/<tg>/<id>. Sources: FN-13.",
              [SCALING_POLICY], _request_count_label,
              "Join the load balancer's and target group's arn_suffix with '/'."),
]

