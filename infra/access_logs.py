"""Access logs: the private S3 bucket the ALB writes its access logs to.

ALB log delivery supports only SSE-S3 encryption. Regions opened before August 2022 deliver as a regional ELB
account; newer ones have none and deliver as the `logdelivery.elasticloadbalancing.amazonaws.com` service
(Elastic Load Balancing User Guide, "Enable access logs"). The policy always allows the service and, where
the region has one, its ELB account (`AccessLogsArgs.elb_account_arn`, from infra/regions.json), so access logs
work in every region; `aws.elb.get_service_account`, used before, fails in the newer ones.

With `retain_on_delete` the bucket outlives the stack together with what keeps it private and bounded: its
public-access block, ownership, encryption, expiry and policy are retained too, not deleted around it.
"""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class AccessLogsArgs:
    force_destroy: bool  # delete the bucket with its logs
    retain_on_delete: bool  # leave the bucket and its settings in AWS when the stack is destroyed
    expiration_days: int
    elb_account_arn: str | None = None  # the region's ELB account; None: the log-delivery service only

PREFIX = "alb"
ABORT_INCOMPLETE_UPLOADS_DAYS = 7
LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


def bucket_policy(bucket_arn: str, elb_account_arn: str | None, account_id: str) -> str:
    log_objects = f"{bucket_arn}/{PREFIX}/AWSLogs/{account_id}/*"
    elb_account_statement = [
        {"Sid": "ElbAccountDelivery", "Effect": "Allow", "Principal": {"AWS": elb_account_arn},
         "Action": "s3:PutObject", "Resource": log_objects},
    ] if elb_account_arn else []
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            *elb_account_statement,
            {"Sid": "ElbServiceDelivery", "Effect": "Allow", "Principal": {"Service": LOG_DELIVERY_SERVICE},
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
        # What configures the bucket shares its fate: a retained bucket keeps its settings.
        child = pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete)
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
                    days=args.expiration_days),
                # A delivery cut off mid-upload leaves parts that are billed but never listed (CKV_AWS_300).
                abort_incomplete_multipart_upload=aws.s3.
                BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=ABORT_INCOMPLETE_UPLOADS_DAYS))],
            opts=child)
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, aws.get_caller_identity_output(opts=invoke).account_id).apply(
                lambda values: bucket_policy(values[0], args.elb_account_arn, values[1])),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.public_access_block])))
        self.register_outputs({"bucketName": self.bucket.id})
