"""Registry: scanning, tag mutability, encryption, lifecycle and what survives a destroy."""

import json

import pytest

from tests.harness import StackRun
from tests.test_settings import args_of, error


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
    *_releases, untagged, tagged = json.loads(policy["policy"])["rules"]
    assert untagged["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                     "countUnit": "days", "countNumber": 3}
    assert tagged["selection"] == {"tagStatus": "tagged", "tagPatternList": ["*"],
                                   "countType": "imageCountMoreThan", "countNumber": 20}
    assert untagged["action"] == tagged["action"] == {"type": "expire"}


def test_prod_keeps_release_images_first_so_other_tags_cannot_expire_them(dev: StackRun, prod: StackRun) -> None:
    """ECR never lets a lower-priority rule expire an image a higher-priority rule selected, so the release
    rule must come first: the last 100 v* images survive any number of other pushes."""
    releases, untagged, tagged = json.loads(prod.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")["policy"])["rules"]
    assert releases["selection"] == {"tagStatus": "tagged", "tagPatternList": ["v*"],
                                     "countType": "imageCountMoreThan", "countNumber": 100}
    assert [rule["rulePriority"] for rule in (releases, untagged, tagged)] == [1, 2, 3]
    assert "v*" not in json.dumps(dev.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")["policy"])  # dev: aggressive


@pytest.mark.parametrize(("image", "refused"), [("v1.2.0", False), ("rc-7", True), ("sha256:" + "ab" * 32, False)])
def test_prod_deploys_only_tags_its_lifecycle_policy_keeps(image: str, refused: bool) -> None:
    if refused:
        assert f"model-serving:image = '{image}': must match ecrReleaseTagPattern (v*)" in error("prod", image=image)
    else:
        args_of("prod", image=image)
