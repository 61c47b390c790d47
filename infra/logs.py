"""Logging: the model server's CloudWatch log group, optionally encrypted with a rotated KMS key.

With `retain_on_delete` (prod) both outlive `pulumi destroy`, like the registry and the access-log bucket: the
logs stay readable until their retention expires; delete the key and group by hand when no longer needed.
"""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class LoggingArgs:
    name_prefix: str
    retention_days: int
    kms_encryption: bool
    kms_deletion_window_days: int
    # Leave the log group and its key in AWS when the stack is destroyed (the key stays to read the logs).
    retain_on_delete: bool = False


def log_key_policy(partition: str, account_id: str, region: str) -> str:
    """Account admins manage the key; CloudWatch Logs may use it only for this account's log groups."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryption",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}},
            },
        ],
    })


class Logging(pulumi.ComponentResource):
    key: aws.kms.Key | None
    log_group: aws.cloudwatch.LogGroup

    def __init__(self, name: str, args: LoggingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Logging", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        self.key = None
        if args.kms_encryption:
            identity = aws.get_caller_identity_output(opts=invoke)
            policy = pulumi.Output.all(
                aws.get_partition_output(opts=invoke).partition, identity.account_id,
                aws.get_region_output(opts=invoke).region,
            ).apply(lambda args: log_key_policy(*args))
            self.key = aws.kms.Key(
                f"{name}-logs",
                description=f"Encrypts the model server logs of {args.name_prefix}",
                enable_key_rotation=True,
                deletion_window_in_days=args.kms_deletion_window_days,
                policy=policy,
                opts=child,
            )

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}",
            name_prefix=f"/ecs/{args.name_prefix}/",
            retention_in_days=args.retention_days,
            kms_key_id=self.key.arn if self.key else None,
            opts=child,
        )
        self.register_outputs({"logGroupName": self.log_group.name})
