"""tools/promote_image.py against moto's ECR: dev (mutable tags) to prod (immutable tags), by digest."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
from collections.abc import Iterator
from typing import IO, Any

import boto3
import pytest
from moto import mock_aws

from tests.local_http import serving
from tools import promote_image
from tools.promote_image import OCI_INDEX, OCI_MANIFEST, PromotionError, Repository, promote

pytestmark = pytest.mark.integration  # tests/conftest.py: run by .ci/run, not by the quick suite

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
DEV, PROD = "model-serving-dev-repo", "model-serving-prod-repo"
_numbers = itertools.count()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """moto's ECR with a fresh pair of repositories, and the blob bytes a real ECR would serve from S3."""

    def __init__(self, client: Any) -> None:
        self.client = client
        number = next(_numbers)
        self.dev, self.prod = f"{DEV}-{number}", f"{PROD}-{number}"
        self.client.create_repository(repositoryName=self.dev, imageTagMutability="MUTABLE")
        self.client.create_repository(repositoryName=self.prod, imageTagMutability="IMMUTABLE")
        self.blobs: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def repo(self, name: str) -> Repository:
        return Repository(client=self.client, name=name)

    def upload_blob(self, repository: str, data: bytes) -> dict[str, Any]:
        upload = self.client.initiate_layer_upload(repositoryName=repository)
        self.client.upload_layer_part(repositoryName=repository, uploadId=upload["uploadId"], partFirstByte=0,
                                      partLastByte=len(data) - 1, layerPartBlob=data)
        self.client.complete_layer_upload(repositoryName=repository, uploadId=upload["uploadId"],
                                          layerDigests=[sha256(data)])
        self.blobs[sha256(data)] = data
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(data),
                "size": len(data)}

    def push(self, repository: str, tag: str | None, layers: list[bytes], config: bytes = b'{"os":"linux"}'
             ) -> tuple[str, str]:
        config_descriptor = {**self.upload_blob(repository, config),
                             "mediaType": "application/vnd.oci.image.config.v1+json"}
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor,
                               "layers": [self.upload_blob(repository, layer) for layer in layers]})
        return self.put(repository, tag, manifest, OCI_MANIFEST), manifest

    def put(self, repository: str, tag: str | None, manifest: str, media_type: str) -> str:
        digest = sha256(manifest.encode())
        extra = {"imageTag": tag} if tag else {}
        self.client.put_image(repositoryName=repository, imageManifest=manifest, imageManifestMediaType=media_type,
                              imageDigest=digest, **extra)
        return digest

    def open_blob(self, repository: Repository, digest: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        assert repository.name == self.dev, "blobs are read from the source only"
        self.fetched.append(digest)
        return contextlib.nullcontext(io.BytesIO(self.blobs[digest]))

    def image(self, repository: str, image_id: dict[str, str]) -> dict[str, Any] | None:
        images = self.client.batch_get_image(repositoryName=repository, imageIds=[image_id])["images"]
        return images[0] if images else None

    def available(self, repository: str, digests: list[str]) -> bool:
        layers = self.client.batch_check_layer_availability(repositoryName=repository, layerDigests=digests)
        return not layers["failures"] and all(x["layerAvailability"] == "AVAILABLE" for x in layers["layers"])


@pytest.fixture(scope="module")
def ecr_client() -> Iterator[Any]:
    """One moto session for the module (starting moto is the slow part); each test gets its own repositories."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.setenv(name, "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            yield boto3.client("ecr", region_name=REGION)


@pytest.fixture
def ecr(ecr_client: Any) -> Registry:
    return Registry(ecr_client)


class Recording:
    """An ECR client that records put_image calls: moto does not keep every field it is sent."""

    def __init__(self, client: Any):
        self.client = client
        self.puts: list[dict[str, Any]] = []

    def put_image(self, **kwargs: Any) -> Any:
        self.puts.append(kwargs)
        return self.client.put_image(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_promotes_the_image_by_digest_keeping_the_tag(ecr: Registry) -> None:
    digest, manifest = ecr.push(ecr.dev, "v1.2.0", [b"base layer", b"app layer"])
    prod = Recording(ecr.client)

    result = promote(ecr.repo(ecr.dev), Repository(prod, ecr.prod), "v1.2.0", open_blob=ecr.open_blob)

    assert prod.puts == [{"repositoryName": ecr.prod, "imageManifest": manifest,
                          "imageManifestMediaType": OCI_MANIFEST, "imageDigest": digest, "imageTag": "v1.2.0"}]

    assert (result.status, result.digest, result.tag) == ("promoted", digest, "v1.2.0")
    assert (result.blobs_copied, result.blobs_present) == (3, 0)  # config + two layers
    promoted = ecr.image(ecr.prod, {"imageTag": "v1.2.0"})
    assert promoted is not None
    assert promoted["imageId"]["imageDigest"] == digest
    assert promoted["imageManifest"] == manifest  # byte for byte, so the digest is the same image
    document = json.loads(manifest)
    blobs = [document["config"]["digest"], *(layer["digest"] for layer in document["layers"])]
    assert ecr.available(ecr.prod, blobs)
    assert ecr.image(ecr.prod, {"imageDigest": digest}) is not None


def test_promoting_again_is_a_no_op(ecr: Registry) -> None:
    ecr.push(ecr.dev, "v1.2.0", [b"layer"])
    promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v1.2.0", open_blob=ecr.open_blob)
    ecr.fetched.clear()

    again = promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v1.2.0", open_blob=ecr.open_blob)

    assert again.status == "unchanged"
    assert ecr.fetched == []


def test_only_blobs_missing_in_the_destination_are_copied(ecr: Registry) -> None:
    ecr.push(ecr.prod, "v1.0.0", [b"shared base layer"])
    _, manifest = ecr.push(ecr.dev, "v1.1.0", [b"shared base layer", b"new app layer"])

    result = promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v1.1.0", open_blob=ecr.open_blob)

    assert (result.blobs_copied, result.blobs_present) == (1, 2)  # config and base layer are already there
    assert ecr.fetched == [json.loads(manifest)["layers"][1]["digest"]]


def test_refuses_to_move_an_existing_tag(ecr: Registry) -> None:
    old, _ = ecr.push(ecr.prod, "v1.2.0", [b"what prod runs"])
    ecr.push(ecr.dev, "v1.2.0", [b"something else"])

    with pytest.raises(PromotionError, match=r"already has the tag v1\.2\.0 on sha256:.*never moves a tag"):
        promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v1.2.0", open_blob=ecr.open_blob)

    still = ecr.image(ecr.prod, {"imageTag": "v1.2.0"})
    assert still is not None and still["imageId"]["imageDigest"] == old
    assert ecr.fetched == []


def test_refuses_a_missing_source_image(ecr: Registry) -> None:
    with pytest.raises(PromotionError, match=f"{ecr.dev} has no image tagged v9.9.9"):
        promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v9.9.9", open_blob=ecr.open_blob)
    missing = "sha256:" + "0" * 64
    with pytest.raises(PromotionError, match=f"{ecr.dev} has no image {missing}"):
        promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v9.9.9", digest=missing, open_blob=ecr.open_blob)
    assert ecr.client.describe_images(repositoryName=ecr.prod)["imageDetails"] == []


def test_a_digest_is_promoted_under_the_given_tag(ecr: Registry) -> None:
    digest, _ = ecr.push(ecr.dev, "latest", [b"layer"])

    result = promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v2.0.0", digest=digest, open_blob=ecr.open_blob)

    assert result.status == "promoted"
    promoted = ecr.image(ecr.prod, {"imageTag": "v2.0.0"})
    assert promoted is not None and promoted["imageId"]["imageDigest"] == digest


def test_a_digest_that_the_source_tag_does_not_name_is_refused(ecr: Registry) -> None:
    first, _ = ecr.push(ecr.dev, None, [b"first"])
    ecr.push(ecr.dev, "v3.0.0", [b"second"])
    with pytest.raises(PromotionError, match=r"has the tag v3\.0\.0 on .* not on"):
        promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v3.0.0", digest=first, open_blob=ecr.open_blob)


def test_a_multi_platform_index_is_copied_with_its_manifests(ecr: Registry) -> None:
    child_digest, child = ecr.push(ecr.dev, None, [b"amd64 layer"])
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child),
         "platform": {"architecture": "amd64", "os": "linux"}}]})
    index_digest = ecr.put(ecr.dev, "v4.0.0", index, OCI_INDEX)

    result = promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v4.0.0", open_blob=ecr.open_blob)

    assert result.digest == index_digest and result.blobs_copied == 2
    promoted = ecr.image(ecr.prod, {"imageTag": "v4.0.0"})
    assert promoted is not None and promoted["imageManifest"] == index
    copied_child = ecr.image(ecr.prod, {"imageDigest": child_digest})
    assert copied_child is not None and copied_child["imageManifest"] == child


def test_a_blob_that_does_not_match_its_digest_stops_the_promotion(ecr: Registry) -> None:
    ecr.push(ecr.dev, "v5.0.0", [b"layer"])

    def corrupt(repository: Repository, digest: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        return contextlib.nullcontext(io.BytesIO(b"not the layer"))

    with pytest.raises(PromotionError, match="hashes to"):
        promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "v5.0.0", open_blob=corrupt)
    assert ecr.image(ecr.prod, {"imageTag": "v5.0.0"}) is None


def test_command_line_takes_repository_urls_and_exits_non_zero_when_refused(
        ecr: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    ecr.push(ecr.dev, "v1.0.0", [b"layer"])
    url = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    arguments = ["--source", f"{url}/{ecr.dev}", "--destination", f"{url}/{ecr.prod}", "--tag", "v1.0.0"]

    assert promote_image.main(arguments, open_blob=ecr.open_blob) == 0
    assert "promoted" in capsys.readouterr().out
    assert promote_image.main(arguments, open_blob=ecr.open_blob) == 0
    assert "nothing to do" in capsys.readouterr().out

    ecr.push(ecr.dev, "v1.0.1", [b"other layer"])
    ecr.push(ecr.prod, "v1.0.1", [b"prod layer"])
    assert promote_image.main([*arguments[:-1], "v1.0.1"], open_blob=ecr.open_blob) == 1
    assert "refused" in capsys.readouterr().err
    with pytest.raises(PromotionError, match="not a valid image tag"):
        promote(ecr.repo(ecr.dev), ecr.repo(ecr.prod), "no such tag!", open_blob=ecr.open_blob)


def test_blobs_are_streamed_from_the_presigned_download_url() -> None:
    blob = b"layer bytes" * 1000

    with serving(lambda path: (200, blob)) as port:

        class FakeEcr:
            def get_download_url_for_layer(self, **kwargs: str) -> dict[str, str]:
                assert kwargs == {"repositoryName": DEV, "registryId": ACCOUNT, "layerDigest": sha256(blob)}
                return {"downloadUrl": f"http://127.0.0.1:{port}/layer?X-Amz-Signature=x"}

        with promote_image.open_ecr_blob(Repository(FakeEcr(), DEV, ACCOUNT), sha256(blob)) as stream:
            assert stream.read() == blob
