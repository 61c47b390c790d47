"""Registry: the stack's ECR repository and its lifecycle policy.

`RegistryArgs` say whether tags are immutable and whether the repository outlives the stack
(`retain_on_delete`: the images a running service depends on survive `pulumi destroy`, which still completes)
or goes with its images (`force_delete`); infra/settings/args.py decides (prod-like: immutable and retained).
"""

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class RegistryArgs:
    immutable_tags: bool
    force_delete: bool  # delete the repository with its images
    retain_on_delete: bool  # leave the repository in AWS when the stack is destroyed
    keep_tagged_images: int
    untagged_expiry_days: int
    # Release tags (a pattern like v*) and how many release images to keep whatever else is pushed: the
    # rollback window. None: releases count among the tagged images like any other tag (dev).
    release_tag_pattern: str | None = None
    keep_release_images: int = 0


def lifecycle_policy(keep_tagged_images: int, untagged_expiry_days: int, release_tag_pattern: str | None = None,
                     keep_release_images: int = 0) -> str:
    """ECR applies the rules by priority, and an image a higher-priority rule selects can never be expired by a
    lower one (ECR User Guide, lifecycle policies). So the release rule comes first: its images are counted
    only against each other, and pushes of other tags cannot push a release out of the window."""
    releases = [{
        "description": f"Keep the last {keep_release_images} release images ({release_tag_pattern})",
        "selection": {"tagStatus": "tagged", "tagPatternList": [release_tag_pattern],
                      "countType": "imageCountMoreThan", "countNumber": keep_release_images},
        "action": {"type": "expire"},
    }] if release_tag_pattern else []
    rules = [
        *releases,
        {
            "description": f"Expire untagged images after {untagged_expiry_days} days",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                          "countUnit": "days", "countNumber": untagged_expiry_days},
            "action": {"type": "expire"},
        },
        {
            "description": f"Keep the last {keep_tagged_images} tagged images",
            "selection": {"tagStatus": "tagged", "tagPatternList": ["*"],
                          "countType": "imageCountMoreThan", "countNumber": keep_tagged_images},
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": [{"rulePriority": priority, **rule} for priority, rule in enumerate(rules, 1)]})


class Registry(pulumi.ComponentResource):
    repository: aws.ecr.Repository
    lifecycle_policy: aws.ecr.LifecyclePolicy
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Registry", name, None, opts)

        # Scanning stays on the repository (basic scan on push). AWS deprecates the repository-level setting in
        # favour of the registry-level scanning configuration, but that is one per account and region: dev and
        # prod stacks in one account would overwrite each other's, and a destroy would reset the account's. The
        # account owner sets it (basic or Inspector enhanced, README "Image scanning"); once set, it overrides this.
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            image_tag_mutability="IMMUTABLE" if args.immutable_tags else "MUTABLE",
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            force_delete=args.force_delete,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete),
        )
        self.lifecycle_policy = aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=lifecycle_policy(args.keep_tagged_images, args.untagged_expiry_days, args.release_tag_pattern,
                                    args.keep_release_images),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = self.repository.repository_url
        self.register_outputs({"repositoryUrl": self.repository_url})
