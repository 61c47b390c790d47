"""Releases: the deployment configuration per strategy, the traffic resources ECS needs, the release check's
registration and exposure, the deployment peak in the capacity plan, and strategy changes on a running stack.

prod (CANARY by default) and prod-variant (CANARY with a certificate) are the shared runs of tests/conftest.py;
dev is ROLLING. Two more runs walk a dev stack from ROLLING to LINEAR in the two documented updates; every other
strategy and transition is checked on the component args (no program run).
"""

import json
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pytest

from infra.naming import AUTONAME_SUFFIX_LENGTH, TARGET_GROUP_NAME_MAX
from infra.release import CHECK_SOURCE, HOOK_STAGE, LOAD_BALANCER_POLICY, SMOKE_SET, ReleaseTraffic
from infra.service import deployment_configuration
from infra.settings import SettingsError, parse_settings
from infra.settings.args import component_args
from infra.settings.strategy import deployment_extra_tasks, service_strategy, transition_step
from tests.conftest import CERTIFICATE
from tests.harness import PROJECT, Registered, StackRun, run_stack

SERVICE = "aws:ecs/service:Service"
TG = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
RULE = "aws:lb/listenerRule:ListenerRule"
ROLE = "aws:iam/role:Role"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
FUNCTION = "aws:lambda/function:Function"
RELEASE_TYPES = (RULE, "aws:lambda/function:Function", "aws:ec2/managedPrefixList:ManagedPrefixList",
                 "model-serving:infra:Release")
TESTERS = ["198.51.100.0/24", "203.0.113.7/32"]
PROD = {"environmentClass": "prod", "minTaskCount": 2, "maxTaskCount": 4, "desiredTaskCount": 2,
        "instanceMinCount": 2, "instanceMaxCount": 6, "imageBuild": False, "image": "v1.0.0"}


def by_name(run: StackRun, type_: str, name: str) -> Registered:
    return next(r for r in run.of_type(type_) if r.name == name)


def trust(role: Registered) -> list[str]:
    return [s["Principal"]["Service"] for s in json.loads(role["assumeRolePolicy"])["Statement"]]


def policy_of(run: StackRun, role: Registered) -> list[dict[str, Any]]:
    (policy,) = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p["role"] == f"{role.name}-id"]
    statements: list[dict[str, Any]] = json.loads(policy["policy"])["Statement"]
    return statements


@pytest.fixture(scope="module")
def entering() -> StackRun:
    """dev, update 1 of ROLLING -> LINEAR: traffic resources added, the service still ROLLING."""
    return run_stack("dev", overrides={"deploymentStrategy": "LINEAR", "previousDeploymentStrategy": "ROLLING",
                                       "testListenerCidrs": TESTERS})


@pytest.fixture(scope="module")
def linear() -> StackRun:
    """dev, update 2: LINEAR with the release check."""
    return run_stack("dev", overrides={"deploymentStrategy": "LINEAR", "testListenerCidrs": TESTERS})


# --- the service's deployment configuration ---------------------------------------------------------------

def test_prod_releases_by_canary_with_the_check_as_post_test_traffic_hook(prod: StackRun) -> None:
    service, check = prod.one(SERVICE), prod.one(FUNCTION)
    hook_role = by_name(prod, ROLE, "model-serving-prod-release-hook")
    assert service["deploymentConfiguration"] == {
        "strategy": "CANARY", "bakeTimeInMinutes": "10",
        "canaryConfiguration": {"canaryPercent": 10, "canaryBakeTimeInMinutes": "10"},
        "lifecycleHooks": [{"lifecycleStages": [HOOK_STAGE], "hookTargetArn": check.state["arn"],
                            "roleArn": hook_role.state["arn"]}]}
    assert HOOK_STAGE == "POST_TEST_TRAFFIC_SHIFT"  # green has all test traffic; production still on blue
    assert prod.outputs["deploymentStrategy"] == "CANARY"
    # The circuit breaker still guards every strategy (alarms arrive from the observability piece).
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}


TRAFFIC = ReleaseTraffic(*(pulumi.Output.from_input(f"arn:{part}") for part in
                           ("alt-tg", "prod-rule", "test-rule", "ecs-lb-role", "check", "hook-role")))


@dataclass
class Expected:
    strategy: str
    canary: dict[str, Any] | None
    linear: dict[str, Any] | None


@pytest.mark.parametrize("expected", [
    Expected("BLUE_GREEN", None, None),
    Expected("LINEAR", None, {"step_percent": 25.0, "step_bake_time_in_minutes": "3"}),
    Expected("CANARY", {"canary_percent": 5.0, "canary_bake_time_in_minutes": "7"}, None),
], ids=lambda e: e.strategy)
def test_each_shifting_strategy_sends_its_own_parameters(expected: Expected) -> None:
    settings = parse_settings(PROJECT, "dev", {"deploymentStrategy": expected.strategy, "canaryPercent": 5,
                                               "canaryBakeMinutes": 7, "linearStepPercent": 25,
                                               "linearStepBakeMinutes": 3, "deploymentBakeMinutes": 20})
    deployment = component_args(settings).service.deployment
    assert deployment is not None and deployment.strategy == expected.strategy
    config = deployment_configuration(deployment, TRAFFIC)
    assert (config.strategy, config.bake_time_in_minutes) == (expected.strategy, "20")
    for block, want in ((config.canary_configuration, expected.canary), (config.linear_configuration,
                                                                         expected.linear)):
        assert (block and {key: getattr(block, key) for key in want or {}}) == want
    (hook,) = cast(list[aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs], config.lifecycle_hooks)
    assert (hook.lifecycle_stages, hook.hook_target_arn, hook.role_arn) == (
        [HOOK_STAGE], TRAFFIC.hook_function_arn, TRAFFIC.hook_role_arn)


def test_rolling_stacks_get_no_release_resources_and_no_deployment_configuration(dev: StackRun) -> None:
    assert not [r.name for r in dev.resources if r.type in RELEASE_TYPES]
    assert len(dev.of_type(TG)) == 1 and [r.name for r in dev.of_type(LISTENER)] == ["model-serving-dev-http"]
    service = dev.one(SERVICE)
    assert "deploymentConfiguration" not in service.inputs
    assert "advancedConfiguration" not in service["loadBalancers"][0]
    assert "testListenerUrl" not in dev.outputs and dev.outputs["deploymentStrategy"] == "ROLLING"


# --- load balancer resources --------------------------------------------------------------------------------

def test_alternate_target_group_matches_the_primary_and_fits_the_name_limit(prod: StackRun) -> None:
    primary, alternate = prod.one(TG, "-tg"), prod.one(TG, "-tg-alt")
    assert alternate.inputs == primary.inputs  # same port, health check, deregistration delay, algorithm
    assert len(alternate.name) + AUTONAME_SUFFIX_LENGTH <= TARGET_GROUP_NAME_MAX
    assert "name" not in alternate.inputs  # auto-named: a replacement never clashes


@pytest.mark.parametrize(("stack", "serving"), [("prod", "model-serving-prod-http"),
                                                ("prod_variant", "model-serving-prod-https")])
def test_production_and_test_rules_forward_by_weight_and_ecs_owns_the_weights(stack: str, serving: str,
                                                                              request: pytest.FixtureRequest) -> None:
    run: StackRun = request.getfixturevalue(stack)
    primary, alternate = run.one(TG, "-tg").state["arn"], run.one(TG, "-tg-alt").state["arn"]
    test_listener = by_name(run, LISTENER, "model-serving-prod-test")
    rules = {rule.name: rule for rule in run.of_type(RULE)}
    assert rules["model-serving-prod-production"]["listenerArn"] == by_name(run, LISTENER, serving).state["arn"]
    assert rules["model-serving-prod-test"]["listenerArn"] == test_listener.state["arn"]
    for rule in rules.values():
        assert rule["actions"] == [{"type": "forward", "forward": {"targetGroups": [
            {"arn": primary, "weight": 100}, {"arn": alternate, "weight": 0}]}}]
        assert rule["conditions"] == [{"pathPattern": {"values": ["/*"]}}]
        assert rule.ignore_changes == ["actions"]  # ECS moves the weights; Pulumi must not move them back
    service = run.one(SERVICE)
    assert service["loadBalancers"][0]["advancedConfiguration"] == {
        "alternateTargetGroupArn": alternate,
        "productionListenerRule": rules["model-serving-prod-production"].state["arn"],
        "testListenerRule": rules["model-serving-prod-test"].state["arn"],
        "roleArn": by_name(run, ROLE, "model-serving-prod-ecs-lb").state["arn"]}
    assert service["loadBalancers"][0]["targetGroupArn"] == primary


def test_test_listener_serves_tls_like_production_when_there_is_a_certificate(prod: StackRun,
                                                                            prod_variant: StackRun) -> None:
    plain, secured = by_name(prod, LISTENER, "model-serving-prod-test"), by_name(prod_variant, LISTENER,
                                                                                 "model-serving-prod-test")
    assert (plain["port"], plain["protocol"]) == (9000, "HTTP")
    assert (secured["port"], secured["protocol"], secured["certificateArn"]) == (9000, "HTTPS", CERTIFICATE)
    assert secured["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert prod_variant.outputs["testListenerUrl"].startswith("https://")
    assert prod_variant.one(FUNCTION)["environment"]["variables"]["TEST_URL"] == prod_variant.outputs[
        "testListenerUrl"]


def test_the_test_listener_is_never_open_to_the_internet_and_opens_per_configured_cidr(prod: StackRun,
                                                                                      linear: StackRun) -> None:
    def test_port_rules(run: StackRun) -> dict[str, Registered]:
        return {r.name: r for r in run.of_type(INGRESS) if r["fromPort"] == 9000}

    nat = prod.one("aws:ec2/managedPrefixList:ManagedPrefixList")
    assert {name: rule.get("prefixListId") for name, rule in test_port_rules(prod).items()} == {
        "model-serving-prod-test-in-nat": f"{nat.name}-id"}
    opened = test_port_rules(linear)
    assert {rule.get("cidrIpv4") for rule in opened.values()} == {None, *TESTERS}
    # Keyed by content: removing one CIDR deletes that rule only.
    assert {"model-serving-dev-test-in-198-51-100-0-24", "model-serving-dev-test-in-203-0-113-7-32"} < set(opened)
    alb = next(g for g in linear.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-alb"))
    assert all(rule["securityGroupId"] == f"{alb.name}-id" and rule["toPort"] == 9000 for rule in opened.values())


def test_infrastructure_role_has_only_the_documented_policy(prod: StackRun) -> None:
    role = by_name(prod, ROLE, "model-serving-prod-ecs-lb")
    assert trust(role) == ["ecs.amazonaws.com"]
    attached = [a["policyArn"] for a in prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a["role"] == role.state["name"]]
    assert attached == [LOAD_BALANCER_POLICY]
    assert not [p for p in prod.of_type("aws:iam/rolePolicy:RolePolicy") if p["role"] == f"{role.name}-id"]


# --- the release check ------------------------------------------------------------------------------------

def test_hook_role_may_invoke_only_the_check(prod: StackRun) -> None:
    hook_role = by_name(prod, ROLE, "model-serving-prod-release-hook")
    assert trust(hook_role) == ["ecs.amazonaws.com"]
    assert policy_of(prod, hook_role) == [{"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                           "Resource": prod.one(FUNCTION).state["arn"]}]


def test_check_runs_in_the_private_subnets_with_logs_and_network_interfaces_only(prod: StackRun) -> None:
    check = prod.one(FUNCTION)
    assert (check["runtime"], check["handler"], check["timeout"]) == ("python3.12", "check.handler", 120)
    assert check["vpcConfig"]["subnetIds"] == prod.one("awsx:ec2:Vpc").state["privateSubnetIds"]
    assert check["environment"]["variables"] == {"TEST_URL": prod.outputs["testListenerUrl"],
                                                 "MIN_ACCURACY_PERCENT": "90", "P99_MS": "1000"}
    assert {name: asset.path for name, asset in check["code"].assets.items()} == {
        "check.py": str(CHECK_SOURCE), "smoke.json": str(SMOKE_SET)}
    role = by_name(prod, ROLE, "model-serving-prod-release-check")
    assert trust(role) == ["lambda.amazonaws.com"] and check["role"] == role.state["arn"]
    statements = policy_of(prod, role)
    logs = prod.one("aws:cloudwatch/logGroup:LogGroup", "-check-logs")
    assert statements[0] == {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                             "Resource": f"{logs.state['arn']}:*"}
    assert [s["Resource"] for s in statements if s["Resource"] == "*"] == ["*"]  # Describe* only
    assert logs["kmsKeyId"] == prod.one("aws:kms/key:Key", "-logs").state["arn"]  # prod encrypts its logs
    egress = [r for r in prod.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r["securityGroupId"] == check["vpcConfig"]["securityGroupIds"][0]]
    assert [(r["fromPort"], r["toPort"]) for r in egress] == [(9000, 9000)]


# --- capacity -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("strategy", "maximum_percent", "extra"), [
    ("ROLLING", 200, 4), ("ROLLING", 150, 2), ("BLUE_GREEN", 200, 4), ("LINEAR", 100, 4), ("CANARY", 100, 4)])
def test_a_deployment_at_the_maximum_adds_green_or_the_rolling_surplus(strategy: str, maximum_percent: int,
                                                                      extra: int) -> None:
    settings = parse_settings(PROJECT, "prod", {**PROD, "deploymentStrategy": strategy,
                                                "deploymentMinimumHealthyPercent": 50,
                                                "deploymentMaximumPercent": maximum_percent})
    assert deployment_extra_tasks(settings) == extra
    (on_demand,) = settings.capacity_plan(extra)
    assert (on_demand.tasks_at_max, on_demand.tasks_at_peak) == (4, 4 + extra)


def test_a_release_that_cannot_start_green_is_refused() -> None:
    # t3.medium holds two tasks: four tasks fit three instances, blue and green together do not.
    tight = {**PROD, "instanceType": "t3.medium", "instanceMaxCount": 3, "taskCpu": 512, "taskMemoryMiB": 1024}
    parse_settings(PROJECT, "prod", {**tight, "deploymentStrategy": "ROLLING"})  # a rolling update may go slower
    with pytest.raises(SettingsError, match=r"maxTaskCount = 4: cannot be placed: a BLUE_GREEN release at the "
                                            r"maximum runs green beside blue, 8 tasks on the onDemand provider"):
        parse_settings(PROJECT, "prod", {**tight, "deploymentStrategy": "BLUE_GREEN"})


# --- settings -------------------------------------------------------------------------------------------------

def test_release_settings_are_validated_with_what_is_allowed() -> None:
    with pytest.raises(SettingsError) as raised:
        parse_settings(PROJECT, "dev", {"deploymentStrategy": "RED_BLACK", "canaryPercent": 0,
                                        "linearStepPercent": 2, "deploymentBakeMinutes": 1441,
                                        "testListenerCidrs": ["0.0.0.0/99"]})
    message = str(raised.value)
    for line in ("deploymentStrategy = 'RED_BLACK': must be one of auto, ROLLING, BLUE_GREEN, LINEAR, CANARY",
                 "canaryPercent = 0: must be from 1 to 100", "linearStepPercent = 2: must be from 3 to 100",
                 "deploymentBakeMinutes = 1441: must be from 0 to 1440",
                 "testListenerCidrs = '0.0.0.0/99': must be an IPv4 CIDR"):
        assert line in message.replace('"', "'"), line
    with pytest.raises(SettingsError, match="testListenerPort = 443: must not be 80 or 443"):
        parse_settings(PROJECT, "dev", {"testListenerPort": 443, "deploymentStrategy": "CANARY"})


def test_an_existing_vpc_needs_the_addresses_the_check_comes_from() -> None:
    existing = {"existingVpcId": "vpc-0aaaaaaaaaaaaaaaa",
                "existingPublicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
                "existingPrivateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1"], "deploymentStrategy": "BLUE_GREEN"}
    with pytest.raises(SettingsError, match=r"testListenerCidrs = \[\]: must list the NAT gateway addresses"):
        parse_settings(PROJECT, "dev", existing)
    parse_settings(PROJECT, "dev", {**existing, "testListenerCidrs": ["203.0.113.10/32"]})


# --- changing the strategy of a running service ------------------------------------------------------------

@pytest.mark.parametrize(("stack", "target", "previous", "service", "traffic", "hook"), [
    ("dev", "auto", "none", "ROLLING", False, False),
    ("prod", "auto", "none", "CANARY", True, True),
    ("dev", "CANARY", "ROLLING", "ROLLING", True, False),  # entering: resources first
    ("prod", "ROLLING", "CANARY", "ROLLING", True, False),  # leaving: resources kept, either group may be live
    ("prod", "auto", "ROLLING", "ROLLING", True, False),  # an existing prod stack upgraded to the CANARY default
    ("dev", "BLUE_GREEN", "CANARY", "BLUE_GREEN", True, True),  # within the shifting family: one update
    ("dev", "LINEAR", "LINEAR", "LINEAR", True, True),
])
def test_each_transition_runs_what_ecs_accepts_in_one_update(stack: str, target: str, previous: str, service: str,
                                                             traffic: bool, hook: bool) -> None:
    base = PROD if stack == "prod" else {}
    settings = parse_settings(PROJECT, stack, {**base, "deploymentStrategy": target,
                                               "previousDeploymentStrategy": previous})
    args = component_args(settings)
    assert service_strategy(settings) == service
    assert (args.release is not None, bool(args.release and args.release.check)) == (traffic, hook)
    assert (args.service.deployment.strategy if args.service.deployment else "ROLLING") == service
    wanted = {"auto": "CANARY" if stack == "prod" else "ROLLING"}.get(target, target)
    assert bool(transition_step(settings)) == (service != wanted)


def test_rolling_to_linear_takes_two_updates_and_replaces_nothing(dev: StackRun, entering: StackRun,
                                                                  linear: StackRun) -> None:
    def resources(run: StackRun) -> dict[str, Registered]:
        return {r.urn: r for r in run.resources}

    before, step1, step2 = resources(dev), resources(entering), resources(linear)
    # Update 1 adds the traffic resources, keeps every URN, and changes only the service among the existing ones.
    assert set(before) < set(step1)
    changed = {before[urn].name for urn in before if before[urn].inputs != step1[urn].inputs}
    # The service, and what now watches the alternate target group too: the unhealthy-targets alarm, the
    # dashboard and the requests scaling policy (requests per healthy target of both groups).
    assert changed == {"model-serving-dev", "model-serving-dev-unhealthy-targets", "model-serving-dev-requests"}
    service1 = entering.one(SERVICE)
    assert service1["deploymentConfiguration"] == {"strategy": "ROLLING"}
    assert "advancedConfiguration" in service1["loadBalancers"][0]
    assert not entering.of_type(FUNCTION)
    assert any("step 1 of 2 towards LINEAR" in warning for warning in entering.warnings)
    assert entering.outputs["deploymentStrategy"] == "ROLLING"  # what the next update names as previous
    # Update 2 adds only the check and its hook; the traffic resources stay exactly as they were.
    assert set(step1) < set(step2)
    assert {step2[urn].type for urn in set(step2) - set(step1)} >= {FUNCTION, ROLE}
    assert all(step1[urn].inputs == step2[urn].inputs for urn in step1 if step1[urn].type != SERVICE)
    service2 = linear.one(SERVICE)
    assert service2["deploymentConfiguration"]["strategy"] == "LINEAR"
    assert service2["deploymentConfiguration"]["linearConfiguration"] == {"stepPercent": 20,
                                                                           "stepBakeTimeInMinutes": "5"}
    assert service2["loadBalancers"] == service1["loadBalancers"]
    assert not any("step 1 of 2" in w for w in linear.warnings) and linear.outputs["deploymentStrategy"] == "LINEAR"
