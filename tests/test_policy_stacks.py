"""The pack over the real program: every resource `__main__.py` registers for dev and prod, under mocks,
fed to every policy (resource policies one by one, stack policies on the whole stack).

- prod, with policy/config.prod.json: nothing is reported;
- dev, with policy/config.dev.json: exactly the listed advisory exceptions are reported, nothing blocks;
- mutations: flipping one prod setting that a rule guards makes the pack report that rule (and only it).

Each stack configuration runs once per session (tests.policy_support.program caches it).
"""

from __future__ import annotations

import base64
import copy
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

FULL_ACCESS = "arn:aws:iam::aws:policy/AmazonS3FullAccess"

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
    assert {r.name for r in run.of_type("aws:lb/listener:Listener")} == {
        "model-serving-prod-http", "model-serving-prod-https", "model-serving-prod-test"}  # test: CANARY releases
    violations = run_pack(run, "prod")
    assert violations == [], "\n".join(map(str, violations))


# Dev exceptions that dev's own config does not use: with imageBuild (dev's default) the image is a digest, but a
# dev stack may deploy `latest` (infra/settings refuses it only for prod). Each is tested on its dev variant below.
UNUSED_BY_DEFAULT = {"ecs-image-pinned": {"imageBuild": False, "image": "latest"}}


def dev_exceptions() -> set[str]:
    levels = enforcement_levels(load_config("dev"))
    return {name for name, level in levels.items() if level == EnforcementLevel.ADVISORY}


def test_dev_stack_reports_exactly_its_listed_exceptions(dev_violations: list[Violation]) -> None:
    exceptions = dev_exceptions()
    assert UNUSED_BY_DEFAULT.keys() <= exceptions
    assert violated(dev_violations) == exceptions - UNUSED_BY_DEFAULT.keys(), "\n".join(map(str, dev_violations))
    assert {v.level for v in dev_violations} == {EnforcementLevel.ADVISORY}


def test_dev_stack_breaks_every_exception_under_prod_strictness() -> None:
    """The dev config is what keeps dev deployable: under prod's config the same stack would be blocked."""
    blocking = [v for v in run_pack(program("dev"), "prod") if v.level == EnforcementLevel.MANDATORY]
    assert violated(blocking) == dev_exceptions() - UNUSED_BY_DEFAULT.keys()


@pytest.mark.parametrize(("policy", "overrides"), UNUSED_BY_DEFAULT.items())
def test_dev_variant_uses_its_exception_and_is_only_warned(policy: str, overrides: dict[str, Any]) -> None:
    found = {v.policy: v.level for v in run_pack(program("dev", **overrides), "dev")}
    assert found[policy] == EnforcementLevel.ADVISORY
    assert set(found.values()) == {EnforcementLevel.ADVISORY}


# --- mutations of prod ----------------------------------------------------------------------------------------

@functools.cache
def prod_baseline() -> frozenset[tuple[str, str, str]]:
    return frozenset((v.policy, v.urn, v.message) for v in run_pack(program("prod"), "prod"))


def new_violations(run: StackRun) -> set[str]:
    """Policies that report something for `run` beyond what the unmodified prod stack reports."""
    return {v.policy for v in run_pack(run, "prod") if (v.policy, v.urn, v.message) not in prod_baseline()}


CONFIG_FLIPS: list[tuple[dict[str, Any], set[str]]] = [
    ({"containerInsights": False}, {"ecs-container-insights"}),
    # Without tasks on Spot: validation refuses a drain longer than the Spot interruption notice. On-Demand then
    # needs room for a canary's green tasks.
    ({"deregistrationDelaySeconds": 300, "spotWeight": 0, "instanceMaxCount": 7},
     {"target-group-deregistration-delay"}),
    ({"albAccessLogs": False}, {"alb-access-logs"}),
    ({"logKmsEncryption": False}, {"log-group-kms"}),
    ({"logRetentionDays": 30}, {"log-group-retention-one-year"}),
    ({"readOnlyRootFilesystem": False}, {"ecs-read-only-root-filesystem"}),
    ({"containerUser": ""}, {"ecs-non-root-user"}),
    ({"deploymentMinimumHealthyPercent": 50}, {"ecs-service-deployment-percentages"}),
    # Not only AdministratorAccess: any *FullAccess policy attached from config.
    ({"taskRolePolicyArns": [FULL_ACCESS]}, {"iam-no-wildcard-actions-or-admin"}),
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
PRIMARY_TG = "model-serving-prod-tg"  # not the release's alternate group
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


def _drop_routes(run: StackRun, names: tuple[str, ...]) -> None:
    service = edit(run, SERVICE, lambda _: None)
    service.dependencies = [u for u in service.dependencies if not u.endswith(tuple(f"::{n}" for n in names))]
    service.property_dependencies = {key: [u for u in urns if not u.endswith(tuple(f"::{n}" for n in names))]
                                     for key, urns in service.property_dependencies.items()}


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
    edit(run, INGRESS, lambda p: p.update(fromPort=22.0, toPort=22.0), "model-serving-prod-alb-in-80-0.0.0.0_0")


def scale_to_zero_at_night(run: StackRun) -> None:
    """infra/settings/ refuses schedules in prod (instanceMinCount must then be 0); the pack refuses them too."""
    run.resources.append(fake("aws:appautoscaling/scheduledAction:ScheduledAction", "model-serving-prod-night", {
        "serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount",
        "resourceId": "service/model-serving-prod/model-serving-prod", "schedule": "cron(0 19 ? * MON-FRI *)",
        "scalableTargetAction": {"minCapacity": 0.0, "maxCapacity": 0.0}}))


def edit_user_data(change: Callable[[str], str], name: str) -> Callable[[StackRun], object]:
    def rewrite(props: dict[str, Any]) -> None:
        props["userData"] = base64.b64encode(change(base64.b64decode(props["userData"]).decode()).encode()).decode()

    return lambda run: edit(run, LT, rewrite, name)


def edit_inputs(run: StackRun, type_: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Change only the inputs: a component's state is its outputs."""
    resource = edit(run, type_, lambda _: None)
    resource.inputs = copy.deepcopy(resource.inputs)
    change(resource.inputs)


def edit_policy(type_: str, name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[StackRun], object]:
    """Change the JSON document in the `policy` input of one resource."""

    def rewrite(props: dict[str, Any]) -> None:
        document = json.loads(props["policy"])
        change(document)
        props["policy"] = json.dumps(document)

    return lambda run: edit(run, type_, rewrite, name)


def keep_statements(*sids: str) -> Callable[[dict[str, Any]], None]:
    return lambda document: document.update(Statement=[s for s in document["Statement"] if s.get("Sid") in sids])


def add_task_role_policy(document: dict[str, Any]) -> Callable[[StackRun], None]:
    def change(run: StackRun) -> None:
        role = next(r for r in run.resources if r.name == "model-serving-prod-task")
        grant = fake("aws:iam/rolePolicy:RolePolicy", "model-serving-prod-task-extra",
                     {"role": "model-serving-prod-task-mock", "policy": json.dumps(document)}, links={"role": [role]})
        run.resources.append(grant)
        service = edit(run, SERVICE, lambda _: None)  # as infra/ would: the service waits for its roles' grants
        service.dependencies = [*service.dependencies, grant.urn]

    return change


def without_ecs_managed_tag(run: StackRun) -> None:
    edit(run, ASG, lambda p: p.update(tags=[t for t in p["tags"] if t["key"] != "AmazonECSManaged"]), SPOT)


# Settings that are not configuration (fixed in infra/): the recorded inputs are edited instead.
INPUT_FLIPS: list[tuple[str, Callable[[StackRun], object], set[str]]] = [
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
    ("target type instance", set_input(TG, "targetType", "instance", PRIMARY_TG),
     {"lb-target-type-matches-network-mode"}),
    ("target group name too long", set_input(TG, "name", "model-serving-production-targets-1", PRIMARY_TG),
     {"lb-name-length"}),
    ("task larger than the instance", set_input(TD, "memory", "32768"), {"ecs-task-fits-instance-type"}),
    ("smaller instance type", set_input(LT, "instanceType", "t3.small", ON_DEMAND), {"ecs-task-fits-instance-type"}),
    ("smaller Spot instance type", set_input(ASG, "mixedInstancesPolicy.launchTemplate.overrides.0.instanceType",
                                             "c6i.large", SPOT), {"ecs-task-fits-instance-type"}),
    ("GPU task on CPU instances", set_container("resourceRequirements", [{"type": "GPU", "value": "1"}]),
     {"ecs-task-fits-instance-type"}),
    ("request-count label of the target group only",
     set_input("aws:appautoscaling/policy:Policy", "targetTrackingScalingPolicyConfiguration."
               "predefinedMetricSpecification", {"predefinedMetricType": "ALBRequestCountPerTarget",
                                                 "resourceLabel": "targetgroup/model-serving-prod-tg/73e2d6bc24d8a067"},
               "model-serving-prod-requests"), {"autoscaling-request-count-label"}),
    ("service not waiting for the capacity association",
     drop_service_dependency("model-serving-prod-capacity-providers"), {"ecs-service-depends-on-capacity-association"}),
    # prod's canary releases: the production rule and the test listener forward to the target group too, and
    # the service names the rules in loadBalancers (as a service without advancedConfiguration would not).
    ("service not waiting for the listener", lambda run: _drop_routes(run, (
        "model-serving-prod-http", "model-serving-prod-production", "model-serving-prod-test")),
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
    ("KMS key not rotated", set_input("aws:kms/key:Key", "enableKeyRotation", False,
                                      "model-serving-prod-logs"), {"kms-key-rotation"}),
    ("tasks not blocked from IMDS", edit_user_data(lambda u: u.replace("ECS_AWSVPC_BLOCK_IMDS=true\n", ""), SPOT),
     {"launch-template-blocks-task-imds"}),
    ("IMDS disabled on ECS instances", set_input(LT, "metadataOptions.httpEndpoint", "disabled", ON_DEMAND),
     {"launch-template-imdsv2"}),
    ("user data without ECS_CLUSTER", edit_user_data(lambda u: u.replace("ECS_CLUSTER=", "# ECS_CLUSTER="), ON_DEMAND),
     {"ecs-instances-join-the-cluster"}),
    ("password URL in user data", edit_user_data(lambda u: u + "MODEL_DB=postgres://u:p@db.internal/models\n", SPOT),
     {"launch-template-no-user-data-secrets"}),
    ("token in the environment", set_container("environment", [{"name": "HF_TOKEN", "value": "hf_x"}]),
     {"ecs-no-secrets-in-environment"}),
    ("access key in the command", set_container("command", ["serve", "--key", "AKIAIOSFODNN7EXAMPLE"]),
     {"ecs-no-secrets-in-environment"}),
    ("ML settings in the environment", set_container("environment", [
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"}, {"name": "MAX_NEW_TOKENS", "value": "256"}]), set()),
    ("SYS_ADMIN capability", set_container("linuxParameters.capabilities", {"add": ["SYS_ADMIN"]}),
     {"ecs-no-privileged-containers"}),
    ("image by latest", set_container("image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:latest"),
     {"ecs-image-pinned"}),
    ("load balancer port not exposed", set_container("portMappings.0.containerPort", 9090),
     {"lb-container-port-exposed"}),
    ("log group the stack does not create", set_container("logConfiguration.options.awslogs-group", "/ecs/other"),
     {"ecs-log-group-in-stack"}),
    ("Fargate-only task definition", set_input(TD, "requiresCompatibilities", ["FARGATE"]), {"ecs-task-runs-on-ec2"}),
    ("egress everywhere", set_input("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "ipProtocol", "-1",
                                    "model-serving-prod-tasks-out-https"), {"sg-no-unrestricted-egress"}),
    ("bucket open to anyone", edit_policy("aws:s3/bucketPolicy:BucketPolicy", "model-serving-prod-logs-policy",
                                          lambda d: d["Statement"][1].update(Principal="*")),
     {"resource-policy-no-public-principal"}),
    ("bucket not TLS-only", edit_policy("aws:s3/bucketPolicy:BucketPolicy", "model-serving-prod-logs-policy",
                                        keep_statements("ElbAccountDelivery", "ElbServiceDelivery")),
     {"s3-bucket-baseline"}),
    ("bucket without ELB delivery", edit_policy("aws:s3/bucketPolicy:BucketPolicy", "model-serving-prod-logs-policy",
                                                keep_statements("DenyInsecureTransport")), {"alb-access-log-delivery"}),
    ("bucket public-access block removed", drop("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                                                "model-serving-prod-logs-public-access"), {"s3-bucket-baseline"}),
    ("bucket lifecycle removed", drop("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                                      "model-serving-prod-logs-expiry"), {"s3-bucket-baseline"}),
    ("key without the CloudWatch Logs grant", edit_policy("aws:kms/key:Key", "model-serving-prod-logs",
                                                          keep_statements("AccountAdministration")),
     {"kms-key-grants-cloudwatch-logs"}),
    ("instance role without the ECS policy", drop("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                                                  "model-serving-prod-instance-AmazonEC2ContainerServiceforEC2Role"),
     {"ecs-roles-have-required-policies"}),
    ("launch template without instance profile", set_input(LT, "iamInstanceProfile", {}, SPOT),
     {"ecs-instances-join-the-cluster"}),
    ("internet-facing ALB in private subnets", set_input(LB, "subnets", ["subnet-0privat0000000000",
                                                                         "subnet-0privat0000000001"]),
     {"alb-internet-facing-in-public-subnets"}),
    ("scalable target max below min", set_input("aws:appautoscaling/target:Target", "maxCapacity", 1.0),
     {"autoscaling-min-not-above-max"}),
    ("service in one subnet", set_input(SERVICE, "networkConfiguration.subnets", ["subnet-0privat0000000000"]),
     {"ecs-service-az-spread"}),
    ("binpack before spread", set_input(SERVICE, "orderedPlacementStrategies", [
        {"type": "binpack", "field": "memory"}, {"type": "spread", "field": "attribute:ecs.availability-zone"}]),
     {"ecs-service-az-spread"}),
    ("health check accepts 5xx", set_input(TG, "healthCheck.matcher", "200-599", PRIMARY_TG),
     {"target-group-health-check"}),
    ("plain HTTP on 443", set_input("aws:lb/listener:Listener", "port", 443.0,
                                        "model-serving-prod-http"), {"alb-https-on-443"}),
    ("VPC without NAT", lambda run: edit_inputs(run, "awsx:ec2:Vpc", _set("natGateways.strategy", "None")),
     {"vpc-private-subnets-have-egress"}),
    ("task role reads every bucket", add_task_role_policy({"Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}), {"iam-no-wildcard-actions-or-admin"}),
    ("task role passes any role to RunTask", add_task_role_policy({"Statement": [
        {"Effect": "Allow", "Action": ["iam:PassRole", "ecs:RunTask"], "Resource": "*"}]}),
     {"iam-no-wildcard-actions-or-admin"}),
    ("role trusted by anyone", set_input("aws:iam/role:Role", "assumeRolePolicy", json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}), "model-serving-prod-task"),
     {"iam-role-trust-scoped-to-service"}),
]


@pytest.mark.integration  # 69 whole-stack mutations: run by .ci/run; test_policy_rules covers each rule
@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in INPUT_FLIPS],
                         ids=[label for label, _, _ in INPUT_FLIPS])
def test_flipping_a_fixed_prod_setting_is_reported(change: Callable[[StackRun], object], expected: set[str]) -> None:
    # The flips name resources of prod as shipped (Spot on, one CIDR, HTTP only): the real prod run while its
    # stack file says so, so a documented config change to prod never breaks them.
    shipped = conftest.run_with("prod", certificateArn="", ingressCidrs=["0.0.0.0/0"], **conftest.SPOT["prod"])
    run = dataclasses.replace(shipped, resources=list(shipped.resources))
    change(run)
    assert new_violations(run) == expected


def test_mutations_cover_at_least_ten_rules() -> None:
    covered = set().union(*(e for _, e in CONFIG_FLIPS), *(e for _, _, e in INPUT_FLIPS))
    assert len(covered) >= 10 and covered <= set(BY_NAME)
