"""Task: the model server's task definition with separate execution and task roles.

The execution role is the ECS agent's (pull the image, write logs); the task role is the model's own and
has nothing unless `taskRolePolicyArns` grants it something.
"""

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import service_role

CONTAINER_NAME = "model-server"
SCRATCH_VOLUME = "scratch"
EXECUTION_POLICIES = (aws.iam.ManagedPolicy.AMAZON_ECS_TASK_EXECUTION_ROLE_POLICY.value,)
# Many concurrent inference connections each hold a file descriptor.
OPEN_FILES_LIMIT = 65536


@dataclass(frozen=True)
class ContainerArgs:
    port: int
    environment: tuple[tuple[str, str], ...]
    user: str  # "": the image's USER
    read_only_root_filesystem: bool
    scratch_volume_path: str
    health_check_command: str  # "": no container health check; {port} and {path} are filled in
    health_check_path: str
    start_period_seconds: int
    stop_timeout_seconds: int
    gpus: int
    shared_memory_mib: int  # 0: Docker's default


@dataclass(frozen=True)
class TaskArgs:
    name_prefix: str
    cpu: int
    memory_mib: int
    role_policy_arns: tuple[str, ...]
    container: ContainerArgs


def container_definitions(task: ContainerArgs, image: str, log_group: str, region: str) -> str:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "portMappings": [{"name": "http", "containerPort": task.port, "protocol": "tcp", "appProtocol": "http"}],
        "environment": [{"name": name, "value": value} for name, value in task.environment],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": CONTAINER_NAME,
                # A slow CloudWatch must not block the server's stdout and stall requests.
                "mode": "non-blocking",
                "max-buffer-size": "25m",
            },
        },
        "stopTimeout": task.stop_timeout_seconds,
        "privileged": False,
        "readonlyRootFilesystem": task.read_only_root_filesystem,
        # An init process forwards SIGTERM to the server and reaps zombie workers.
        "linuxParameters": {"initProcessEnabled": True},
        "ulimits": [{"name": "nofile", "softLimit": OPEN_FILES_LIMIT, "hardLimit": OPEN_FILES_LIMIT}],
    }
    if task.gpus:
        container["resourceRequirements"] = [{"type": "GPU", "value": str(task.gpus)}]
        # NCCL and CUDA pin host memory: an unlimited memlock keeps them from failing under load.
        container["ulimits"].append({"name": "memlock", "softLimit": -1, "hardLimit": -1})
    if task.shared_memory_mib:
        container["linuxParameters"]["sharedMemorySize"] = task.shared_memory_mib
    if task.user:
        container["user"] = task.user
    if task.read_only_root_filesystem:
        container["mountPoints"] = [{"sourceVolume": SCRATCH_VOLUME, "containerPath": task.scratch_volume_path,
                                     "readOnly": False}]
    if task.health_check_command:
        command = task.health_check_command.replace("{port}", str(task.port)).replace("{path}", task.health_check_path)
        container["healthCheck"] = {"command": ["CMD-SHELL", command], "interval": 15, "timeout": 5,
                                    "retries": 3, "startPeriod": task.start_period_seconds}
    return json.dumps([container])


class Task(pulumi.ComponentResource):
    execution_role: aws.iam.Role
    execution_role_attachments: list[aws.iam.RolePolicyAttachment]
    task_role: aws.iam.Role
    task_role_attachments: list[aws.iam.RolePolicyAttachment]
    task_definition: aws.ecs.TaskDefinition

    def __init__(self, name: str, args: TaskArgs, image: pulumi.Input[str], log_group_name: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Task", name, None, opts)
        task, container = args, args.container
        prefix = args.name_prefix

        self.execution_role, self.execution_role_attachments = service_role(
            prefix, "execution", "ecs-tasks.amazonaws.com", EXECUTION_POLICIES, self,
            "ECS agent for the model server: pull the image, write logs")
        self.task_role, self.task_role_attachments = service_role(
            prefix, "task", "ecs-tasks.amazonaws.com", task.role_policy_arns, self,
            "The model server's own AWS permissions (taskRolePolicyArns)")

        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        definitions = pulumi.Output.all(image, log_group_name, region).apply(
            lambda values: container_definitions(container, *values))

        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}",
            family=f"{prefix}-{CONTAINER_NAME}",
            requires_compatibilities=["EC2"],
            network_mode="awsvpc",
            cpu=str(task.cpu),
            memory=str(task.memory_mib),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=definitions,
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=SCRATCH_VOLUME)] if container.read_only_root_filesystem
            else [],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"taskDefinitionArn": self.task_definition.arn})
