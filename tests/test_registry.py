"""Registry: scanning, tag mutability, encryption, lifecycle and what survives a destroy."""

import json

from tests.harness import StackRun


def test_repository_scans_on_push_and_is_kms_encrypted(run: StackRun) -> None:
    repo = run.one("aws:ecr/repository:Repository")
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "KMS"}]


def test_prod_repository_is_immutable_and_survives_destroy(prod: StackRun) -> None:
    repo = prod.one("aws:ecr/repository:Repository")
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["forceDelete"] is False
    assert repo.retain_on_delete is True


def test_dev_repository_is_mutable_and_deleted_with_its_images(dev: StackRun) -> None:
    repo = dev.one("aws:ecr/repository:Repository")
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["forceDelete"] is True
    assert repo.retain_on_delete is False


def test_lifecycle_policy_expires_untagged_and_keeps_last_tagged(run: StackRun) -> None:
    policy = run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert policy["repository"] == run.one("aws:ecr/repository:Repository").state["name"]
    untagged, tagged = json.loads(policy["policy"])["rules"]
    assert untagged["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                     "countUnit": "days", "countNumber": 3}
    assert tagged["selection"] == {"tagStatus": "tagged", "tagPatternList": ["*"],
                                   "countType": "imageCountMoreThan", "countNumber": 20}
    assert untagged["action"] == tagged["action"] == {"type": "expire"}
