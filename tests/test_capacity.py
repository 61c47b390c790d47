"""High-throughput capacity: real instance data, the capacity plan, GPUs, Spot, warm pools, schedules."""

import base64
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from infra.capacity_plan import GroupSpec, TaskSize, fit, split
from infra.cluster import AMI_PARAMETERS
from infra.instance_types import DATA_FILE, InstanceType, instance_types
from infra.settings import SettingsError, parse_settings
from infra.settings.strategy import deployment_extra_tasks
from tests.conftest import SPOT, run_with, setting
from tests.harness import PROJECT, StackRun, run_stack, run_stack_expecting_error
from tests.test_settings import args_of, error
from tools.instance_types import describe
from tools.readme_tables import config_text

GPU_STACK = {"instanceType": "g5.2xlarge", "instanceRootVolumeGiB": 150, "gpusPerTask": 1, "sharedMemoryMiB": 2048,
             "taskCpu": 4096, "taskMemoryMiB": 16384, "spotInstanceTypes": [], "spotMaxCount": 0,
             "onDemandWeight": 1, "spotWeight": 0, "instanceMaxCount": 4}  # 4: room for a deployment at 200%


# The capacity settings the plan and rule tests below are about, as the shipped stack files set them. The tests
# state them rather than read today's stack files, so changing a stack's capacity never breaks them.
SCHEDULE = {"scaleToZeroCron": "cron(0 19 ? * MON-FRI *)", "scaleUpCron": "cron(0 7 ? * MON-FRI *)",
            "scheduleTimezone": "Europe/London"}
DEV_CAPACITY: dict[str, Any] = {**SPOT["dev"], **SCHEDULE}
PROD_CAPACITY: dict[str, Any] = {**SPOT["prod"], "environmentClass": "prod", "availabilityZoneCount": 3,
                                 "image": "v1.0.0", "imageBuild": False}


def container(run: StackRun) -> dict[str, Any]:
    (definition,) = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    return definition


class PublishedCatalogue:
    """An EC2 client whose DescribeInstanceTypes answers from the copy of AWS's data that moto ships
    (moto's own mock serves the same file, but takes a second to start its EC2 backend)."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("moto")
        assert spec and spec.submodule_search_locations
        path = Path(spec.submodule_search_locations[0]) / "ec2" / "resources" / "instance_types.json.gz"
        self.items = json.loads(gzip.decompress(path.read_bytes()))

    def get_paginator(self, operation: str) -> "PublishedCatalogue":
        assert operation == "describe_instance_types"
        return self

    def paginate(self, InstanceTypes: list[str] | None = None) -> list[dict[str, Any]]:  # noqa: N803 - AWS's name
        names = InstanceTypes or sorted(self.items)
        return [{"InstanceTypes": [self.items[name] for name in names[i:i + 100]]} for i in range(0, len(names), 100)]


def test_instance_data_is_awss_own() -> None:
    """The committed table is what DescribeInstanceTypes publishes, and what tools/instance_types.py writes."""
    assert json.loads(DATA_FILE.read_text()) == describe(PublishedCatalogue())
    assert instance_types()["g4dn.12xlarge"] == InstanceType("g4dn.12xlarge", 48, 196608, 8, 4, "x86_64")


def test_fit_reports_every_binding_limit() -> None:
    types = instance_types()
    assert fit(types["t3.medium"], TaskSize(512, 1024, 0)).binding_limit == "network interfaces"
    both = fit(types["c6i.2xlarge"], TaskSize(2048, 4096, 0))
    assert (both.tasks_per_instance, both.binding_limit) == (3, "cpu, memory, network interfaces")
    gpu = fit(types["g4dn.12xlarge"], TaskSize(1024, 4096, 2))
    assert (gpu.tasks_per_instance, gpu.binding_limit) == (2, "gpus")


def test_strategy_split_puts_the_base_first_then_weights() -> None:
    instance = instance_types()["c6i.2xlarge"]
    groups = [GroupSpec("onDemand", (instance,), 2, 1, 6), GroupSpec("spot", (instance,), 0, 3, 6)]
    assert split(10, groups) == {"onDemand": 4, "spot": 6}
    assert split(2, groups) == {"onDemand": 2, "spot": 0}
    assert split(1, groups) == {"onDemand": 1, "spot": 0}


def plan_of(stack: str, **config: Any) -> dict[str, Any]:
    """The capacity plan of `config` alone (project defaults, no stack file): the inputs are the test's own."""
    raw = {key: config_text(value) for key, value in config.items()}
    settings = parse_settings(PROJECT, stack, raw)
    return {p.name: p.as_output() for p in settings.capacity_plan(deployment_extra_tasks(settings))}


def test_capacity_plans_of_a_spot_dev_and_a_mixed_prod() -> None:
    assert plan_of("dev", **DEV_CAPACITY) == {
        "onDemand": {"instanceType": "t3.medium", "tasksPerInstance": 2, "bindingLimit": "network interfaces",
                     "tasksAtMin": 0, "tasksAtMax": 0, "instancesAtMin": 0, "instancesAtMax": 0, "maxInstances": 1,
                     "tasksAtPeak": 0, "instancesAtPeak": 0},
        # ROLLING at 200%: two more tasks during a deployment at the maximum.
        "spot": {"instanceType": "t3.medium", "tasksPerInstance": 2, "bindingLimit": "network interfaces",
                 "tasksAtMin": 1, "tasksAtMax": 2, "instancesAtMin": 1, "instancesAtMax": 1, "maxInstances": 2,
                 "tasksAtPeak": 4, "instancesAtPeak": 2},
    }
    assert plan_of("prod", **PROD_CAPACITY) == {
        "onDemand": {"instanceType": "c6i.2xlarge", "tasksPerInstance": 3,
                     "bindingLimit": "cpu, memory, network interfaces", "tasksAtMin": 2, "tasksAtMax": 4,
                     "instancesAtMin": 2, "instancesAtMax": 3, "maxInstances": 6,
                     "tasksAtPeak": 8, "instancesAtPeak": 4},
        # CANARY: a whole green revision (split like blue, its own base included) beside blue.
        "spot": {"instanceType": "c6i.2xlarge", "tasksPerInstance": 3,
                 "bindingLimit": "cpu, memory, network interfaces", "tasksAtMin": 0, "tasksAtMax": 6,
                 "instancesAtMin": 0, "instancesAtMax": 3, "maxInstances": 6, "tasksAtPeak": 12, "instancesAtPeak": 5},
    }


def test_the_capacity_plan_is_a_stack_output(run: StackRun) -> None:
    settings = parse_settings(PROJECT, run.stack, {key.split(":", 1)[1]: value for key, value in run.config.items()
                                                   if key.startswith(f"{PROJECT}:")})
    assert run.outputs["capacityPlan"] == {p.name: p.as_output()
                                           for p in settings.capacity_plan(deployment_extra_tasks(settings))}
    assert list(run.outputs["capacityPlan"]) == ["onDemand"] + (["spot"] if settings.spot_instance_types else [])


def test_spot_plan_uses_the_type_that_holds_the_fewest_tasks() -> None:
    # ROLLING: a canary's green revision (ten more tasks) would not fit six c6i.large.
    spot = plan_of("prod", **{**PROD_CAPACITY, "spotInstanceTypes": ["c6i.2xlarge", "c6i.large"], "taskCpu": 1024,
                              "taskMemoryMiB": 2048, "deploymentStrategy": "ROLLING"})["spot"]
    assert (spot["instanceType"], spot["tasksPerInstance"], spot["bindingLimit"]) == ("c6i.large", 1, "cpu, memory")


def test_gpu_stack_uses_the_gpu_ami_and_reserves_gpus() -> None:
    run = run_stack("dev", overrides=GPU_STACK)
    assert ("aws:ssm/getParameter:getParameter", {"name": AMI_PARAMETERS["gpu"]}) in run.invokes
    assert AMI_PARAMETERS["gpu"] == "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    template, _empty_spot = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template["instanceType"] == "g5.2xlarge"
    assert template["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 150
    assert "ECS_ENABLE_GPU_SUPPORT=true\n" in base64.b64decode(template["userData"]).decode()
    c = container(run)
    assert c["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert c["linuxParameters"]["sharedMemorySize"] == 2048
    assert {"name": "memlock", "softLimit": -1, "hardLimit": -1} in c["ulimits"]
    plan = run.outputs["capacityPlan"]["onDemand"]
    assert (plan["tasksPerInstance"], plan["bindingLimit"]) == (1, "cpu, memory, gpus")


def test_cpu_stacks_reserve_no_gpu(with_spot: StackRun) -> None:
    c = container(with_spot)
    assert "resourceRequirements" not in c and "sharedMemorySize" not in c["linuxParameters"]
    assert [u["name"] for u in c["ulimits"]] == ["nofile"]


def test_graviton_types_use_the_arm64_ami() -> None:
    run = run_stack("dev", overrides={**DEV_CAPACITY, "instanceType": "m7g.large",
                                      "spotInstanceTypes": ["m7g.large", "m6g.large"]}, use_stack_file=False)
    assert ("aws:ssm/getParameter:getParameter", {"name": AMI_PARAMETERS["arm64"]}) in run.invokes
    assert ("aws:ssm/getParameter:getParameter", {"name": AMI_PARAMETERS["x86_64"]}) not in run.invokes


def test_a_schedule_scales_the_service_to_zero_and_back(dev: StackRun) -> None:
    # dev's own schedule when its stack file sets one (the shipped file does); after `pulumi config set
    # scaleToZeroCron ""` the test still checks the behaviour, on a run that sets dev's shipped schedule.
    scheduled = dev if setting(dev, "scaleToZeroCron") else run_with("dev", **SCHEDULE)
    actions = {a.name.rsplit("-", 2)[-2] + "-" + a.name.rsplit("-", 1)[-1]: a
               for a in scheduled.of_type("aws:appautoscaling/scheduledAction:ScheduledAction")}
    target = scheduled.one("aws:appautoscaling/target:Target")
    assert actions["to-zero"]["schedule"] == setting(scheduled, "scaleToZeroCron")
    assert actions["to-zero"]["scalableTargetAction"] == {"minCapacity": 0, "maxCapacity": 0}
    assert actions["scale-up"]["schedule"] == setting(scheduled, "scaleUpCron")
    assert actions["scale-up"]["scalableTargetAction"] == {"minCapacity": int(setting(scheduled, "minTaskCount")),
                                                           "maxCapacity": int(setting(scheduled, "maxTaskCount"))}
    for action in actions.values():
        assert action["timezone"] == setting(scheduled, "scheduleTimezone")
        assert action["resourceId"] == target["resourceId"]
    assert target.ignore_changes == ["minCapacity", "maxCapacity"]


def test_without_a_schedule_pulumi_owns_the_bounds(prod: StackRun) -> None:
    unscheduled = prod if not setting(prod, "scaleToZeroCron") else run_with("prod", scaleToZeroCron="",
                                                                               scaleUpCron="")
    assert unscheduled.of_type("aws:appautoscaling/scheduledAction:ScheduledAction") == []
    assert unscheduled.one("aws:appautoscaling/target:Target").ignore_changes == []


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"gpusPerTask": 1}, "model-serving:instanceType = 't3.medium': has no GPUs, but gpusPerTask is 1: choose a GPU "
                         "type"),
    ({**GPU_STACK, "gpusPerTask": 2}, "model-serving:gpusPerTask = 2: must be at most 1, the GPUs of g5.2xlarge"),
    ({**GPU_STACK, "instanceRootVolumeGiB": 60},
     "model-serving:instanceRootVolumeGiB = 60: must be at least 100 on GPU type g5.2xlarge"),
    ({**GPU_STACK, "sharedMemoryMiB": 16384},
     "model-serving:sharedMemoryMiB = 16384: must be less than taskMemoryMiB (16384)"),
    ({**GPU_STACK, "instanceType": "g5g.xlarge", "taskCpu": 2048, "taskMemoryMiB": 4096},
     "model-serving:instanceType = 'g5g.xlarge': is an arm64 GPU type: the ECS GPU-optimized AMI is x86_64 only"),
    ({"spotInstanceTypes": ["t3.medium", "m7g.large"]},
     "model-serving:spotInstanceTypes = 'm7g.large': must match instanceType t3.medium in architecture (x86_64)"),
    ({"spotInstanceTypes": ["t3.medium", "nope.large"]},
     "model-serving:spotInstanceTypes = 'nope.large': must be an EC2 instance type listed in"),
    ({"spotInstanceTypes": [], "spotMaxCount": 0},
     "model-serving:spotInstanceTypes = []: must list the Spot instance types when spotWeight, spotMinCount or "
     "spotMaxCount is set"),
    ({"spotMaxCount": 0}, "model-serving:spotMaxCount = 0: must be at least 1 when spotInstanceTypes is set"),
    ({"spotMinCount": 3}, "model-serving:spotMinCount = 3: must not exceed spotMaxCount (2)"),
    ({"spotWeight": 0}, "model-serving:onDemandWeight = 0: and spotWeight cannot both be 0"),
    ({"warmPoolMinSize": 2}, "model-serving:warmPoolMinSize = 2: must not exceed instanceMaxCount (1)"),
    ({"scaleUpCron": ""}, "model-serving:scaleUpCron = '': must be set together with the other schedule"),
    ({"scaleToZeroCron": "0 19 * * 1-5"}, "model-serving:scaleToZeroCron = '0 19 * * 1-5': must be empty or "
                                          "cron(minutes hours day-of-month month day-of-week year)"),
    ({"scheduleTimezone": "Mars/Olympus"},
     "model-serving:scheduleTimezone = 'Mars/Olympus': must be an IANA time zone"),
    ({"instanceMinCount": 1}, "model-serving:instanceMinCount = 1: must be 0 when the service scales to zero on a "
                              "schedule"),
    ({"taskCpu": 2048, "taskMemoryMiB": 1024, "instanceType": "t3.small", "spotInstanceTypes": ["t3.small"]},
     "model-serving:taskCpu = 2048: must be at most 1920 on t3.small"),
])
def test_capacity_rules(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error("dev", **{**DEV_CAPACITY, **overrides})


def test_prod_with_spot_keeps_two_tasks_on_demand() -> None:
    assert "model-serving:onDemandBaseTasks = 1: must be at least 2 with Spot and environmentClass prod" in error(
        "prod", **{**PROD_CAPACITY, "onDemandBaseTasks": 1})


def test_a_plan_that_cannot_place_the_maximum_is_refused_before_any_resource() -> None:
    run, raised = run_stack_expecting_error("prod", {**PROD_CAPACITY, "maxTaskCount": 40})
    assert isinstance(raised, SettingsError) and run.resources == []
    assert ("model-serving:maxTaskCount = 40: cannot be placed: a CANARY release at the maximum runs green beside "
            "blue, 58 tasks on the spot provider, "
            "whose c6i.2xlarge holds 3 (limited by cpu, memory, network interfaces) and whose spotMaxCount is 6, "
            "so at most 18 fit") in str(raised)


@pytest.mark.parametrize(("stack", "overrides", "refused"), [
    ("prod", {"deregistrationDelaySeconds": 60, "containerStopTimeoutSeconds": 60}, True),  # prod before the fix
    ("prod", {"deregistrationDelaySeconds": 50, "containerStopTimeoutSeconds": 40}, False),  # 90: the budget
    ("dev", {"deregistrationDelaySeconds": 61, "containerStopTimeoutSeconds": 30}, True),  # dev runs all on Spot
    ("dev", {"deregistrationDelaySeconds": 300, "spotInstanceTypes": [], "spotMaxCount": 0, "spotWeight": 0,
             "onDemandWeight": 1, "instanceMaxCount": 2}, False),  # no Spot, no notice to fit in
])
def test_spot_drain_must_fit_the_two_minute_interruption_notice(stack: str, overrides: dict[str, Any],
                                                               refused: bool) -> None:
    expected = ("deregistrationDelaySeconds = {}: plus containerStopTimeoutSeconds ({}) must be at most 90 when "
                "tasks run on Spot").format(overrides["deregistrationDelaySeconds"],
                                            overrides.get("containerStopTimeoutSeconds", 30))
    if refused:
        assert expected in error(stack, **overrides)
    else:
        args_of(stack, **overrides)
