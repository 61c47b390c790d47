"""tools/verify_deployment.py against moto (ECS, ELBv2, CloudWatch, (Application) Auto Scaling, EC2) and 127.0.0.1
servers.

One healthy world is built once per module; each unhealthy case changes one thing and puts it back. Where
moto does not model a field, the one call is patched through `Seam`, which answers with moto's own response
changed as the real API would answer and checks the result against botocore's model of that response.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import pytest
from moto import mock_aws

from tests.harness import StackRun
from tests.local_http import serving
from tests.test_readme import readme_table
from tools import verify_deployment as vd
from tools.verify_deployment import Clients, Http, Outputs

pytestmark = pytest.mark.integration  # tests/conftest.py: run by .ci/run, not by the quick suite

REGION = "us-east-1"
AMI, NEW_AMI = "ami-0aaaaaaaaaaaaaaa1", "ami-0bbbbbbbbbbbbbbb2"
ALARMS = ("model-serving-dev-target-5xx-rate", "model-serving-dev-latency-p99")
SMOKE = vd.load_smoke(vd.SMOKE_SET)[1]


class Seam:
    """A boto3 client whose listed operations answer `override(real_call, **kwargs)`; the rest go to moto.

    Only for fields moto does not model (the comment at each use says which). The answer must fit botocore's
    output shape of the operation, as botocore's Stubber requires of its canned responses."""

    def __init__(self, client: Any, **overrides: Callable[..., dict[str, Any]]):
        self._client, self._overrides = client, overrides

    def __getattr__(self, name: str) -> Any:
        if name not in self._overrides:
            return getattr(self._client, name)
        from botocore.validate import validate_parameters  # noqa: PLC0415 - only when a seam is used

        operation = self._client.meta.method_to_api_mapping[name]
        shape = self._client.meta.service_model.operation_model(operation).output_shape

        def call(**kwargs: Any) -> dict[str, Any]:
            response = self._overrides[name](getattr(self._client, name), **kwargs)
            validate_parameters({k: v for k, v in response.items() if k != "ResponseMetadata"}, shape)
            return response

        return call


@dataclasses.dataclass
class World:
    clients: Clients
    outputs: Outputs
    http: Http
    answers: dict[str, tuple[int, bytes]]
    vpc: str
    subnets: list[str]
    targets: list[dict[str, Any]]
    task_definition_bridge: str
    template_id: str
    alternate_target_group: str
    posted: list[bytes] = dataclasses.field(default_factory=list)  # bodies the endpoint received

    def with_seams(self, **services: dict[str, Callable[..., dict[str, Any]]]) -> Clients:
        return dataclasses.replace(self.clients, **{name: Seam(getattr(self.clients, name), **overrides)
                                                    for name, overrides in services.items()})


def steady(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """moto leaves a new service's deployment IN_PROGRESS with no running task (it starts no containers):
    answer as ECS does once the deployment has reached a steady state."""
    response = real(**kwargs)
    for service in response["services"]:
        service["runningCount"] = service["desiredCount"]
        for deployment in service["deployments"]:
            deployment.update(rolloutState="COMPLETED", rolloutStateReason="ECS deployment completed.",
                              runningCount=deployment["desiredCount"], pendingCount=0)
    return response


def _build(port: int) -> World:
    session = boto3.Session(region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    clients = Clients(*(session.client(n) for n in Clients.SERVICES))
    ec2, ecs, elbv2, autoscaling = clients.ec2, clients.ecs, clients.elbv2, clients.autoscaling
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")
               ["Subnet"]["SubnetId"] for i, zone in enumerate("ab")]
    security_group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    template = ec2.create_launch_template(LaunchTemplateName="instances", LaunchTemplateData={
        "ImageId": AMI, "InstanceType": "t3.medium"})["LaunchTemplate"]["LaunchTemplateId"]
    # As infra/cluster.py: the On-Demand group names the template, the Spot group a mixed-instances policy.
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="instances", MinSize=1, MaxSize=2, DesiredCapacity=1,
        VPCZoneIdentifier=",".join(subnets), LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="spot", MinSize=1, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=",".join(subnets),
        MixedInstancesPolicy={"LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "1"},
            "Overrides": [{"InstanceType": "t3.medium"}, {"InstanceType": "t3a.medium"}]}})
    ecs.create_cluster(clusterName="cluster")
    for provider, group in (("cp-on-demand", "instances"), ("cp-spot", "spot")):
        arn = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0][
            "AutoScalingGroupARN"]
        ecs.create_capacity_provider(name=provider, autoScalingGroupProvider={
            "autoScalingGroupArn": arn, "managedTerminationProtection": "ENABLED"})
    associate(ecs, ["cp-on-demand", "cp-spot"])
    for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]:
        for instance in group["Instances"]:
            ecs.register_container_instance(cluster="cluster", instanceIdentityDocument=json.dumps(
                {"instanceId": instance["InstanceId"], "region": REGION}))
    container = [{"name": "model-server", "image": "model-server:1", "memory": 512,
                  "portMappings": [{"containerPort": 8080}]}]
    task_definition = ecs.register_task_definition(family="model-server", networkMode="awsvpc",
                                                   containerDefinitions=container)["taskDefinition"]
    # moto's RunTask fails for awsvpc tasks, so the stopped tasks of the loop cases run a bridge copy.
    bridge = ecs.register_task_definition(family="model-server-bridge", containerDefinitions=container)[
        "taskDefinition"]["taskDefinitionArn"]
    target_group, alternate = (elbv2.create_target_group(
        Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip", HealthCheckPath="/health")[
        "TargetGroups"][0]["TargetGroupArn"] for name in ("tg", "tg-alternate"))
    ecs.create_service(cluster="cluster", serviceName="service", taskDefinition=task_definition["taskDefinitionArn"],
                       desiredCount=2, loadBalancers=[{"targetGroupArn": target_group,
                                                       "containerName": "model-server", "containerPort": 8080}],
                       networkConfiguration={"awsvpcConfiguration": {"subnets": subnets,
                                                                     "securityGroups": [security_group]}})
    # The tasks' network interfaces, one per AZ: an `ip` target's AZ is its interface's.
    targets = []
    for i, subnet in enumerate(subnets):
        address = f"10.0.{i}.10"
        ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=address, Groups=[security_group])
        targets.append({"Id": address, "Port": 8080})
    elbv2.register_targets(TargetGroupArn=target_group, Targets=targets)
    for name in (*ALARMS, "model-serving-dev-eu-target-5xx-rate"):
        clients.cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    # Another stack's alarm whose name starts with this stack's: not this stack's.
    clients.cloudwatch.set_alarm_state(AlarmName="model-serving-dev-eu-target-5xx-rate", StateValue="ALARM",
                                       StateReason="not this stack")
    outputs = Outputs.from_json({
        "serviceUrl": f"http://127.0.0.1:{port}", "clusterName": "cluster", "serviceName": "service",
        "taskDefinitionArn": task_definition["taskDefinitionArn"], "targetGroupArn": target_group,
        "environmentClass": "dev", "autoScalingGroupName": "instances", "capacityProviderName": "cp-on-demand",
        "spotAutoScalingGroupName": "spot", "spotCapacityProviderName": "cp-spot", "alarmNames": list(ALARMS)})
    answers = {"GET": (200, b'{"status": "ok"}'), "POST": (200, b'{"predictions": []}')}
    return World(dataclasses.replace(clients, ecs=Seam(ecs, describe_services=steady)), outputs,
                 Http(outputs.service_url, SMOKE, timeout=2), answers, vpc, subnets, targets, bridge, template,
                 alternate)


def associate(ecs: Any, providers: list[str]) -> None:
    ecs.put_cluster_capacity_providers(cluster="cluster", capacityProviders=providers,
                                       defaultCapacityProviderStrategy=[{"capacityProvider": "cp-on-demand",
                                                                         "weight": 1}])


@contextlib.contextmanager
def api_models_parsed_once() -> Iterator[None]:
    """Each boto3 client and each moto backend parses its AWS API model anew: EC2's alone, about 0.1 s a time,
    is parsed six times while the world is built. The files do not change, so parse each once; both readers
    only add extra shapes to what they get, the same ones every time."""
    original, parsed = botocore.loaders.JSONFileLoader.load_file, {}

    def load_file(self: Any, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = original(self, file_path)
        return parsed[file_path]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.loaders.JSONFileLoader, "load_file", load_file)
        yield


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    answers: dict[str, tuple[int, bytes]] = {}
    posted: list[bytes] = []

    def post(path: str, body: bytes) -> tuple[int, bytes]:
        posted.append(body)
        return answers["POST"] if path == vd.PREDICT_PATH else (404, b"")

    with mock_aws(), serving(lambda path: answers["GET"] if path == "/health" else (404, b""), post) as port:
        with api_models_parsed_once():
            built = _build(port)
        answers.update(built.answers)
        built.answers = answers
        built.posted = posted
        yield built


def verify(world: World, clients: Clients | None = None, outputs: Outputs | None = None,
           timeout: float = 1) -> tuple[bool, list[str]]:
    """One round (the timeout is shorter than the interval); the printed lines."""
    lines: list[str] = []
    clock = itertools.count(0, 5)
    ok = vd.verify(clients or world.clients, outputs or world.outputs, world.http, timeout=timeout, interval=5,
                   out=lines.append, sleep=lambda _: None, clock=lambda: float(next(clock)))
    return ok, lines


def failures(world: World, clients: Clients | None = None, outputs: Outputs | None = None, *,
             only: str) -> dict[str, str]:
    """Run the one check a case is about (a full round costs eight): {its name: its message}; it must fail."""
    run = vd.checks(clients or world.clients, outputs or world.outputs, world.http)[only]
    result = vd.guarded(only, run)
    assert not result.ok, result
    return {only: result.detail}


def test_a_healthy_deployment_passes_every_check(world: World) -> None:
    ok, lines = verify(world)
    assert ok, lines
    assert [line.split(":")[0] for line in lines if line.startswith("PASS")] == [f"PASS {c}" for c in vd.CHECKS]
    passed = "\n".join(lines)
    assert "2 healthy targets in us-east-1a, us-east-1b" in passed
    assert f"2 container instances on their launch templates' AMIs ({AMI})" in passed
    assert "none of the stack's 2 alarms is in ALARM" in passed  # not the dev-eu stack's alarm
    assert "cp-on-demand, cp-spot ACTIVE and associated" in passed
    assert world.posted[-1] == SMOKE
    assert lines[-1].startswith("verify_deployment: all 8 checks hold")


def test_prod_like_stack_passes_with_targets_in_two_azs(world: World) -> None:
    ok, lines = verify(world, outputs=dataclasses.replace(world.outputs, prod_like=True))
    assert ok, lines


@contextlib.contextmanager
def one_target(world: World) -> Iterator[None]:
    world.clients.elbv2.deregister_targets(TargetGroupArn=world.outputs.target_group_arn,
                                           Targets=world.targets[1:])
    try:
        yield
    finally:
        world.clients.elbv2.register_targets(TargetGroupArn=world.outputs.target_group_arn, Targets=world.targets)


def test_prod_like_stack_fails_with_every_target_in_one_az(world: World) -> None:
    with one_target(world):
        assert verify(world)[0], "one AZ is enough for dev"
        failing = failures(world, outputs=dataclasses.replace(world.outputs, prod_like=True), only="targets")
    assert failing == {"targets": "1 healthy target, all in us-east-1a: a prod-like stack needs healthy "
                                  "targets in at least two AZs"}


def deployments(primary: dict[str, Any], *others: dict[str, Any], running: int = 2) -> Callable[..., Any]:
    """ECS mid-deployment or after a rollback (moto keeps one PRIMARY deployment and no rolloutState)."""
    def describe(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        response = steady(real, **kwargs)
        service = response["services"][0]
        template = service["deployments"][0]
        service["deployments"] = [{**template, **primary}] + [{**template, **other} for other in others]
        service["runningCount"] = running
        service["desiredCount"] = primary.get("desiredCount", service["desiredCount"])
        return response
    return describe


OLD_TASK_DEFINITION = "arn:aws:ecs:us-east-1:123456789012:task-definition/model-server:0"


@pytest.mark.parametrize(("describe", "message", "final"), [
    (deployments({"rolloutState": "IN_PROGRESS", "runningCount": 1},
                 {"id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": OLD_TASK_DEFINITION, "runningCount": 2},
                 running=3),
     "is IN_PROGRESS, 3/2 tasks running; still there: ACTIVE ecs-svc/1 (2 running)", False),
    (deployments({"rolloutState": "COMPLETED"}, running=1), "COMPLETED but 1/2 tasks running", False),
    (deployments({"rolloutState": "COMPLETED"},
                 {"id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": OLD_TASK_DEFINITION, "runningCount": 1}),
     "is COMPLETED, 2/2 tasks running; still there: ACTIVE ecs-svc/1 (1 running)", False),
    (deployments({"rolloutState": "FAILED", "rolloutStateReason": "ECS deployment circuit breaker: tasks failed "
                                                                  "to start."}),
     "FAILED: ECS deployment circuit breaker: tasks failed to start.", True),
    (deployments({"taskDefinition": OLD_TASK_DEFINITION, "rolloutStateReason": "rolled back"}),
     "the service does not run the stack's task definition model-server:1: the PRIMARY deployment", True),
    (deployments({"taskDefinition": OLD_TASK_DEFINITION, "rolloutState": "IN_PROGRESS"},
                 {"status": "ACTIVE", "rolloutState": "FAILED"}),
     "ECS is rolling back from the stack's task definition model-server:1", True),
], ids=["in-progress", "fewer-running", "old-tasks-draining", "failed", "rolled-back", "rolling-back"])
def test_an_unfinished_or_rolled_back_deployment_fails(world: World, describe: Callable[..., Any], message: str,
                                                       final: bool) -> None:
    # rolloutState, a second deployment and runningCount: moto does not model them.
    clients = world.with_seams(ecs={"describe_services": describe})
    result = vd.checks(clients, world.outputs, world.http)["deployment"]()
    assert not result.ok
    assert message in result.detail
    assert result.final is final  # final: waiting cannot help


def test_a_final_failure_ends_the_polling_at_once(world: World) -> None:
    slept: list[float] = []
    lines: list[str] = []
    clients = world.with_seams(ecs={"describe_services": deployments({"rolloutState": "FAILED"})})
    clock = itertools.count(0, 15)
    assert not vd.verify(clients, world.outputs, world.http, timeout=600, interval=15, out=lines.append,
                         sleep=slept.append, clock=lambda: float(next(clock)))
    assert slept == []
    assert lines[-1] == "verify_deployment: 1 of 8 checks failed for good: deployment"


@contextlib.contextmanager
def scalable_target(world: World, max_capacity: int | None) -> Iterator[None]:
    """The service's scalable target (None: none) with minimum 0 and this maximum: 0 is what the stack's
    scale-to-zero action sets (infra/autoscaling.py), more is autoscaling allowed to go to zero."""
    autoscaling = world.clients.application_autoscaling
    target = {"ServiceNamespace": "ecs", "ResourceId": "service/cluster/service",
              "ScalableDimension": "ecs:service:DesiredCount"}
    if max_capacity is not None:
        autoscaling.register_scalable_target(**target, MinCapacity=0, MaxCapacity=max_capacity)
    try:
        yield
    finally:
        if max_capacity is not None:
            autoscaling.deregister_scalable_target(**target)


ZERO_TASKS = deployments({"desiredCount": 0, "runningCount": 0}, running=0)


@contextlib.contextmanager
def night(world: World) -> Iterator[None]:
    """What scale-to-zero leaves: no target registered, no container instance (managed scaling emptied the
    groups), nothing answering at the URL."""
    ecs, elbv2 = world.clients.ecs, world.clients.elbv2
    elbv2.deregister_targets(TargetGroupArn=world.outputs.target_group_arn, Targets=world.targets)
    instances = [c["ec2InstanceId"] for c in ecs.describe_container_instances(
        cluster="cluster", containerInstances=ecs.list_container_instances(cluster="cluster")[
            "containerInstanceArns"])["containerInstances"]]
    for arn in ecs.list_container_instances(cluster="cluster")["containerInstanceArns"]:
        ecs.deregister_container_instance(cluster="cluster", containerInstance=arn, force=True)
    healthy = dict(world.answers)
    world.answers.update(GET=(503, b""), POST=(503, b""))
    try:
        yield
    finally:
        world.answers.update(healthy)
        for instance in instances:
            ecs.register_container_instance(cluster="cluster", instanceIdentityDocument=json.dumps(
                {"instanceId": instance, "region": REGION}))
        elbv2.register_targets(TargetGroupArn=world.outputs.target_group_arn, Targets=world.targets)


def test_a_service_its_schedule_scaled_to_zero_passes_skipping_the_checks_that_need_tasks(world: World) -> None:
    clients = world.with_seams(ecs={"describe_services": ZERO_TASKS})
    with night(world), scalable_target(world, max_capacity=0):
        ok, lines = verify(world, clients)
    assert ok, lines
    reason = "the service is scaled to zero by its schedule (its scalable target's maximum is 0 until the scale-up)"
    final = {line.split(":")[0]: line for line in lines if not line.startswith(("[", "verify_deployment"))}
    assert list(final) == [f"{'SKIPPED' if c in vd.NEED_TASKS else 'PASS'} {c}" for c in vd.CHECKS]
    for check in vd.NEED_TASKS:
        assert final[f"SKIPPED {check}"] == f"SKIPPED {check}: {reason}: no task to check"
    assert final["PASS deployment"].endswith(f"COMPLETED, 0/0 tasks running model-server:1: {reason}")
    assert final["PASS instances"] == ("PASS instances: no container instance is registered with cluster cluster, "
                                       f"and none is needed: {reason}")
    assert lines[-1] == ("verify_deployment: 5 of 8 checks hold, 3 SKIPPED (the service is scaled to zero by its "
                         "schedule: targets, GET health, POST /predict) after 5 s")


def test_scaled_to_zero_by_its_schedule_still_needs_the_stacks_task_definition(world: World) -> None:
    clients = world.with_seams(ecs={"describe_services": deployments(
        {"desiredCount": 0, "taskDefinition": OLD_TASK_DEFINITION, "rolloutStateReason": "rolled back"}, running=0)})
    with scalable_target(world, max_capacity=0):
        failing = failures(world, clients, only="deployment")["deployment"]
    assert failing.startswith("the service does not run the stack's task definition model-server:1")


@pytest.mark.parametrize("max_capacity", [None, 2], ids=["no-scalable-target", "maximum-above-zero"])
def test_a_service_scaled_to_zero_otherwise_fails_saying_so(world: World, max_capacity: int | None) -> None:
    clients = world.with_seams(ecs={"describe_services": ZERO_TASKS})
    with night(world), scalable_target(world, max_capacity):
        assert "the service wants 0 tasks (a schedule scales it" in failures(world, clients, only="deployment")[
            "deployment"]
        assert failures(world, clients, only="targets") == {"targets": "no target registered in tg"}
        assert failures(world, clients, only="instances") == {
            "instances": "no container instance is registered with cluster cluster"}
        assert "/health answered 503" in failures(world, clients, only="GET health")["GET health"]


def stopped(world: World, service: str, reasons: list[tuple[str, str]]) -> Callable[..., Any]:
    """A service of the world's cluster with tasks stopped for `reasons` ((stoppedReason, stopCode)) since its
    deployment began. moto records the stoppedReason; stoppedAt and stopCode it does not model."""
    ecs = world.clients.ecs
    ecs.create_service(cluster="cluster", serviceName=service, taskDefinition=world.task_definition_bridge,
                       desiredCount=0)
    started = datetime.now(UTC)
    codes = {}
    for reason, code in reasons:
        task = ecs.run_task(cluster="cluster", taskDefinition=world.task_definition_bridge, group=f"service:{service}",
                            startedBy="ecs-svc/2")["tasks"][0]["taskArn"]
        ecs.stop_task(cluster="cluster", task=task, reason=reason)
        codes[task] = code

    def describe_tasks(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        response = real(**kwargs)
        for task in response["tasks"]:
            if task["taskArn"] not in codes:  # moto's ListTasks ignores serviceName: other tests' tasks
                continue
            number = list(codes).index(task["taskArn"])
            task.update(stopCode=codes[task["taskArn"]], stoppedAt=started + timedelta(minutes=number + 1))
            for container in task["containers"]:
                container.update(exitCode=3, reason="")
        return response
    return describe_tasks


LOOP = [("Essential container in task exited", "EssentialContainerExited"),
        ("Task failed ELB health checks in (target-group tg)", "ServiceSchedulerInitiated")]
NOT_A_LOOP = [("Scaling activity initiated by (deployment ecs-svc/2)", "ServiceSchedulerInitiated"),
              ("Scaling activity initiated by (deployment ecs-svc/2)", "ServiceSchedulerInitiated"),
              ("Your Spot Task was interrupted.", "SpotInterruption"),
              ("Essential container in task exited", "EssentialContainerExited")]


@pytest.mark.parametrize(("reasons", "message"), [
    (LOOP, "2 tasks stopped since deployment ecs-svc/2 began (a task is stopping in a loop); the last, "),
    (NOT_A_LOOP, None),
], ids=["loop", "scale-in-spot-and-one-crash"])
def test_tasks_stopping_in_a_loop_fail_naming_the_last_reason(world: World, reasons: list[tuple[str, str]],
                                                               message: str | None, request: pytest.FixtureRequest
                                                               ) -> None:
    service = f"stopping-{request.node.callspec.id}"
    describe_tasks = stopped(world, service, reasons)

    def created_before_the_stops(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        response = steady(real, **kwargs)
        response["services"][0]["deployments"][0].update(id="ecs-svc/2", createdAt=datetime.now(UTC) - timedelta(1))
        return response

    outputs = dataclasses.replace(world.outputs, service=service, task_definition_arn=world.task_definition_bridge)
    clients = world.with_seams(ecs={"describe_tasks": describe_tasks, "describe_services": created_before_the_stops})
    result = vd.check_stopped_tasks(clients, outputs, vd.describe_service(clients, outputs))
    if message is None:
        assert result.ok
        assert "one task stopped since the deployment began, not a loop" in result.detail
        return
    assert not result.ok
    assert message in result.detail
    assert result.detail.endswith("Task failed ELB health checks in (target-group tg) [ServiceSchedulerInitiated] "
                                  "(container model-server: exit code 3)")


def test_stops_before_the_deployment_began_are_not_counted(world: World) -> None:
    service = "stopped-before"
    describe_tasks = stopped(world, service, LOOP)

    def created_after(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        response = steady(real, **kwargs)
        response["services"][0]["deployments"][0]["createdAt"] = datetime.now(UTC) + timedelta(hours=1)
        return response

    clients = world.with_seams(ecs={"describe_tasks": describe_tasks, "describe_services": created_after})
    outputs = dataclasses.replace(world.outputs, service=service)
    assert vd.check_stopped_tasks(clients, outputs, vd.describe_service(clients, outputs)).ok


def test_an_unhealthy_target_fails_naming_it_and_why(world: World) -> None:
    def one_unhealthy(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        # moto reports every registered target healthy: answer as the ALB does for a failing health check.
        response = real(**kwargs)
        response["TargetHealthDescriptions"][1]["TargetHealth"] = {
            "State": "unhealthy", "Reason": "Target.ResponseCodeMismatch",
            "Description": "Health checks failed with these codes: [503]"}
        return response

    failing = failures(world, world.with_seams(elbv2={"describe_target_health": one_unhealthy}), only="targets")
    assert failing == {"targets": "1 of 2 targets not healthy: 10.0.1.10:8080 unhealthy "
                                  "(Target.ResponseCodeMismatch: Health checks failed with these codes: [503])"}


def blue_green(world: World) -> Clients:
    """A service released with BLUE_GREEN, LINEAR or CANARY: its load balancer also names the alternate target
    group (moto does not model advancedConfiguration)."""
    def describe(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        response = steady(real, **kwargs)
        for balancer in response["services"][0]["loadBalancers"]:
            balancer["advancedConfiguration"] = {
                "alternateTargetGroupArn": world.alternate_target_group,
                "roleArn": "arn:aws:iam::123456789012:role/release",
                "productionListenerRule": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/alb/"
                                          "0123456789abcdef/0123456789abcdef/0123456789abcdef"}
        return response
    return world.with_seams(ecs={"describe_services": describe})


def test_after_a_release_the_targets_may_be_in_the_alternate_target_group(world: World) -> None:
    elbv2, primary = world.clients.elbv2, world.outputs.target_group_arn
    elbv2.deregister_targets(TargetGroupArn=primary, Targets=world.targets)
    elbv2.register_targets(TargetGroupArn=world.alternate_target_group, Targets=world.targets)
    try:
        result = vd.checks(blue_green(world), world.outputs, world.http)["targets"]()
        assert result.ok, result
        assert result.detail == "2 healthy targets in us-east-1a, us-east-1b"
        assert failures(world, only="targets") == {"targets": "no target registered in tg"}  # a ROLLING service
    finally:
        elbv2.deregister_targets(TargetGroupArn=world.alternate_target_group, Targets=world.targets)
        elbv2.register_targets(TargetGroupArn=primary, Targets=world.targets)
    assert vd.checks(blue_green(world), world.outputs, world.http)["targets"]().ok  # back on the primary group


def test_no_registered_target_fails(world: World) -> None:
    world.clients.elbv2.deregister_targets(TargetGroupArn=world.outputs.target_group_arn, Targets=world.targets)
    try:
        failing = failures(world, blue_green(world), only="targets")
    finally:
        world.clients.elbv2.register_targets(TargetGroupArn=world.outputs.target_group_arn, Targets=world.targets)
    assert failing == {"targets": "no target registered in tg, tg-alternate"}


def test_a_capacity_provider_not_associated_fails(world: World) -> None:
    associate(world.clients.ecs, ["cp-on-demand"])
    try:
        failing = failures(world, only="capacity")
    finally:
        associate(world.clients.ecs, ["cp-on-demand", "cp-spot"])
    assert failing == {"capacity": "cp-spot is not associated with cluster cluster"}


def test_a_capacity_provider_not_active_fails_with_the_reason(world: World) -> None:
    def update_failed(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        # moto creates providers ACTIVE and never fails an update: answer as ECS does after a failed one.
        response = real(**kwargs)
        response["capacityProviders"][1].update(status="ACTIVE", updateStatus="UPDATE_FAILED",
                                                updateStatusReason="the Auto Scaling group is being deleted")
        response["capacityProviders"][0].update(status="INACTIVE")
        return response

    failing = failures(world, world.with_seams(ecs={"describe_capacity_providers": update_failed}), only="capacity")
    assert failing == {"capacity": "cp-on-demand is INACTIVE; cp-spot is ACTIVE, UPDATE_FAILED: the Auto Scaling "
                                   "group is being deleted"}


def test_instances_on_an_older_ami_than_the_launch_template_names_fail(world: World) -> None:
    autoscaling, ec2 = world.clients.autoscaling, world.clients.ec2
    ec2.create_launch_template_version(LaunchTemplateId=world.template_id, SourceVersion="1",
                                       LaunchTemplateData={"ImageId": NEW_AMI})
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="instances",
                                          LaunchTemplate={"LaunchTemplateId": world.template_id, "Version": "2"})
    try:
        failing = failures(world, only="instances")
    finally:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName="instances",
                                              LaunchTemplate={"LaunchTemplateId": world.template_id, "Version": "1"})
    message = failing["instances"]
    assert set(failing) == {"instances"}
    assert f"(instances) runs {AMI}, but {world.template_id} version 2 names {NEW_AMI}: replace" in message
    assert "(spot)" not in message  # the Spot group still launches version 1


def test_an_alarm_of_the_stack_in_alarm_fails_naming_it(world: World) -> None:
    cloudwatch = world.clients.cloudwatch
    cloudwatch.set_alarm_state(AlarmName=ALARMS[1], StateValue="ALARM",
                               StateReason="Threshold Crossed: 1 datapoint [2.1] > 1.0")
    try:
        failing = failures(world, only="alarms")
    finally:
        cloudwatch.set_alarm_state(AlarmName=ALARMS[1], StateValue="OK", StateReason="test")
    assert failing == {"alarms": f"{ALARMS[1]} is in ALARM (Threshold Crossed: 1 datapoint [2.1] > 1.0)"}


def test_an_alarm_of_the_stack_that_is_gone_fails(world: World) -> None:
    outputs = dataclasses.replace(world.outputs, alarm_names=(*ALARMS, "model-serving-dev-cpu-high"))
    assert failures(world, outputs=outputs, only="alarms") == {
        "alarms": "model-serving-dev-cpu-high does not exist (deleted outside Pulumi? `pulumi up` recreates it)"}


@pytest.mark.parametrize(("method", "answer", "name", "message"), [
    ("GET", (503, b'{"status": "loading"}'), "GET health", '/health answered 503: {"status": "loading"}'),
    ("POST", (500, b'{"detail": "internal error"}'), "POST /predict",
     '/predict answered 500: {"detail": "internal error"}'),
])
def test_an_endpoint_that_does_not_answer_200_fails(world: World, method: str, answer: tuple[int, bytes],
                                                    name: str, message: str) -> None:
    healthy = world.answers[method]
    world.answers[method] = answer
    try:
        failing = failures(world, only=name)
    finally:
        world.answers[method] = healthy
    assert failing == {name: f"{method} {world.outputs.service_url}{message}"}


def test_an_unreachable_endpoint_fails_with_the_reason(world: World) -> None:
    http = Http("http://127.0.0.1:9", SMOKE, timeout=1)  # the discard port: nothing listens
    result = vd.check_http(http, "GET", "/health")
    assert not result.ok
    assert result.detail.startswith("GET http://127.0.0.1:9/health failed: ")


def test_an_aws_error_fails_that_check_with_its_message(world: World) -> None:
    outputs = dataclasses.replace(world.outputs, cluster="no-such-cluster")
    assert failures(world, outputs=outputs, only="deployment")["deployment"].startswith("ClusterNotFoundException: ")


def test_it_polls_until_the_deployment_completes_printing_progress(world: World) -> None:
    rounds: list[int] = []

    def completes_on_the_second_look(real: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        rounds.append(1)
        state = "COMPLETED" if len(rounds) >= 2 else "IN_PROGRESS"
        return deployments({"rolloutState": state})(real, **kwargs)

    clock = iter(range(0, 100, 15))
    slept: list[float] = []
    lines: list[str] = []
    ok = vd.verify(world.with_seams(ecs={"describe_services": completes_on_the_second_look}), world.outputs,
                   world.http, timeout=600, interval=15, out=lines.append, sleep=slept.append,
                   clock=lambda: float(next(clock)))
    assert ok
    assert slept == [15]
    progress = [line for line in lines if "deployment:" in line and line.startswith("[")]
    assert progress[0].startswith("[   15s] waiting deployment: deployment ecs-svc/")
    assert progress[1].startswith("[   30s] ok      deployment: ")
    assert sum(line.startswith("[   30s]") for line in lines) == 1  # only what changed is printed again


def test_it_gives_up_at_the_timeout(world: World) -> None:
    clock = iter(range(0, 1000, 10))
    slept: list[float] = []
    lines: list[str] = []
    ok = vd.verify(world.with_seams(ecs={"describe_services": deployments({"rolloutState": "IN_PROGRESS"})}),
                   world.outputs, world.http, timeout=25, interval=10, out=lines.append, sleep=slept.append,
                   clock=lambda: float(next(clock)))
    assert not ok
    assert slept == [10]  # rounds at 10 and 20 s; a third would end after the timeout
    assert lines[-1] == "verify_deployment: 1 of 8 checks failed after 20 s: deployment"


class FakeEstimator:
    """The reference server's real API with a stand-in for scikit-learn (the model is not under test)."""

    def predict_proba(self, rows: Any) -> Any:
        import numpy as np  # noqa: PLC0415

        return np.tile([0.9, 0.05, 0.05], (len(rows), 1))


@contextlib.contextmanager
def reference_server() -> Iterator[str]:
    import uvicorn  # noqa: PLC0415 - only this test serves the real app

    from model_server.main import Readiness, create_app  # noqa: PLC0415
    from model_server.model import LoadedModel, ModelInfo  # noqa: PLC0415

    info = ModelInfo(name="iris", version="1", feature_names=("sepal length (cm)", "sepal width (cm)",
                                                              "petal length (cm)", "petal width (cm)"),
                     class_names=("setosa", "versicolor", "virginica"), sklearn_version="", model_sha256="",
                     test_accuracy=1.0)
    app = create_app(loader=lambda: LoadedModel(FakeEstimator(), info), readiness=Readiness("", 1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def test_the_smoke_set_from_app_is_answered_200_by_the_reference_server() -> None:
    with reference_server() as url:
        http = Http(url, SMOKE, timeout=5)
        checks = [vd.check_http(http, "GET", "/health"), vd.check_http(http, "POST", vd.PREDICT_PATH)]
        for _ in range(200):  # the model "loads" in a background thread: /health is 503 until then
            if checks[0].ok:
                break
            threading.Event().wait(0.005)
            checks[0] = vd.check_http(http, "GET", "/health")
        assert all(c.ok for c in checks), checks
        wrong = vd.check_http(Http(url, b'{"instances": [[1.0]]}'), "POST", vd.PREDICT_PATH)
    assert not wrong.ok
    assert "answered 422" in wrong.detail


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stacks_export_every_output_the_verifier_reads(stack: str, dev: StackRun, prod: StackRun) -> None:
    run = {"dev": dev, "prod": prod}[stack]
    outputs = Outputs.from_json(run.outputs)
    assert outputs.prod_like is (stack == "prod")
    assert outputs.alarm_names == tuple(run.outputs["alarmNames"])
    assert outputs.alarm_names, "the stack has alarms"
    assert set(outputs.groups) == {run.outputs["capacityProviderName"], run.outputs.get("spotCapacityProviderName")
                                   } - {None}


def test_the_smoke_set_is_the_release_checks(tmp_path: Path) -> None:
    smoke = json.loads(vd.SMOKE_SET.read_text())
    first = json.dumps({"instances": smoke["requests"][0]["instances"]}).encode()
    assert vd.load_smoke(vd.SMOKE_SET) == (smoke["path"], first)
    broken = tmp_path / "requests.json"
    broken.write_text('{"path": "/predict", "requests": []}')
    with pytest.raises(vd.UsageError, match=r"--smoke-set .*requests.json: IndexError: .* it needs"):
        vd.load_smoke(broken)


def test_missing_outputs_are_named_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"serviceUrl": "http://x", "clusterName": "c", "serviceName": "s",
                                "spotCapacityProviderName": "cp-spot"}))
    with pytest.raises(SystemExit) as exit_info:
        vd.main(["--outputs", str(path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert ("the stack outputs lack taskDefinitionArn, targetGroupArn, environmentClass, autoScalingGroupName, "
            "capacityProviderName, alarmNames, spotCapacityProviderName and spotAutoScalingGroupName (one is "
            "set without the other): run `pulumi up`") in message


@pytest.mark.parametrize(("script", "expected"), [
    ('echo \'{"serviceUrl": "http://x"}\'', "the stack outputs lack clusterName"),
    ("echo 'error: no stack named dev found' >&2; exit 255",
     "`pulumi stack output --json -s acme/dev` failed: error: no stack named dev found"),
])
def test_outputs_come_from_the_pulumi_cli_for_the_named_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str], script: str,
                                                              expected: str) -> None:
    cli = tmp_path / "pulumi"
    cli.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\n{script}\n')
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit):
        vd.main(["--stack", "acme/dev"])
    assert (tmp_path / "args").read_text().split() == ["stack", "output", "--json", "-s", "acme/dev"]
    assert expected in capsys.readouterr().err


def test_without_the_pulumi_cli_it_says_to_pass_outputs(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(SystemExit) as exit_info:
        vd.main(["--stack", "dev"])
    assert exit_info.value.code == 2
    assert "the pulumi CLI is not on PATH" in capsys.readouterr().err


def outputs_file(world: World, directory: Path, service_url: str) -> Path:
    """The world's stack outputs as `pulumi stack output --json` prints them."""
    outputs = {"serviceUrl": service_url, "clusterName": "cluster", "serviceName": "service",
               "taskDefinitionArn": world.outputs.task_definition_arn,
               "targetGroupArn": world.outputs.target_group_arn, "environmentClass": "dev",
               "autoScalingGroupName": "instances", "capacityProviderName": "cp-on-demand",
               "spotAutoScalingGroupName": "spot", "spotCapacityProviderName": "cp-spot", "alarmNames": list(ALARMS)}
    path = directory / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path


def test_main_reads_the_outputs_file_and_exits_by_the_result(world: World, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(vd.URL_VARIABLE, raising=False)  # serviceUrl, whatever the shell running the tests says
    path = outputs_file(world, tmp_path, world.outputs.service_url)
    assert vd.main(["--outputs", str(path), "--timeout", "1", "--interval", "5"], clients=world.clients) == 0
    assert "all 8 checks hold" in capsys.readouterr().out
    world.answers["GET"] = (503, b"")
    try:
        assert vd.main(["--outputs", str(path), "--timeout", "1", "--interval", "5"], clients=world.clients) == 1
    finally:
        world.answers["GET"] = (200, b"")
    assert "FAIL GET health" in capsys.readouterr().out


UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens (as the ALB's name fails TLS)


@pytest.mark.parametrize(("variable", "argv", "status"), [
    ("{served}", [], 0),  # a stack with a certificate: the deploy job sets VERIFY_URL to its domain
    ("", [], 1),  # empty (the GitHub variable unset): serviceUrl
    (UNREACHABLE, ["--url", "{served}"], 0),  # --url first
    (None, [], 1),
], ids=["variable", "empty-variable", "url-beats-variable", "no-variable"])
def test_the_url_is_url_else_verify_url_else_service_url(world: World, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], variable: str | None,
                                                         argv: list[str], status: int) -> None:
    served = world.outputs.service_url
    path = outputs_file(world, tmp_path, UNREACHABLE)
    if variable is None:
        monkeypatch.delenv(vd.URL_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(vd.URL_VARIABLE, variable.format(served=served))
    argv = [arg.format(served=served) for arg in argv]
    argv = ["--outputs", str(path), "--timeout", "1", "--interval", "5", *argv]
    assert vd.main(argv, clients=world.clients) == status
    out = capsys.readouterr().out
    called = served if status == 0 else UNREACHABLE
    assert out.splitlines()[0].startswith(f"verify_deployment: {path}: {called}, cluster cluster")
    assert f"GET {called}/health" in out


def test_a_verify_url_without_a_scheme_exits_2(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(vd.URL_VARIABLE, "models.example.com")
    with pytest.raises(SystemExit) as exit_info:
        vd.main(["--outputs", str(outputs_file(world, tmp_path, UNREACHABLE))], clients=world.clients)
    assert exit_info.value.code == 2
    assert ("the URL to call, 'models.example.com' (--url, else VERIFY_URL, else serviceUrl), must start with "
            "http:// or https://") in capsys.readouterr().err


def test_the_help_names_verify_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        vd.main(["--help"])
    assert "the environment variable VERIFY_URL when not empty" in " ".join(capsys.readouterr().out.split())


def test_the_region_is_the_target_groups(world: World) -> None:
    assert world.outputs.region == REGION



def test_the_readme_lists_the_checks_the_verifier_runs() -> None:
    rows = readme_table("| check | holds when |")[2:]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == list(vd.CHECKS)
