"""S3 buckets, KMS keys and resource policies: who besides the account can reach the data.

Resource policies (bucket, key, repository, queue, topic, secret policies) must never allow everyone
(`Principal: "*"`) without a condition that narrows it; S3 buckets carry the baseline every scanner checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import Policy, PolicyResource, ResourceValidationArgs, Severity

from .common import SECURITY, StackView, as_list, as_map, json_value, resource_policy, stack_policy, truthy

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
LIFECYCLE = ("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
             "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
# Resources whose `policy` input is a resource policy (who else may act on the resource).
RESOURCE_POLICIES = {
    BUCKET_POLICY: "policy", "aws:kms/key:Key": "policy", "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:ecr/registryPolicy:RegistryPolicy": "policy", "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy", "aws:secretsmanager/secretPolicy:SecretPolicy": "policy",
    "aws:efs/fileSystemPolicy:FileSystemPolicy": "policy", "aws:s3/bucket:Bucket": "policy",
    "aws:kms/keyPolicy:KeyPolicy": "policy",
}
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
PUBLIC_ACCESS_SETTINGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
# Condition keys that narrow "everyone" to an account, organisation, network or calling service. A condition on
# anything else (aws:SecureTransport, s3:x-amz-acl, ...) leaves the statement open to everyone.
NARROWING_KEYS = frozenset(k.lower() for k in (
    "aws:SourceAccount", "aws:SourceArn", "aws:SourceOwner", "aws:SourceOrgID", "aws:SourceOrgPaths",
    "aws:PrincipalAccount", "aws:PrincipalArn", "aws:PrincipalOrgID", "aws:PrincipalOrgPaths", "aws:userid",
    "aws:SourceVpc", "aws:SourceVpce", "aws:SourceIp", "aws:VpcSourceIp", "aws:PrincipalServiceName",
    "kms:CallerAccount", "kms:ViaService",
))


def statements(document: Any) -> list[Mapping[str, Any]]:
    return [as_map(s) for s in as_list(as_map(json_value(document)).get("Statement"))]


def principals(statement: Mapping[str, Any]) -> list[str]:
    """Every principal of a statement: "*", AWS ARNs or account IDs, service names."""
    principal = statement.get("Principal")
    if isinstance(principal, str):
        return [principal]
    return [str(p) for values in as_map(principal).values() for p in as_list(values)]


def narrowed(statement: Mapping[str, Any]) -> bool:
    """True when a condition of the statement limits who can use it (account, organisation, network, service)."""
    keys = {str(key).lower() for operator in as_map(statement.get("Condition")).values() for key in as_map(operator)}
    return bool(keys & NARROWING_KEYS)


def _public_principal(args: ResourceValidationArgs) -> Iterator[str]:
    for index, statement in enumerate(statements(args.props.get(RESOURCE_POLICIES[args.resource_type]))):
        if statement.get("Effect") == "Allow" and "*" in principals(statement) and not narrowed(statement):
            yield (f"policy statement {index} allows everyone (Principal *) without a condition that narrows it: "
                   "name the accounts or services, or add aws:SourceAccount / aws:PrincipalOrgID / aws:SourceArn")


def denies_insecure_transport(document: Any) -> bool:
    """A Deny of every request with aws:SecureTransport false: the TLS-only bucket policy (SH S3.5)."""
    for statement in statements(document):
        condition = as_map(statement.get("Condition"))
        secure = as_map(condition.get("Bool")).get("aws:SecureTransport")
        if statement.get("Effect") == "Deny" and "*" in principals(statement) and str(secure).lower() == "false":
            return True
    return False


def _bucket_parts(stack: StackView, bucket: PolicyResource, *types: str) -> list[PolicyResource]:
    return stack.referrers(bucket, "bucket", *types)


def _bucket_baseline(stack: StackView) -> Iterator[tuple[str, str]]:
    account_blocks = stack.of_type(ACCOUNT_PUBLIC_ACCESS_BLOCK)  # covers every bucket of the account
    for bucket in stack.of_type(*BUCKETS):
        name = f"bucket '{bucket.name}'"
        blocks = _bucket_parts(stack, bucket, PUBLIC_ACCESS_BLOCK) + account_blocks
        if not any(all(truthy(b.props.get(key)) for key in PUBLIC_ACCESS_SETTINGS) for b in blocks):
            yield (f"{name} has no public-access block with all four settings true: one ACL or policy edit away "
                   "from public", bucket.urn)
        if not (_bucket_parts(stack, bucket, *ENCRYPTION) or bucket.props.get("serverSideEncryptionConfiguration")):
            yield f"{name} declares no default encryption (BucketServerSideEncryptionConfiguration)", bucket.urn
        policies = [p.props.get("policy") for p in _bucket_parts(stack, bucket, BUCKET_POLICY)]
        if not any(denies_insecure_transport(p) for p in [*policies, bucket.props.get("policy")]):
            yield f"{name} accepts plain HTTP: its bucket policy must deny aws:SecureTransport false", bucket.urn
        rules = [as_map(r) for c in _bucket_parts(stack, bucket, *LIFECYCLE) for r in as_list(c.props.get("rules"))]
        rules += [as_map(r) for r in as_list(bucket.props.get("lifecycleRules"))]
        enabled = [r for r in rules if str(r.get("status", "Enabled")) == "Enabled" or truthy(r.get("enabled"))]
        if not enabled:
            yield (f"{name} has no enabled lifecycle rule: objects and incomplete uploads are kept (and billed) "
                   "forever", bucket.urn)
        elif not any(as_map(r.get("abortIncompleteMultipartUpload")).get("daysAfterInitiation")
                     or r.get("abortIncompleteMultipartUploadDays") for r in enabled):
            yield (f"{name} has no lifecycle rule that aborts incomplete multipart uploads: their parts are billed "
                   "and never listed", bucket.urn)


POLICIES: list[Policy] = [
    resource_policy(
        "resource-policy-no-public-principal",
        "Resource policies (S3 bucket, KMS key, ECR repository and registry, SQS, SNS, Secrets Manager, EFS) allow "
        "no Principal * without a condition naming an account, organisation, network or service. "
        "Sources: CKV_AWS_70, CKV_AWS_33, CKV_AWS_32, CKV_AWS_168, "
        "CKV_AWS_169, SH S3.2, SH S3.3.",
        RESOURCE_POLICIES, _public_principal, tag=SECURITY, severity=Severity.CRITICAL,
        remediation="Name the principals (account root ARN, service) or add a condition (aws:SourceAccount)."),
    stack_policy(
        "s3-bucket-baseline",
        "S3 buckets have a full public-access block, default encryption, a TLS-only bucket policy and an enabled "
        "lifecycle rule that also aborts incomplete multipart uploads. Sources: CKV2_AWS_6, SH S3.8, CKV_AWS_19, "
        "SH S3.5, CKV2_AWS_61, CKV_AWS_300.",
        _bucket_baseline, tag=SECURITY, severity=Severity.HIGH,
        remediation="Add BucketPublicAccessBlock (all true), BucketServerSideEncryptionConfiguration, a bucket policy "
                    "denying aws:SecureTransport false and a BucketLifecycleConfiguration with "
                    "abortIncompleteMultipartUpload."),
]
