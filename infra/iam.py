"""IAM roles assumed by one AWS service, with managed policies attached as separate resources.

The attachments are returned so the ECS service can depend on them: deleting a role before the service
that uses it leaves the service stuck in DRAINING.
"""

import json

import pulumi
import pulumi_aws as aws

from infra.naming import IAM_ROLE_NAME_MAX, bounded_name


def assume_role_policy(service_principal: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service_principal},
            "Action": "sts:AssumeRole",
        }],
    })


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
        assume_role_policy=assume_role_policy(service_principal),
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
