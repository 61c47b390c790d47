"""Access logs: the private S3 bucket the ALB writes its access logs to.

ALB log delivery supports only SSE-S3 encryption. Older regions deliver as a regional ELB account, newer
ones (since 2022) as the `logdelivery.elasticloadbalancing.amazonaws.com` service; the policy allows both.
"""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class AccessLogsArgs:
    force_destroy: bool  # delete the bucket with its logs
    retain_on_delete: bool  # leave the bucket in AWS when the stack is destroyed
    expiration_days: int

PREFIX = "alb"


def bucket_policy(bucket_arn: str, elb_account_arn: str, account_id: str) -> str:
    log_objects = f"{bucket_arn}/{PREFIX}/AWSLogs/{account_id}/*"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ElbAccountDelivery", "Effect": "Allow", "Principal": {"AWS": elb_account_arn},
             "Action": "s3:PutObject", "Resource": log_objects},
            {"Sid": "ElbServiceDelivery", "Effect": "Allow",
             "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": log_objects},
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    })


class AccessLogs(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    public_access_block: aws.s3.BucketPublicAccessBlock
    ownership: aws.s3.BucketOwnershipControls
    encryption: aws.s3.BucketServerSideEncryptionConfiguration
    lifecycle: aws.s3.BucketLifecycleConfiguration
    policy: aws.s3.BucketPolicy
    prefix: str = PREFIX

    def __init__(self, name: str, args: AccessLogsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:AccessLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            name, force_destroy=args.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete))
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child)
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"))],
            opts=child)
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-expiry", bucket=self.bucket.id,
            rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-access-logs", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{PREFIX}/"),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                    days=args.expiration_days))],
            opts=child)
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=self.bucket.id,
            policy=pulumi.Output.all(
                self.bucket.arn, aws.elb.get_service_account_output(opts=invoke).arn,
                aws.get_caller_identity_output(opts=invoke).account_id,
            ).apply(lambda args: bucket_policy(*args)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]))
        self.register_outputs({"bucketName": self.bucket.id})
