"""IAM roles assumed by one AWS service, with managed policies attached as separate resources.

The attachments are returned so the ECS service can depend on them: deleting a role before the service
that uses it leaves the service stuck in DRAINING.

Roles ECS tasks assume trust `ecs-tasks.amazonaws.com` only on behalf of this account's ECS resources in this
region (`aws:SourceAccount`, `aws:SourceArn`), as the ECS Developer Guide recommends against the confused
deputy. EC2's instance role gets no such condition: EC2 does not send them when an instance assumes its role.
"""

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.naming import IAM_ROLE_NAME_MAX, bounded_name

ECS_TASKS = "ecs-tasks.amazonaws.com"


def source_conditions(partition: str, region: str, account_id: str) -> dict[str, Any]:
    return {"ArnLike": {"aws:SourceArn": f"arn:{partition}:ecs:{region}:{account_id}:*"},
            "StringEquals": {"aws:SourceAccount": account_id}}


def assume_role_policy(service_principal: str, conditions: dict[str, Any] | None = None) -> str:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service_principal},
        "Action": "sts:AssumeRole",
    }
    if conditions:
        statement["Condition"] = conditions
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _trust_policy(service_principal: str, parent: pulumi.Resource) -> pulumi.Input[str]:
    if service_principal != ECS_TASKS:
        return assume_role_policy(service_principal)
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    return pulumi.Output.all(
        aws.get_partition_output(opts=invoke).partition, aws.get_region_output(opts=invoke).region,
        aws.get_caller_identity_output(opts=invoke).account_id,
    ).apply(lambda values: assume_role_policy(service_principal, source_conditions(*values)))


def service_role(
    prefix: str,
    purpose: str,
    service_principal: str,
    policy_arns: list[str] | tuple[str, ...],
    parent: pulumi.Resource,
    description: str,
) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
    name = bounded_name(prefix, purpose, IAM_ROLE_NAME_MAX)
    role = aws.iam.Role(
        name,
        assume_role_policy=_trust_policy(service_principal, parent),
        description=description,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    attachments = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{arn.rsplit('/', 1)[-1]}",
            role=role.name,
            policy_arn=arn,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for arn in policy_arns
    ]
    return role, attachments
