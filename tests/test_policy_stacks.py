"""The pack over the real program: every resource `__main__.py` registers for dev and prod, under mocks,
fed to every policy (resource policies one by one, stack policies on the whole stack).

- prod, with policy/config.prod.json: nothing is reported;
- dev, with policy/config.dev.json: exactly the listed advisory exceptions are reported, nothing blocks;
- mutations: flipping one prod setting that a rule guards makes the pack report that rule (and only it).

Each stack configuration runs once per session (tests.policy_support.program caches it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel

from policy.rules import BY_NAME
from tests import conftest
from tests.harness import StackRun
from tests.policy_support import (
    Violation,
    edit,
    edit_containers,
    enforcement_levels,
    evaluate,
    fake,
    load_config,
    program,
    violated,
)

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"

def run_pack(run: StackRun, stack_config: str) -> list[Violation]:
    return evaluate(run.resources, levels=enforcement_levels(load_config(stack_config)))


@pytest.fixture(scope="module")
def prod_violations() -> list[Violation]:
    return run_pack(program("prod"), "prod")


@pytest.fixture(scope="module")
def dev_violations() -> list[Violation]:
    return run_pack(program("dev"), "dev")


@pytest.mark.parametrize("policy", list(BY_NAME))
def test_prod_stack_obeys(policy: str, prod_violations: list[Violation]) -> None:
    found = [str(v) for v in prod_violations if v.policy == policy]
    assert found == []


def test_prod_stack_with_a_certificate_reports_nothing() -> None:
    """With certificateArn set, prod still passes every policy, the HTTPS ones included."""
    run = program("prod-variant")  # tests/conftest.py: prod with a certificate (and a full image URI)
    assert run.config["model-serving:certificateArn"].startswith("arn:aws:acm:")
    assert {r.name for r in run.of_type("aws:lb/listener:Listener")} == {"model-serving-prod-http",
                                                                           "model-serving-prod-https"}
    violations = run_pack(run, "prod")
    assert violations == [], "\n".join(map(str, violations))


def test_dev_stack_reports_exactly_its_listed_exceptions(dev_violations: list[Violation]) -> None:
    levels = enforcement_levels(load_config("dev"))
    exceptions = {name for name, level in levels.items() if level == EnforcementLevel.ADVISORY}
    assert violated(dev_violations) == exceptions, "\n".join(map(str, dev_violations))
    assert {v.level for v in dev_violations} == {EnforcementLevel.ADVISORY}


def test_dev_stack_breaks_every_exception_under_prod_strictness() -> None:
    """The dev config is what keeps dev deployable: under prod's config the same stack would be blocked."""
    blocking = [v for v in run_pack(program("dev"), "prod") if v.level == EnforcementLevel.MANDATORY]
    assert violated(blocking) == {name for name, level in enforcement_levels(load_config("dev")).items()
                                  if level == EnforcementLevel.ADVISORY}


# --- mutations of prod ----------------------------------------------------------------------------------------

@functools.cache
def prod_baseline() -> frozenset[tuple[str, str, str]]:
    return frozenset((v.policy, v.urn, v.message) for v in run_pack(program("prod"), "prod"))


def new_violations(run: StackRun) -> set[str]:
    """Policies that report something for `run` beyond what the unmodified prod stack reports."""
    return {v.policy for v in run_pack(run, "prod") if (v.policy, v.urn, v.message) not in prod_baseline()}


CONFIG_FLIPS: list[tuple[dict[str, Any], set[str]]] = [
    ({"containerInsights": False}, {"ecs-container-insights"}),
    ({"deregistrationDelaySeconds": 300}, {"target-group-deregistration-delay"}),
    ({"albAccessLogs": False}, {"alb-access-logs"}),
    ({"logKmsEncryption": False}, {"log-group-kms"}),
    ({"logRetentionDays": 30}, {"log-group-retention-one-year"}),
    ({"readOnlyRootFilesystem": False}, {"ecs-read-only-root-filesystem"}),
    ({"containerUser": ""}, {"ecs-non-root-user"}),
    ({"deploymentMinimumHealthyPercent": 50}, {"ecs-service-deployment-percentages"}),
    ({"taskRolePolicyArns": [ADMIN]}, {"iam-no-wildcard-actions-or-admin"}),
]


@functools.cache
def all_flips() -> set[str]:
    """One prod run with every flip above applied: each guards a different rule, so one run shows them all."""
    overrides = {key: value for flip, _ in CONFIG_FLIPS for key, value in flip.items()}
    return new_violations(program("prod", **overrides))


@pytest.mark.parametrize(("overrides", "expected"), CONFIG_FLIPS, ids=[next(iter(o)) for o, _ in CONFIG_FLIPS])
def test_flipping_a_prod_setting_is_reported(overrides: dict[str, Any], expected: set[str]) -> None:
    assert expected <= all_flips()


def test_the_flips_together_report_exactly_their_rules() -> None:
    assert all_flips() == set().union(*(expected for _, expected in CONFIG_FLIPS))


def test_a_prod_like_stack_switched_to_dev_loses_its_prod_protections() -> None:
    assert new_violations(program("prod", environmentClass="dev")) == {"ecr-immutable-tags",
                                                                       "alb-deletion-protection"}


LB = "aws:lb/loadBalancer:LoadBalancer"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
SERVICE = "aws:ecs/service:Service"
TD = "aws:ecs/taskDefinition:TaskDefinition"
CP = "aws:ecs/capacityProvider:CapacityProvider"
TG = "aws:lb/targetGroup:TargetGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
ON_DEMAND, SPOT = "model-serving-prod-instances", "model-serving-prod-spot"  # launch templates and groups


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a nested input given as a dotted path (list indexes as numbers)."""

    def change(props: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = props
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return change


def set_input(type_: str, path: str, value: Any, name: str | None = None) -> Callable[[StackRun], None]:
    def change(run: StackRun) -> None:
        edit(run, type_, _set(path, value), name)

    return change


def set_container(key: str, value: Any) -> Callable[[StackRun], None]:
    return lambda run: edit_containers(run, _set(key, value))


def drop(type_: str, name: str) -> Callable[[StackRun], None]:
    def change(run: StackRun) -> None:
        run.resources = [r for r in run.resources if not (r.type == type_ and r.name == name)]

    return change


def drop_dependency(name: str, *dependents: tuple[str, str | None]) -> Callable[[StackRun], None]:
    """Remove the explicit dependency on resource `name` from each (type, name) dependent."""

    def change(run: StackRun) -> None:
        for type_, dependent_name in dependents:
            dependent = edit(run, type_, lambda _: None, dependent_name)
            dependent.dependencies = [u for u in dependent.dependencies if not u.endswith(f"::{name}")]

    return change


def drop_service_dependency(name: str) -> Callable[[StackRun], None]:
    return drop_dependency(name, (SERVICE, None))


def clear_ignore_changes(type_: str, name: str | None = None) -> Callable[[StackRun], None]:
    def change(run: StackRun) -> None:
        edit(run, type_, lambda _: None, name).ignore_changes = []

    return change


def rename(type_: str, name: str, new_name: str) -> Callable[[StackRun], None]:
    def change(run: StackRun) -> None:
        edit(run, type_, lambda _: None, name).name = new_name

    return change


def open_tasks_to_the_world(run: StackRun) -> None:
    def from_anywhere(props: dict[str, Any]) -> None:
        del props["referencedSecurityGroupId"]
        props["cidrIpv4"] = "0.0.0.0/0"

    rule = edit(run, INGRESS, from_anywhere, "model-serving-prod-tasks-in-from-alb")
    del rule.property_dependencies["referencedSecurityGroupId"]


def alb_open_on_ssh(run: StackRun) -> None:
    edit(run, INGRESS, lambda p: p.update(fromPort=22.0, toPort=22.0), "model-serving-prod-alb-in-80-0")


def scale_to_zero_at_night(run: StackRun) -> None:
    """infra/settings/ refuses schedules in prod (instanceMinCount must then be 0); the pack refuses them too."""
    run.resources.append(fake("aws:appautoscaling/scheduledAction:ScheduledAction", "model-serving-prod-night", {
        "serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount",
        "resourceId": "service/model-serving-prod/model-serving-prod", "schedule": "cron(0 19 ? * MON-FRI *)",
        "scalableTargetAction": {"minCapacity": 0.0, "maxCapacity": 0.0}}))


def without_ecs_managed_tag(run: StackRun) -> None:
    edit(run, ASG, lambda p: p.update(tags=[t for t in p["tags"] if t["key"] != "AmazonECSManaged"]), SPOT)


# Settings that are not configuration (fixed in infra/): the recorded inputs are edited instead.
INPUT_FLIPS: list[tuple[str, Callable[[StackRun], None], set[str]]] = [
    ("IMDSv2 optional", set_input(LT, "metadataOptions.httpTokens", "optional", ON_DEMAND), {"launch-template-imdsv2"}),
    ("IMDS hop limit 2", set_input(LT, "metadataOptions.httpPutResponseHopLimit", 2.0, SPOT),
     {"launch-template-imdsv2"}),
    ("instances public IP", set_input(LT, "networkInterfaces.0.associatePublicIpAddress", "true", ON_DEMAND),
     {"launch-template-no-public-ip"}),
    ("root volume unencrypted", set_input(LT, "blockDeviceMappings.0.ebs.encrypted", "false", SPOT),
     {"launch-template-encrypted-ebs"}),
    ("scan on push off", set_input("aws:ecr/repository:Repository", "imageScanningConfiguration.scanOnPush", False),
     {"ecr-scan-on-push"}),
    ("ECR lifecycle policy removed", drop("aws:ecr/lifecyclePolicy:LifecyclePolicy", "model-serving-prod-lifecycle"),
     {"ecr-lifecycle-policy"}),
    ("ALB deletion protection off", set_input(LB, "enableDeletionProtection", False), {"alb-deletion-protection"}),
    ("ALB keeps invalid headers", set_input(LB, "dropInvalidHeaderFields", False), {"alb-drop-invalid-headers"}),
    ("privileged container", set_container("privileged", True), {"ecs-no-privileged-containers"}),
    ("password in environment", set_container("environment", [{"name": "DB_PASSWORD", "value": "x"}]),
     {"ecs-no-secrets-in-environment"}),
    ("host network", set_input(TD, "networkMode", "host"),
     {"ecs-task-awsvpc-network-mode", "lb-target-type-matches-network-mode"}),
    ("launch type beside strategy", set_input(SERVICE, "launchType", "EC2"),
     {"ecs-service-no-launch-type-with-strategy"}),
    ("tasks get public IPs", set_input(SERVICE, "networkConfiguration.assignPublicIp", True),
     {"ecs-service-no-public-ip"}),
    ("no rollback", set_input(SERVICE, "deploymentCircuitBreaker.rollback", False), {"ecs-service-circuit-breaker"}),
    ("grace period below start period", set_input(SERVICE, "healthCheckGracePeriodSeconds", 30.0),
     {"ecs-grace-period-covers-start-period"}),
    ("desiredCount not ignored", clear_ignore_changes(SERVICE), {"desired-counts-ignored"}),
    ("desiredCapacity not ignored", clear_ignore_changes(ASG, ON_DEMAND), {"desired-counts-ignored"}),
    ("ASG not force-deleted", set_input(ASG, "forceDelete", False, SPOT), {"asg-force-delete"}),
    ("ASG without AmazonECSManaged", without_ecs_managed_tag, {"asg-ecs-managed-tag"}),
    ("ASG not protected from scale-in", set_input(ASG, "protectFromScaleIn", False, ON_DEMAND),
     {"ecs-termination-protection-prerequisites"}),
    ("termination protection off", set_input(CP, "autoScalingGroupProvider.managedTerminationProtection",
                                             "DISABLED", "cp-model-serving-prod"),
     {"ecs-managed-termination-protection"}),
    ("capacity provider named ecs-", rename(CP, "cp-model-serving-prod-spot", "ecs-model-serving-prod-spot"),
     {"ecs-capacity-provider-name-prefix"}),
    ("target type instance", set_input(TG, "targetType", "instance"), {"lb-target-type-matches-network-mode"}),
    ("target group name too long", set_input(TG, "name", "model-serving-production-targets-1"), {"lb-name-length"}),
    ("task larger than the instance", set_input(TD, "memory", "32768"), {"ecs-task-fits-instance-type"}),
    ("smaller instance type", set_input(LT, "instanceType", "t3.small", ON_DEMAND), {"ecs-task-fits-instance-type"}),
    ("smaller Spot instance type", set_input(ASG, "mixedInstancesPolicy.launchTemplate.overrides.0.instanceType",
                                             "c6i.large", SPOT), {"ecs-task-fits-instance-type"}),
    ("GPU task on CPU instances", set_container("resourceRequirements", [{"type": "GPU", "value": "1"}]),
     {"ecs-task-fits-instance-type"}),
    ("request-count label of the target group only",
     set_input("aws:appautoscaling/policy:Policy", "targetTrackingScalingPolicyConfiguration."
               "predefinedMetricSpecification.resourceLabel", "targetgroup/model-serving-prod-tg/73e2d6bc24d8a067",
               "model-serving-prod-requests"), {"autoscaling-request-count-label"}),
    ("service not waiting for the capacity association",
     drop_service_dependency("model-serving-prod-capacity-providers"), {"ecs-service-depends-on-capacity-association"}),
    ("service not waiting for the listener", drop_service_dependency("model-serving-prod-http"),
     {"ecs-service-depends-on-listener-and-role-policies"}),
    ("service not waiting for the execution policy",
     drop_service_dependency("model-serving-prod-execution-AmazonECSTaskExecutionRolePolicy"),
     {"ecs-service-depends-on-listener-and-role-policies"}),
    # The service waits for the instance role's policies directly and through both groups: cut every path.
    ("service not waiting for the instance role policy",
     drop_dependency("model-serving-prod-instance-AmazonEC2ContainerServiceforEC2Role",
                     (SERVICE, None), (ASG, ON_DEMAND), (ASG, SPOT)),
     {"ecs-service-depends-on-listener-and-role-policies"}),
    ("tasks open to the internet", open_tasks_to_the_world, {"sg-ingress-only-through-alb"}),
    ("ALB open on port 22", alb_open_on_ssh, {"sg-ingress-only-through-alb"}),
    ("rule without description", set_input("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "description",
                                           "", "model-serving-prod-tasks-out-https"), {"sg-rule-descriptions"}),
    ("scale to zero at night", scale_to_zero_at_night, {"ecs-service-min-two-tasks"}),
    ("KMS key not rotated", set_input("aws:kms/key:Key", "enableKeyRotation", False), {"kms-key-rotation"}),
    ("role trusted by anyone", set_input("aws:iam/role:Role", "assumeRolePolicy", json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}), "model-serving-prod-task"),
     {"iam-role-trust-scoped-to-service"}),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in INPUT_FLIPS],
                         ids=[label for label, _, _ in INPUT_FLIPS])
def test_flipping_a_fixed_prod_setting_is_reported(change: Callable[[StackRun], None], expected: set[str]) -> None:
    # The flips name resources of prod as shipped (Spot on, one CIDR, HTTP only): the real prod run while its
    # stack file says so, so a documented config change to prod never breaks them.
    shipped = conftest.run_with("prod", certificateArn="", ingressCidrs=["0.0.0.0/0"], **conftest.SPOT["prod"])
    run = dataclasses.replace(shipped, resources=list(shipped.resources))
    change(run)
    assert new_violations(run) == expected


def test_mutations_cover_at_least_ten_rules() -> None:
    covered = set().union(*(e for _, e in CONFIG_FLIPS), *(e for _, _, e in INPUT_FLIPS))
    assert len(covered) >= 10 and covered <= set(BY_NAME)
