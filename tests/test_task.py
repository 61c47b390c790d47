"""Task: EC2 awsvpc task definition, container settings, roles and logging."""

import json
from typing import Any

import pytest

from tests.conftest import IMAGE_DIGEST, IMAGE_URI, TASK_POLICY, run_with, setting
from tests.harness import ACCOUNT_ID, REGION, StackRun

TASK = "aws:ecs/taskDefinition:TaskDefinition"


def container(run: StackRun) -> dict[str, Any]:
    (definition,) = json.loads(run.one(TASK)["containerDefinitions"])
    return definition


def role(run: StackRun, suffix: str) -> Any:
    (found,) = [r for r in run.of_type("aws:iam/role:Role") if r.name.endswith(f"-{suffix}")]
    return found


def attached(run: StackRun, role_name: str) -> set[str]:
    return {a["policyArn"] for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a["role"] == role_name}


def test_task_definition_is_ec2_awsvpc_sized_by_config(run: StackRun) -> None:
    task = run.one(TASK)
    assert task["requiresCompatibilities"] == ["EC2"]
    assert task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == (setting(run, "taskCpu"), setting(run, "taskMemoryMiB"))


def test_image_is_a_tag_in_the_stacks_own_repository(prod: StackRun) -> None:
    # dev builds app/ and runs the pushed digest by default (tests/test_image_stack.py); prod's image is a release
    # tag (tests/test_stack.py checks the stack file).
    dev = run_with("dev", imageBuild=False, image="latest")
    for run in (dev, prod):
        assert container(run)["image"] == f"{run.outputs['repositoryUrl']}:{setting(run, 'image')}"


def test_image_may_be_a_digest_in_the_repository_or_a_full_uri(dev_variant: StackRun,
                                                              prod_variant: StackRun) -> None:
    assert container(dev_variant)["image"] == f"{dev_variant.outputs['repositoryUrl']}@{IMAGE_DIGEST}"
    assert container(prod_variant)["image"] == IMAGE_URI


def test_container_serves_the_configured_port_with_a_health_check(run: StackRun) -> None:
    c = container(run)
    assert c["portMappings"] == [{"name": "http", "containerPort": 8080, "protocol": "tcp", "appProtocol": "http"}]
    check = c["healthCheck"]
    # Straight to the server, never through a proxy that HTTP_PROXY may name.
    assert check["command"] == ["CMD-SHELL", "python -c \"import urllib.request as u; u.build_opener("
                                "u.ProxyHandler({})).open('http://127.0.0.1:8080/health', timeout=4)\" || exit 1"]
    assert check["startPeriod"] == {"dev": 60, "prod": 120}[run.stack]
    assert c["stopTimeout"] == {"dev": 30, "prod": 40}[run.stack]


def test_container_health_check_can_be_switched_off(dev_variant: StackRun) -> None:
    assert "healthCheck" not in container(dev_variant)


def test_container_is_unprivileged_and_logs_to_the_stack_log_group(run: StackRun) -> None:
    c = container(run)
    assert c["privileged"] is False
    assert c["essential"] is True
    assert c["logConfiguration"]["logDriver"] == "awslogs"
    assert c["logConfiguration"]["options"]["awslogs-group"] == run.outputs["logGroupName"]
    assert c["logConfiguration"]["options"]["awslogs-region"] == REGION
    shared_memory = int(setting(run, "sharedMemoryMiB"))  # GPU stacks size /dev/shm (tests/test_capacity.py)
    assert c["linuxParameters"] == {"initProcessEnabled": True} | (
        {"sharedMemorySize": shared_memory} if shared_memory else {})


def test_prod_runs_read_only_as_non_root_with_a_scratch_volume(prod: StackRun) -> None:
    c = container(prod)
    assert c["readonlyRootFilesystem"] is True
    assert c["user"] == "10001:10001"
    assert c["mountPoints"] == [{"sourceVolume": "scratch", "containerPath": "/tmp", "readOnly": False}]
    assert prod.one(TASK)["volumes"] == [{"name": "scratch"}]


def test_dev_keeps_the_images_own_filesystem_and_user(dev: StackRun) -> None:
    c = container(dev)
    assert c["readonlyRootFilesystem"] is False
    assert "user" not in c and "mountPoints" not in c
    assert dev.one(TASK).get("volumes", []) == []


def test_environment_comes_from_config(dev_variant: StackRun) -> None:
    # containerEnvironment first, then what the stack sets: the server timeouts derived from
    # albIdleTimeoutSeconds (60) and containerStopTimeoutSeconds (30) (tests/test_observability.py checks the rest).
    assert container(dev_variant)["environment"][:4] == [{"name": "MODEL_NAME", "value": "iris"},
                                                         {"name": "WORKERS", "value": "2"},
                                                         {"name": "KEEPALIVE_SECONDS", "value": "65"},
                                                         {"name": "GRACEFUL_TIMEOUT", "value": "25"}]


def test_execution_and_task_roles_are_separate_and_scoped(run: StackRun) -> None:
    task = run.one(TASK)
    execution, task_role = role(run, "execution"), role(run, "task")
    assert task["executionRoleArn"] == execution.state["arn"]
    assert task["taskRoleArn"] == task_role.state["arn"]
    assert task["executionRoleArn"] != task["taskRoleArn"]
    for r in (execution, task_role):
        (trust,) = json.loads(r["assumeRolePolicy"])["Statement"]
        assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        # Confused deputy: only this account's ECS, in this region, may assume the role for a task.
        assert trust["Condition"] == {"ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:*"},
                                      "StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}
    assert attached(run, execution.state["name"]) == {
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}
    assert attached(run, task_role.state["name"]) == set()


def test_task_role_gets_the_configured_policies(dev_variant: StackRun) -> None:
    assert attached(dev_variant, role(dev_variant, "task").state["name"]) == {TASK_POLICY}


@pytest.mark.parametrize(("stack", "days", "kms"), [("dev", 7, False), ("prod", 365, True)])
def test_log_group_retention_and_encryption(stack: str, days: int, kms: bool, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    group = run.one("aws:cloudwatch/logGroup:LogGroup", f"-{stack}")  # not the release check's
    assert group["retentionInDays"] == days
    assert group["namePrefix"] == f"/ecs/model-serving-{stack}/"
    keys = [key for key in run.of_type("aws:kms/key:Key") if key.name.endswith("-logs")]
    # prod's logs (and the key that decrypts them) outlive `pulumi destroy`, like its images and access logs.
    assert [r.retain_on_delete for r in (group, *keys)] == [stack == "prod"] * (1 + len(keys))
    if kms:
        (key,) = keys
        assert group["kmsKeyId"] == key.state["arn"]
        assert key["enableKeyRotation"] is True
        logs_statement = json.loads(key["policy"])["Statement"][1]
        assert logs_statement["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    else:
        assert keys == [] and "kmsKeyId" not in group.inputs
