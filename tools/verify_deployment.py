"""Check, after `pulumi up`, that the stack's service really serves: exit 0 only when every check holds.

    venv/bin/python tools/verify_deployment.py --stack dev --timeout 900

It reads the stack's outputs (`pulumi stack output --json -s <stack>`, or `--outputs FILE` holding that JSON),
then polls until every check holds or the timeout runs out, printing each change as a plain line. What each
check asks of the service is the README's table "After every deploy: verify it" (tested against CHECKS).

A service its schedule scaled to zero (desired count 0 and its scalable target's maximum 0, as the stack's
scale-to-zero action sets them) passes with the checks that need running tasks SKIPPED.

Exit status: 0 all checks hold; 1 a check failed (each failing check is named); 2 bad arguments or outputs.
The AWS region comes from --region, else the target group's ARN. Credentials: the usual AWS sources.
The URL called is --url, else the environment variable VERIFY_URL when not empty, else the output serviceUrl.
It only reads (the IAM actions are listed in the README).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The smoke set app/ owns, which the release check also sends (infra/release_check/check.py): the verifier sends
# its first request, as one POST of {"instances": ...} to its path.
SMOKE_SET = PROJECT_DIR / "app" / "smoke" / "requests.json"
PREDICT_PATH = "/predict"
HTTP_TIMEOUT_SECONDS = 10
DEFAULT_INTERVAL_SECONDS = 15.0
# Stops that are not the task's fault: scale-in and replacement by a deployment, Spot reclaims, a user.
EXPECTED_STOP_CODES = ("SpotInterruption", "TerminationNotice", "UserInitiated")
EXPECTED_STOP_REASON = "Scaling activity initiated by"
LOOP_STOPS = 2  # this many unexpected stops since the deployment began is a loop, not a one-off
REQUIRED_OUTPUTS = ("serviceUrl", "clusterName", "serviceName", "taskDefinitionArn", "targetGroupArn",
                    "environmentClass", "autoScalingGroupName", "capacityProviderName", "alarmNames")
CHECKS = ("deployment", "stopped tasks", "targets", "capacity", "instances", "alarms", "GET health",
          "POST /predict")
# What cannot hold without a running task; skipped while the schedule keeps the service at zero. (The stopped
# tasks check still runs: scale-in stops are expected ones, and a loop before the scale-in is still a loop.)
NEED_TASKS = ("targets", "GET health", "POST /predict")
URL_VARIABLE = "VERIFY_URL"


class UsageError(Exception):
    """The verifier cannot start: bad arguments, missing outputs. Exit status 2."""


@dataclass(frozen=True)
class Outputs:
    """The stack outputs the checks read."""

    service_url: str
    cluster: str
    service: str
    task_definition_arn: str
    target_group_arn: str
    prod_like: bool
    groups: dict[str, str]  # capacity provider name -> its Auto Scaling group name
    alarm_names: tuple[str, ...]  # every alarm of the stack (infra/observability.py)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outputs:
        missing = [key for key in REQUIRED_OUTPUTS if data.get(key) in (None, "")]
        if bool(data.get("spotCapacityProviderName")) != bool(data.get("spotAutoScalingGroupName")):
            missing.append("spotCapacityProviderName and spotAutoScalingGroupName (one is set without the other)")
        if missing:
            raise UsageError(f"the stack outputs lack {', '.join(missing)}: run `pulumi up` with this version of "
                             "the program (the verifier reads these outputs)")
        groups = {data["capacityProviderName"]: data["autoScalingGroupName"]}
        if data.get("spotCapacityProviderName"):
            groups[data["spotCapacityProviderName"]] = data["spotAutoScalingGroupName"]
        return cls(service_url=str(data["serviceUrl"]).rstrip("/"), cluster=data["clusterName"],
                   service=data["serviceName"], task_definition_arn=data["taskDefinitionArn"],
                   target_group_arn=data["targetGroupArn"], prod_like=data["environmentClass"] == "prod",
                   groups=groups, alarm_names=tuple(data["alarmNames"]))

    @property
    def region(self) -> str:
        return self.target_group_arn.split(":")[3]  # arn:aws:elasticloadbalancing:<region>:...


def read_outputs(stack: str | None, outputs_file: str | None) -> dict[str, Any]:
    if outputs_file:
        try:
            data = json.loads(Path(outputs_file).read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"--outputs {outputs_file}: {error}") from error
    else:
        if not stack:
            raise UsageError("name the stack (--stack) or give its outputs (--outputs FILE)")
        data = pulumi_json(["stack", "output"], stack, "--outputs")
    if not isinstance(data, dict):
        raise UsageError("the stack outputs are not a JSON object")
    return data


def pulumi_json(command: list[str], stack: str, instead: str) -> Any:
    """What `pulumi <command> --json -s <stack>` prints, parsed (tools/preflight.py reads the config with it);
    `instead`: the option that gives the same JSON from a file."""
    shown = " ".join(["pulumi", *command, "--json", "-s", stack])
    if shutil.which("pulumi") is None:
        raise UsageError(f"the pulumi CLI is not on PATH: install it, or pass {instead} FILE with the JSON of "
                         f"`{shown}`")
    result = subprocess.run(["pulumi", *command, "--json", "-s", stack], capture_output=True, text=True,
                            check=False, cwd=PROJECT_DIR)
    if result.returncode != 0:
        raise UsageError(f"`{shown}` failed: {result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except ValueError as error:
        raise UsageError(f"`{shown}` printed no JSON: {error}") from error


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    final: bool = False  # failed for good: waiting longer cannot make it hold
    skipped: bool = False  # not run (ok stays True): the service is scaled to zero by its schedule

    @property
    def label(self) -> str:
        return "SKIPPED" if self.skipped else "PASS" if self.ok else "FAIL"


@dataclass
class Clients:
    ecs: Any
    elbv2: Any
    ec2: Any
    autoscaling: Any
    cloudwatch: Any
    application_autoscaling: Any

    SERVICES = ("ecs", "elbv2", "ec2", "autoscaling", "cloudwatch", "application-autoscaling")  # field order

    @classmethod
    def create(cls, region: str, profile: str | None = None) -> Clients:
        import boto3  # noqa: PLC0415 - here: tools/preflight.py imports this module and needs no AWS

        session = boto3.Session(profile_name=profile, region_name=region)
        return cls(*(session.client(name) for name in cls.SERVICES))


def load_smoke(path: Path) -> tuple[str, bytes]:
    """(path, body) of the smoke set's first request: {"path": "/predict", "requests": [{"instances": ...}]}."""
    try:
        smoke = json.loads(path.read_text())
        body = json.dumps({"instances": smoke["requests"][0]["instances"]})
        return str(smoke.get("path") or PREDICT_PATH), body.encode()
    except (OSError, ValueError, LookupError, TypeError, AttributeError) as error:
        raise UsageError(f"--smoke-set {path}: {type(error).__name__}: {error}; it needs "
                         '{"path": "/predict", "requests": [{"instances": [[...]]}]}') from error


@dataclass(frozen=True)
class Http:
    """The public endpoint: GET the health path, POST one smoke request."""

    url: str
    smoke_request: bytes
    timeout: float = HTTP_TIMEOUT_SECONDS
    smoke_path: str = PREDICT_PATH

    def call(self, method: str, path: str) -> tuple[int, str]:
        body = self.smoke_request if method == "POST" else None
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"} if body else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read(300).decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read(300).decode(errors="replace")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if isinstance(moment, datetime) else "?"


def describe_service(clients: Clients, outputs: Outputs) -> dict[str, Any] | None:
    response = clients.ecs.describe_services(cluster=outputs.cluster, services=[outputs.service])
    services = [s for s in response.get("services") or [] if s.get("status") != "INACTIVE"]
    return services[0] if services else None


def primary_deployment(service: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), None)


def scaled_to_zero(clients: Clients, outputs: Outputs, service: dict[str, Any] | None) -> str | None:
    """Why nothing runs, when the schedule took the service to zero: desired count 0 and the scalable target's
    maximum 0, as the stack's scale-to-zero action sets them. None otherwise (a minimum of 0 with a maximum
    above it is autoscaling's choice or a broken setting, not the schedule). Asks only at desired count 0."""
    if service is None or service.get("desiredCount", 0) != 0:
        return None
    targets = clients.application_autoscaling.describe_scalable_targets(
        ServiceNamespace="ecs", ScalableDimension="ecs:service:DesiredCount",
        ResourceIds=[f"service/{outputs.cluster}/{outputs.service}"])["ScalableTargets"]
    if not targets or targets[0].get("MaxCapacity") != 0:
        return None
    return "the service is scaled to zero by its schedule (its scalable target's maximum is 0 until the scale-up)"


def check_deployment(service: dict[str, Any] | None, outputs: Outputs, schedule: str | None = None) -> Check:
    """`schedule`: scaled_to_zero's answer; then 0 desired tasks is the state to expect."""
    name = "deployment"
    primary = primary_deployment(service) if service else None
    if service is None or primary is None:
        return Check(name, False, f"service {outputs.service} not found in cluster {outputs.cluster}"
                     if service is None else f"service {outputs.service} has no PRIMARY deployment")
    ours, deployments = outputs.task_definition_arn, service.get("deployments") or []
    if primary["taskDefinition"] != ours:
        rolled_back = any(d["taskDefinition"] == ours for d in deployments)
        reason = f" ({primary['rolloutStateReason']})" if primary.get("rolloutStateReason") else ""
        what = "ECS is rolling back from" if rolled_back else "the service does not run"
        return Check(name, False, f"{what} the stack's task definition {_short(ours)}: the PRIMARY deployment "
                                  f"{primary['id']} runs {_short(primary['taskDefinition'])}{reason}", final=True)
    state, reason = primary.get("rolloutState", "?"), primary.get("rolloutStateReason", "")
    if state == "FAILED":
        return Check(name, False, f"deployment {primary['id']} FAILED: {reason}", final=True)
    running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
    others = [f"{d['status']} {d['id']} ({d.get('runningCount', 0)} running)" for d in deployments if d is not primary]
    problem = None
    if state != "COMPLETED" or others:
        waiting = f"; still there: {', '.join(others)}" if others else ""
        problem = f"deployment {primary['id']} is {state}, {running}/{desired} tasks running{waiting}"
    elif desired == 0 and schedule:
        return Check(name, True, f"{primary['id']} COMPLETED, {running}/0 tasks running {_short(ours)}: {schedule}")
    elif desired == 0:
        problem = ("the service wants 0 tasks (a schedule scales it to zero outside working hours, or "
                   "autoscaling's minimum is 0): nothing serves")
    elif running != desired:
        problem = f"deployment {primary['id']} COMPLETED but {running}/{desired} tasks running"
    return Check(name, problem is None,
                 problem or f"{primary['id']} COMPLETED, {running}/{desired} tasks running {_short(ours)}")


def _stopped_tasks(clients: Clients, outputs: Outputs) -> list[dict[str, Any]]:
    arns: list[str] = []
    for page in clients.ecs.get_paginator("list_tasks").paginate(cluster=outputs.cluster,
                                                                 serviceName=outputs.service,
                                                                 desiredStatus="STOPPED"):
        arns += page.get("taskArns") or []
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):  # DescribeTasks takes up to 100 tasks
        tasks += clients.ecs.describe_tasks(cluster=outputs.cluster, tasks=arns[start:start + 100])["tasks"]
    return tasks


def _stop_summary(task: dict[str, Any]) -> str:
    containers = "; ".join(
        f"container {c.get('name')}: exit code {c.get('exitCode', '-')}" + (f", {c['reason']}" if c.get("reason")
                                                                           else "")
        for c in task.get("containers") or [] if c.get("exitCode") not in (None, 0) or c.get("reason"))
    return (f"{_short(task['taskArn'])} at {_when(task.get('stoppedAt'))}: {task.get('stoppedReason', '?')} "
            f"[{task.get('stopCode', '?')}]" + (f" ({containers})" if containers else ""))


def check_stopped_tasks(clients: Clients, outputs: Outputs, service: dict[str, Any] | None) -> Check:
    name = "stopped tasks"
    primary = primary_deployment(service) if service else None
    if primary is None:
        return Check(name, False, "no PRIMARY deployment to look at")
    since = primary.get("createdAt")
    failed = [t for t in _stopped_tasks(clients, outputs)
              if t.get("group") in (None, f"service:{outputs.service}")  # a service's tasks are in its group
              and t.get("stopCode") not in EXPECTED_STOP_CODES
              and not str(t.get("stoppedReason", "")).startswith(EXPECTED_STOP_REASON)
              and (since is None or t.get("stoppedAt") is None or t["stoppedAt"] >= since)]
    if not failed:
        return Check(name, True, f"no task failed since deployment {primary['id']} began")
    last = max(failed, key=lambda t: t["stoppedAt"].timestamp() if isinstance(t.get("stoppedAt"), datetime) else 0)
    if len(failed) >= LOOP_STOPS:
        return Check(name, False, f"{len(failed)} tasks stopped since deployment {primary['id']} began (a task "
                                  f"is stopping in a loop); the last, {_stop_summary(last)}")
    return Check(name, True, f"one task stopped since the deployment began, not a loop: {_stop_summary(last)}")


def _target_zones(clients: Clients, descriptions: list[dict[str, Any]], vpc_id: str) -> dict[str, str]:
    """Target id -> AZ: as the target reports it, else (an `ip` target) the AZ of the interface with that IP."""
    zones = {d["Target"]["Id"]: d["Target"].get("AvailabilityZone", "") for d in descriptions}
    unknown = [target for target, zone in zones.items() if zone in ("", "all")]
    if unknown:
        response = clients.ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "addresses.private-ip-address", "Values": unknown}])
        for interface in response.get("NetworkInterfaces") or []:
            for address in interface.get("PrivateIpAddresses") or []:
                if address.get("PrivateIpAddress") in unknown:
                    zones[address["PrivateIpAddress"]] = interface["AvailabilityZone"]
    return zones


def service_target_groups(service: dict[str, Any] | None, outputs: Outputs) -> list[str]:
    """The service's target groups: with a blue/green-style strategy, production alternates between the primary
    and the alternate group from one release to the next, so both are checked."""
    arns: list[str] = []
    for balancer in (service or {}).get("loadBalancers") or []:
        alternate = balancer.get("advancedConfiguration", {}).get("alternateTargetGroupArn")
        arns += [balancer.get("targetGroupArn"), alternate]
    return list(dict.fromkeys(arn for arn in arns if arn)) or [outputs.target_group_arn]


def check_targets(clients: Clients, outputs: Outputs, target_groups: list[dict[str, Any]]) -> Check:
    """Every target registered in the service's target groups: after a release, the old group is empty."""
    name = "targets"
    descriptions = [d for group in target_groups for d in clients.elbv2.describe_target_health(
        TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]]
    if not descriptions:
        return Check(name, False, f"no target registered in {', '.join(g['TargetGroupName'] for g in target_groups)}")
    unhealthy = [f"{d['Target']['Id']}:{d['Target'].get('Port', '')} {d['TargetHealth'].get('State')}"
                 + (f" ({d['TargetHealth'].get('Reason')}: {d['TargetHealth'].get('Description', '')})"
                    if d["TargetHealth"].get("Reason") else "")
                 for d in descriptions if d["TargetHealth"].get("State") != "healthy"]
    if unhealthy:
        return Check(name, False, f"{len(unhealthy)} of {_count(len(descriptions), 'target')} not healthy: "
                                  + "; ".join(unhealthy))
    zones = _target_zones(clients, descriptions, target_groups[0]["VpcId"])
    distinct = sorted({zone or "unknown AZ" for zone in zones.values()})
    if outputs.prod_like and len(set(zones.values()) - {""}) < 2:
        return Check(name, False, f"{_count(len(descriptions), 'healthy target')}, all in {', '.join(distinct)}: "
                                  "a prod-like stack needs healthy targets in at least two AZs")
    return Check(name, True, f"{_count(len(descriptions), 'healthy target')} in {', '.join(distinct)}")


def check_capacity(clients: Clients, outputs: Outputs) -> Check:
    name = "capacity"
    clusters = clients.ecs.describe_clusters(clusters=[outputs.cluster])["clusters"]
    if not clusters:
        return Check(name, False, f"cluster {outputs.cluster} not found")
    associated = set(clusters[0].get("capacityProviders") or [])
    wanted = list(outputs.groups)
    problems = [f"{p} is not associated with cluster {outputs.cluster}" for p in wanted if p not in associated]
    found = {p["name"]: p for p in clients.ecs.describe_capacity_providers(capacityProviders=wanted)
             ["capacityProviders"]}
    for provider in wanted:
        state = found.get(provider)
        if state is None:
            problems.append(f"{provider} does not exist")
        elif state.get("status") != "ACTIVE" or str(state.get("updateStatus", "")).endswith("FAILED"):
            reason = state.get("updateStatusReason")
            problems.append(f"{provider} is {state.get('status')}"
                            + (f", {state['updateStatus']}" if state.get("updateStatus") else "")
                            + (f": {reason}" if reason else ""))
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"{', '.join(wanted)} ACTIVE and associated")


def _launch_template_spec(group: dict[str, Any]) -> dict[str, Any]:
    spec = group.get("LaunchTemplate") or (
        group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification"))
    if not spec:
        raise LookupError(f"group {group['AutoScalingGroupName']} has no launch template")
    return dict(spec)


def _template_image(clients: Clients, spec: dict[str, Any]) -> tuple[str, str]:
    """(AMI id, 'lt-... version N') the launch template version the group launches from names."""
    ids = ({"LaunchTemplateId": spec["LaunchTemplateId"]} if spec.get("LaunchTemplateId")
           else {"LaunchTemplateName": spec["LaunchTemplateName"]})
    version = str(spec.get("Version") or "$Default")
    versions = clients.ec2.describe_launch_template_versions(**ids, Versions=[version], ResolveAlias=True)[
        "LaunchTemplateVersions"]
    template = versions[0]
    label = f"{template['LaunchTemplateId']} version {template['VersionNumber']}"
    return str(template["LaunchTemplateData"].get("ImageId", "")), label


def check_instances(clients: Clients, outputs: Outputs, schedule: str | None = None) -> Check:
    """`schedule`: scaled_to_zero's answer; with no task to place, managed scaling may empty the groups."""
    name = "instances"
    groups = clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=list(outputs.groups.values()))[
        "AutoScalingGroups"]
    missing = set(outputs.groups.values()) - {g["AutoScalingGroupName"] for g in groups}
    if missing:
        return Check(name, False, f"Auto Scaling group {', '.join(sorted(missing))} not found")
    expected: dict[str, tuple[str, str, str]] = {}  # instance id -> (group, AMI, template label)
    for group in groups:
        image, label = _template_image(clients, _launch_template_spec(group))
        for instance in group.get("Instances") or []:
            expected[instance["InstanceId"]] = (group["AutoScalingGroupName"], image, label)
    arns = [arn for page in clients.ecs.get_paginator("list_container_instances").paginate(cluster=outputs.cluster)
            for arn in page["containerInstanceArns"]]
    if not arns and schedule:
        return Check(name, True, f"no container instance is registered with cluster {outputs.cluster}, and none "
                                 f"is needed: {schedule}")
    if not arns:
        return Check(name, False, f"no container instance is registered with cluster {outputs.cluster}")
    container_instances = [  # DescribeContainerInstances takes up to 100
        c for start in range(0, len(arns), 100) for c in clients.ecs.describe_container_instances(
            cluster=outputs.cluster, containerInstances=arns[start:start + 100])["containerInstances"]]
    ids = [c["ec2InstanceId"] for c in container_instances]
    images = {i["InstanceId"]: i["ImageId"]
              for r in clients.ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]}
    problems = []
    for container_instance in container_instances:
        instance = container_instance["ec2InstanceId"]
        if instance not in expected:
            problems.append(f"{instance} is registered with the cluster but in none of the stack's groups")
            continue
        group, image, label = expected[instance]
        if images.get(instance) != image:
            problems.append(f"{instance} ({group}) runs {images.get(instance)}, but {label} names {image}: "
                            "replace the instances (an instance refresh) to run the current AMI")
        if not container_instance.get("agentConnected", True):
            problems.append(f"{instance} ({group}): the ECS agent is disconnected")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"{_count(len(ids), 'container instance')} on their launch templates' AMIs "
                             f"({', '.join(sorted({e[1] for e in expected.values()}))})")


def check_alarms(clients: Clients, outputs: Outputs) -> Check:
    """By exact name: a prefix would also match another stack whose name extends this one's (dev, dev-eu)."""
    name, wanted = "alarms", list(outputs.alarm_names)
    alarms: list[dict[str, Any]] = []
    for start in range(0, len(wanted), 100):  # DescribeAlarms takes up to 100 names
        for page in clients.cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNames=wanted[start:start + 100], AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            alarms += page.get("MetricAlarms") or []
            alarms += page.get("CompositeAlarms") or []
    found = {a["AlarmName"] for a in alarms}
    problems = [f"{a['AlarmName']} is in ALARM ({a.get('StateReason', '')})" for a in alarms
                if a.get("StateValue") == "ALARM"]
    problems += [f"{missing} does not exist (deleted outside Pulumi? `pulumi up` recreates it)"
                 for missing in wanted if missing not in found]
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"none of the stack's {_count(len(wanted), 'alarm')} is in ALARM")


def check_http(http: Http, method: str, path: str) -> Check:
    name = "GET health" if method == "GET" else f"POST {PREDICT_PATH}"
    try:
        status, body = http.call(method, path)
    except Exception as error:  # unreachable, TLS, timeout: say what happened
        reason = getattr(error, "reason", error)
        hint = ("" if "CERTIFICATE" not in str(reason).upper() else " (the certificate names your domain, not the "
                f"ALB: pass --url https://<your domain> or set {URL_VARIABLE})")
        return Check(name, False, f"{method} {http.url}{path} failed: {reason}{hint}")
    text = f"{method} {http.url}{path} answered {status}"
    return Check(name, status == 200, text if status == 200 else f"{text}: {body.strip()[:200]}")


def guarded(name: str, run: Callable[[], Check]) -> Check:
    """An AWS error (permissions, throttling, a deleted resource) fails the check with its message."""
    try:
        return run()
    except Exception as error:
        return Check(name, False, f"{type(error).__name__}: {error}")


def checks(clients: Clients, outputs: Outputs, http: Http) -> dict[str, Callable[[], Check]]:
    """Each check by name (CHECKS, in this order), sharing one look at the service and the target group."""
    service = functools.cache(lambda: describe_service(clients, outputs))
    target_groups = functools.cache(lambda: clients.elbv2.describe_target_groups(
        TargetGroupArns=service_target_groups(service(), outputs))["TargetGroups"])

    schedule = functools.cache(lambda: scaled_to_zero(clients, outputs, service()))

    def health_path() -> str:
        with contextlib.suppress(Exception):  # the targets check reports why the target groups are unreadable
            return str(target_groups()[0].get("HealthCheckPath") or "/health")
        return "/health"

    def unless_scaled_to_zero(name: str, run: Callable[[], Check]) -> Callable[[], Check]:
        def check() -> Check:
            reason = schedule()
            return Check(name, True, f"{reason}: no task to check", skipped=True) if reason else run()
        return check

    runs: dict[str, Callable[[], Check]] = {
        "deployment": lambda: check_deployment(service(), outputs, schedule()),
        "stopped tasks": lambda: check_stopped_tasks(clients, outputs, service()),
        "targets": lambda: check_targets(clients, outputs, target_groups()),
        "capacity": lambda: check_capacity(clients, outputs),
        "instances": lambda: check_instances(clients, outputs, schedule()),
        "alarms": lambda: check_alarms(clients, outputs),
        "GET health": lambda: check_http(http, "GET", health_path()),
        f"POST {PREDICT_PATH}": lambda: check_http(http, "POST", http.smoke_path),
    }
    return {name: unless_scaled_to_zero(name, run) if name in NEED_TASKS else run for name, run in runs.items()}


def run_checks(clients: Clients, outputs: Outputs, http: Http) -> list[Check]:
    return [guarded(name, run) for name, run in checks(clients, outputs, http).items()]


@dataclass
class Progress:
    """Prints a check's line when its result changes, stamped with the seconds since the start."""

    out: Callable[[str], None]
    seen: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def report(self, elapsed: float, checks: list[Check]) -> None:
        for check in checks:
            if self.seen.get(check.name) != (check.ok, check.detail):
                self.seen[check.name] = (check.ok, check.detail)
                state = "skipped" if check.skipped else "ok     " if check.ok else "waiting"
                self.out(f"[{elapsed:5.0f}s] {state} {check.name}: {check.detail}")


def verify(clients: Clients, outputs: Outputs, http: Http, timeout: float,
           interval: float = DEFAULT_INTERVAL_SECONDS, out: Callable[[str], None] = print,
           sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> bool:
    """Poll every check until all hold (True) or the timeout passes or a check fails for good (False)."""
    start = clock()
    progress = Progress(out)
    while True:
        checks = run_checks(clients, outputs, http)
        elapsed = clock() - start
        progress.report(elapsed, checks)
        failed = [c for c in checks if not c.ok]
        final = [c for c in failed if c.final]
        if not failed or final or elapsed + interval > timeout:
            break
        sleep(interval)
    for check in checks:
        out(f"{check.label} {check.name}: {check.detail}")
    if failed:
        why = "for good" if final else f"after {elapsed:.0f} s"
        out(f"verify_deployment: {len(failed)} of {len(checks)} checks failed {why}: "
            f"{', '.join(c.name for c in failed)}")
        return False
    skipped = [c.name for c in checks if c.skipped]
    if skipped:
        out(f"verify_deployment: {len(checks) - len(skipped)} of {len(checks)} checks hold, {len(skipped)} SKIPPED "
            f"(the service is scaled to zero by its schedule: {', '.join(skipped)}) after {elapsed:.0f} s")
    else:
        out(f"verify_deployment: all {len(checks)} checks hold after {elapsed:.0f} s")
    return True


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except UsageError as error:
        print(f"verify_deployment: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="verify_deployment", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stack", help="the Pulumi stack whose outputs to read (pulumi stack output -s)")
    parser.add_argument("--outputs", metavar="FILE", help="the JSON of `pulumi stack output --json` instead")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to keep polling (default 900)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_SECONDS, help="seconds between polls")
    parser.add_argument("--region", help="AWS region (default: the target group's)")
    parser.add_argument("--profile", help="AWS profile")
    parser.add_argument("--url", default=os.environ.get(URL_VARIABLE) or None,
                        help="base URL to call instead of serviceUrl (your domain, when the ALB serves HTTPS with a "
                             f"certificate for it; default: the environment variable {URL_VARIABLE} when not empty, "
                             "else serviceUrl)")
    parser.add_argument("--smoke-set", metavar="FILE", default=str(SMOKE_SET),
                        help="smoke set whose first request is POSTed (default: app/smoke/requests.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, clients: Clients | None = None,
         sleep: Callable[[float], None] = time.sleep) -> int:
    args = parse_args(argv)
    with _usage_errors():
        outputs = Outputs.from_json(read_outputs(args.stack, args.outputs))
        smoke_path, smoke_body = load_smoke(Path(args.smoke_set))
        if args.timeout <= 0 or args.interval < 0:
            raise UsageError("--timeout must be positive and --interval not negative")
        url = (args.url or outputs.service_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"the URL to call, {url!r} (--url, else {URL_VARIABLE}, else serviceUrl), must start "
                             "with http:// or https://, e.g. https://models.example.com")
    print(f"verify_deployment: {args.stack or args.outputs}: {url}, cluster {outputs.cluster}, service "
          f"{outputs.service}, timeout {args.timeout:.0f} s")
    clients = clients or Clients.create(args.region or outputs.region, args.profile)
    http = Http(url, smoke_body, smoke_path=smoke_path)
    ok = verify(clients, outputs, http, args.timeout, args.interval, sleep=sleep)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
