"""Promote a model-server image from one ECR repository to another (dev to prod), by digest, keeping the tag.

    venv/bin/python tools/promote_image.py \\
        --source "$(pulumi stack output repositoryUrl -s dev)" \\
        --destination "$(pulumi stack output repositoryUrl -s prod)" \\
        --tag v1.2.0 [--digest sha256:...]

The image is the one `--tag` names in the source, or the exact `--digest` (then `--tag` is the tag it gets in
the destination; if the source also has that tag, it must point at the same digest). The copy is the same
image, byte for byte: the manifest is put unchanged with its own media type, so the destination digest equals
the source digest, and the prod stack can deploy either the tag or `sha256:<digest>`.

ECR's PutImage only accepts a manifest whose layers are already in the destination repository, so the
layers (and, for a multi-platform index, each child manifest) are copied first, skipping those already there.
A tag is never moved: if the destination already has the tag for another digest the command refuses, as
prod's immutable tags would; if it has the tag for this digest there is nothing to do.

Exit status: 0 promoted or already there, 1 refused or failed (the message says why), 2 bad arguments.
Credentials come from the usual AWS sources; `--source-profile` / `--destination-profile` pick profiles when
dev and prod are different accounts. Both sides need ecr:DescribeImages and ecr:BatchGetImage; the source
also ecr:GetDownloadUrlForLayer, the destination also ecr:BatchCheckLayerAvailability, the three layer-upload
actions and ecr:PutImage.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import re
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import boto3

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX]
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
REPOSITORY_URL = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
                            r"(?P<name>[a-z0-9._/-]+)$")
MAX_PART_BYTES = 20 * 1024 * 1024  # ECR's largest layer part
DOWNLOAD_TIMEOUT_SECONDS = 60


class PromotionError(Exception):
    """The image cannot be promoted; the message says why and what to do."""


@dataclass(frozen=True)
class Repository:
    client: Any  # a boto3 ECR client
    name: str
    registry_id: str | None = None

    def ids(self) -> dict[str, str]:
        ids = {"repositoryName": self.name}
        if self.registry_id:
            ids["registryId"] = self.registry_id
        return ids

    def __str__(self) -> str:
        return f"{self.registry_id}/{self.name}" if self.registry_id else self.name


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    text: str

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed


@dataclass(frozen=True)
class Result:
    digest: str
    tag: str
    status: str  # "promoted" or "unchanged"
    blobs_copied: int = 0
    blobs_present: int = 0


BlobOpener = Callable[[Repository, str], contextlib.AbstractContextManager[IO[bytes]]]


@contextlib.contextmanager
def open_ecr_blob(repository: Repository, digest: str) -> Iterator[IO[bytes]]:
    """Stream a layer or config blob from ECR: its pre-signed download URL, read in chunks."""
    url = repository.client.get_download_url_for_layer(**repository.ids(), layerDigest=digest)["downloadUrl"]
    if not url.startswith(("https://", "http://")):
        raise PromotionError(f"ECR returned an unexpected download URL for {digest}")
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        yield response


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def get_manifest(repository: Repository, image_id: dict[str, str]) -> Manifest | None:
    response = repository.client.batch_get_image(**repository.ids(), imageIds=[image_id],
                                                 acceptedMediaTypes=MANIFEST_TYPES)
    images = response.get("images") or []
    if not images:
        return None
    image = images[0]
    text = image["imageManifest"]
    media_type = image.get("imageManifestMediaType") or json.loads(text).get("mediaType")
    if media_type not in MANIFEST_TYPES:
        raise PromotionError(f"{repository} holds {image_id} with manifest type {media_type!r}, which this "
                             f"command does not copy (it copies {', '.join(MANIFEST_TYPES)})")
    return Manifest(digest=image["imageId"]["imageDigest"], media_type=media_type, text=text)


def tagged_digest(repository: Repository, tag: str) -> str | None:
    try:
        response = repository.client.describe_images(**repository.ids(), imageIds=[{"imageTag": tag}])
    except Exception as error:
        if _error_code(error) == "ImageNotFoundException":
            return None
        raise
    details = response.get("imageDetails") or []
    return str(details[0]["imageDigest"]) if details else None


def _blob_digests(manifest: dict[str, Any]) -> list[str]:
    blobs = [manifest["config"]] if manifest.get("config") else []
    blobs += manifest.get("layers") or []
    # Foreign layers (Windows base images) live outside the registry and are not copied.
    return [b["digest"] for b in blobs if "foreign" not in b.get("mediaType", "") and not b.get("urls")]


def _upload_blob(destination: Repository, digest: str, stream: IO[bytes]) -> None:
    upload = destination.client.initiate_layer_upload(**destination.ids())
    upload_id = upload["uploadId"]
    part_size = min(int(upload.get("partSize") or MAX_PART_BYTES), MAX_PART_BYTES)
    hasher, offset = hashlib.sha256(), 0
    while chunk := stream.read(part_size):
        hasher.update(chunk)
        destination.client.upload_layer_part(**destination.ids(), uploadId=upload_id, partFirstByte=offset,
                                             partLastByte=offset + len(chunk) - 1, layerPartBlob=chunk)
        offset += len(chunk)
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        raise PromotionError(f"the blob {digest} read from the source hashes to {actual}; nothing was tagged")
    completed = destination.client.complete_layer_upload(**destination.ids(), uploadId=upload_id,
                                                         layerDigests=[digest])
    if completed.get("layerDigest", digest) != digest:
        raise PromotionError(f"ECR stored the blob {digest} as {completed['layerDigest']}; nothing was tagged")


def copy_blobs(source: Repository, destination: Repository, digests: list[str],
               open_blob: BlobOpener) -> tuple[int, int]:
    """Copy the blobs the destination lacks; return (copied, already present)."""
    if not digests:
        return 0, 0
    response = destination.client.batch_check_layer_availability(**destination.ids(), layerDigests=digests)
    present = {layer["layerDigest"] for layer in response.get("layers") or []
               if layer.get("layerAvailability") == "AVAILABLE"}
    missing = [d for d in dict.fromkeys(digests) if d not in present]
    for digest in missing:
        with open_blob(source, digest) as stream:
            _upload_blob(destination, digest, stream)
    return len(missing), len(digests) - len(missing)


def _put(destination: Repository, manifest: Manifest, tag: str | None) -> None:
    arguments: dict[str, Any] = {"imageManifest": manifest.text, "imageManifestMediaType": manifest.media_type,
                                 "imageDigest": manifest.digest}
    if tag:
        arguments["imageTag"] = tag
    try:
        response = destination.client.put_image(**destination.ids(), **arguments)
    except Exception as error:
        code = _error_code(error)
        if code == "ImageAlreadyExistsException":
            return  # this manifest is already there (with this tag, when one was given)
        if code == "ImageTagAlreadyExistsException":
            raise PromotionError(f"{destination} already has the tag {tag} for another image and its tags are "
                                 "immutable; promote under a new tag") from error
        if code in ("LayersNotFoundException", "ReferencedImagesNotFoundException"):
            raise PromotionError(f"{destination} refused the manifest {manifest.digest}: {error}") from error
        raise
    stored = response["image"]["imageId"]["imageDigest"]
    if stored != manifest.digest:
        raise PromotionError(f"{destination} stored {manifest.digest} as {stored}: the copy is not the same image")


def _source_manifest(source: Repository, tag: str, digest: str | None) -> Manifest:
    """The image to promote: the one `tag` names in the source, or exactly `digest`."""
    tagged = tagged_digest(source, tag)
    if digest is None:
        if tagged is None:
            raise PromotionError(f"{source} has no image tagged {tag}")
        digest = tagged
    elif tagged is not None and tagged != digest:
        raise PromotionError(f"{source} has the tag {tag} on {tagged}, not on {digest}: check which image you "
                             "mean to promote")
    manifest = get_manifest(source, {"imageDigest": digest})
    if manifest is None:
        raise PromotionError(f"{source} has no image {digest}")
    return manifest


def _copy_index_children(source: Repository, destination: Repository, index: Manifest,
                         open_blob: BlobOpener) -> tuple[int, int]:
    """Put each manifest a multi-platform index names (untagged), with its blobs, unless already there."""
    copied = present = 0
    for child in index.document.get("manifests") or []:
        if get_manifest(destination, {"imageDigest": child["digest"]}) is not None:
            continue
        manifest = get_manifest(source, {"imageDigest": child["digest"]})
        if manifest is None:
            raise PromotionError(f"{source} lacks {child['digest']}, which the index {index.digest} references")
        c, p = copy_blobs(source, destination, _blob_digests(manifest.document), open_blob)
        copied, present = copied + c, present + p
        _put(destination, manifest, None)
    return copied, present


def promote(source: Repository, destination: Repository, tag: str, digest: str | None = None,
            open_blob: BlobOpener = open_ecr_blob) -> Result:
    if not TAG.match(tag):
        raise PromotionError(f"{tag!r} is not a valid image tag")
    if digest is not None and not DIGEST.match(digest):
        raise PromotionError(f"{digest!r} is not a digest like sha256:<64 hex digits>")
    manifest = _source_manifest(source, tag, digest)

    existing = tagged_digest(destination, tag)
    if existing == manifest.digest:
        return Result(digest=manifest.digest, tag=tag, status="unchanged")
    if existing is not None:
        raise PromotionError(f"{destination} already has the tag {tag} on {existing}; a promotion never moves a "
                             "tag (prod tags are immutable): promote under a new tag")

    if manifest.media_type in INDEX_TYPES:
        copied, present = _copy_index_children(source, destination, manifest, open_blob)
    else:
        copied, present = copy_blobs(source, destination, _blob_digests(manifest.document), open_blob)
    _put(destination, manifest, tag)
    return Result(digest=manifest.digest, tag=tag, status="promoted", blobs_copied=copied, blobs_present=present)


def repository(value: str, region: str | None, profile: str | None, registry_id: str | None) -> Repository:
    """A repository name, or a repository URL (which also gives the account and region)."""
    match = REPOSITORY_URL.match(value)
    if match:
        region, registry_id, name = region or match["region"], registry_id or match["account"], match["name"]
    else:
        name = value
    return Repository(client=_ecr_client(profile, region), name=name, registry_id=registry_id)


@functools.cache
def _ecr_client(profile: str | None, region: str | None) -> Any:
    """One client per profile and region: a boto3 session loads its service models anew each time."""
    return boto3.Session(profile_name=profile, region_name=region).client("ecr")


def main(argv: list[str] | None = None, open_blob: BlobOpener | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promote_image", description=__doc__.splitlines()[0] if __doc__ else "")
    for side in ("source", "destination"):
        parser.add_argument(f"--{side}", required=True, help=f"{side} repository: name or repository URL")
        parser.add_argument(f"--{side}-region", help="AWS region (default: from the URL or the AWS config)")
        parser.add_argument(f"--{side}-profile", help="AWS profile for this side")
        parser.add_argument(f"--{side}-registry-id", help="AWS account of the registry (default: from the URL)")
    parser.add_argument("--tag", required=True, help="tag to promote; the destination gets the same tag")
    parser.add_argument("--digest", help="promote exactly this image (sha256:...) under --tag")
    args = parser.parse_args(argv)
    try:
        source = repository(args.source, args.source_region, args.source_profile, args.source_registry_id)
        destination = repository(args.destination, args.destination_region, args.destination_profile,
                                 args.destination_registry_id)
        result = promote(source, destination, args.tag, args.digest, open_blob or open_ecr_blob)
    except PromotionError as error:
        print(f"promote_image: refused: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # AWS errors: credentials, permissions, a missing repository
        print(f"promote_image: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if result.status == "unchanged":
        print(f"{destination}:{result.tag} is already {result.digest}; nothing to do")
    else:
        print(f"promoted {source}@{result.digest} to {destination}:{result.tag} "
              f"({result.blobs_copied} blobs copied, {result.blobs_present} already there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
