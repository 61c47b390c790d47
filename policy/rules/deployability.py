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
    LAUNCH_TEMPLATE,
    LISTENERS,
    LOAD_BALANCERS,
    ROLE,
    ROLE_POLICY,
    ROLE_POLICY_ATTACHMENT,
    SERVICE,
    TARGET_GROUPS,
    TASK_DEFINITION,
)
from .shared.instance_types import instance_types, schedulable

CLUSTER_CAPACITY_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
INSTANCE_PROFILE = "aws:iam/instanceProfile:InstanceProfile"
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
SCALING_POLICY = "aws:appautoscaling/policy:Policy"

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
                    yield (f"'{source.name}' launches instance type '{instance_type}', which infra/instance_types.json "
                           "does not list, so the task size cannot be checked", source.urn)
                    continue
                cpu_room, memory_room = schedulable(instance)
                for asked, room, unit in ((cpu, cpu_room, "CPU units"), (memory, memory_room, "MiB"),
                                          (gpus, instance.gpus, "GPUs")):
                    if asked and asked > room:
                        yield (f"task definition '{task}' asks {asked:g} {unit}; {instance_type} (from "
                               f"'{source.name}') schedules at most {room}: tasks stay PENDING", task_definition.urn)


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
    _resource("autoscaling-request-count-label",
              "ALBRequestCountPerTarget scaling uses the label app/<lb>/<id>/targetgroup/<tg>/<id>. Sources: FN-13.",
              [SCALING_POLICY], _request_count_label,
              "Join the load balancer's and target group's arn_suffix with '/'."),
]

