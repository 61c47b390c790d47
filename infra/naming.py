"""Logical names whose AWS physical names stay within AWS's length limits.

Pulumi auto-names a resource as `<logical name>-<7 random hex>`, so the physical name is 8 characters
longer than the logical one. Auto-naming (rather than fixed names) lets Pulumi create a replacement
before deleting the original without a name clash.
"""

AUTONAME_SUFFIX_LENGTH = 8

# AWS limits on physical names that this project's resources come near.
LOAD_BALANCER_NAME_MAX = 32
TARGET_GROUP_NAME_MAX = 32
IAM_ROLE_NAME_MAX = 64

# AWS refuses capacity provider names that start with these.
RESERVED_CAPACITY_PROVIDER_PREFIXES = ("aws", "ecs", "fargate")


def bounded_name(prefix: str, suffix: str, limit: int) -> str:
    """`<prefix>-<suffix>`, with the prefix shortened so the auto-name fits `limit` characters."""
    room = limit - AUTONAME_SUFFIX_LENGTH - len(suffix) - 1
    return f"{prefix[:room].rstrip('-')}-{suffix}"


def capacity_provider_name(prefix: str) -> str:
    """A logical name AWS accepts whatever the project and stack are called (`ecs-...` would be refused)."""
    return f"cp-{prefix}"
