"""Image tags that name a moving target rather than one build: one definition for the settings (prod refuses
them before deploy) and the policy pack (ecs-image-pinned).

Standard library only: the policy pack ships a copy of this file (checked identical by a test).
"""

from __future__ import annotations

# Compared case-insensitively: `LATEST` moves as much as `latest`. An image without a tag is `latest`.
MOVING_TAGS = frozenset({"latest", "stable", "main", "master", "dev", "develop", "edge", "nightly", "current",
                         "prod", "production", "release", "canary", "head", "snapshot"})


def image_tag(image: str) -> str | None:
    """The tag of an image reference ("latest" when none is written), None when pinned by digest."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def is_moving(image: str) -> bool:
    """True when an image reference (registry/repository[:tag][@digest]) runs a moving tag."""
    tag = image_tag(image)
    return tag is not None and tag.lower() in MOVING_TAGS
