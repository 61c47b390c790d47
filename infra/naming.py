"""Logical names whose AWS physical names stay within AWS's length limits.

Pulumi auto-names a resource as `<logical name>-<7 random hex>`, so the physical name is 8 characters
longer than the logical one. Auto-naming (rather than fixed names) lets Pulumi create a replacement
before deleting the original without a name clash.
"""

import re
from dataclasses import dataclass

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


# --- AWS names derived from the stack's name prefix (`<project>-<stack>`) ---------------------------------
# Each entry: the AWS names that come from the prefix, the name the program gives the resource (`{prefix}`
# filled in), how many characters Pulumi or AWS append (the auto-name suffix; a log group's name_prefix gets
# 26), the longest name AWS accepts and its character rule. Names bounded_name already shortens (load
# balancer, target group, IAM roles) are checked for their characters only. tests/test_settings_names.py
# checks the templates against the names a real run registers.

@dataclass(frozen=True)
class AwsName:
    what: str  # the AWS names, as the error message lists them
    template: str
    suffix: int  # characters appended to the template
    max_length: int  # 0: shortened by bounded_name, so only the characters matter
    pattern: re.Pattern[str]  # what AWS accepts for the whole name
    allowed: str  # the same, said for the message
    lowercased: bool = False  # pulumi-aws lower-cases the auto-name (S3 buckets)
    only_with: str = ""  # the setting that creates the resource ("": always there)


LOG_GROUP_PREFIX_SUFFIX = 26  # the unique ID AWS provider appends to a name_prefix
WORD_CHARS = "letters, digits, hyphens and underscores"
IAM_CHARS = "letters, digits and + = , . @ _ -"
AWS_NAMES = (
    AwsName("ECR repository", "{prefix}-repo", AUTONAME_SUFFIX_LENGTH, 256,
            re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$"),  # CreateRepository's pattern, without namespaces
            "lowercase letters and digits, separated by '.', '_', '__' or hyphens"),
    AwsName("load balancer", "{prefix}-alb", AUTONAME_SUFFIX_LENGTH, 0,
            re.compile(r"^(?!internal-)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"),
            "letters, digits and hyphens, not starting with 'internal-'"),
    AwsName("target group", "{prefix}-tg", AUTONAME_SUFFIX_LENGTH, 0,
            re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"), "letters, digits and hyphens"),
    AwsName("ECS cluster and service", "{prefix}", AUTONAME_SUFFIX_LENGTH, 255, re.compile(r"^[A-Za-z0-9_-]+$"),
            WORD_CHARS),
    AwsName("ECS capacity providers", "cp-{prefix}-spot", AUTONAME_SUFFIX_LENGTH, 255,
            re.compile(r"^(?!aws|ecs|fargate)[A-Za-z0-9_-]+$"), WORD_CHARS),
    AwsName("ECS task definition family", "{prefix}-model-server", 0, 255, re.compile(r"^[A-Za-z0-9_-]+$"),
            WORD_CHARS),
    AwsName("launch templates", "{prefix}-instances", AUTONAME_SUFFIX_LENGTH, 128,
            re.compile(r"^[A-Za-z0-9().\-/_]+$"), "letters, digits and ( ) . - / _"),
    AwsName("IAM instance profile", "{prefix}-instance", AUTONAME_SUFFIX_LENGTH, 128, re.compile(r"^[\w+=,.@-]+$"),
            IAM_CHARS),
    AwsName("IAM roles", "{prefix}-execution", AUTONAME_SUFFIX_LENGTH, 0, re.compile(r"^[\w+=,.@-]+$"), IAM_CHARS),
    AwsName("CloudWatch log group", "/ecs/{prefix}/", LOG_GROUP_PREFIX_SUFFIX, 512,
            re.compile(r"^[A-Za-z0-9._/#-]+$"), "letters, digits and . _ / # -"),
    AwsName("S3 access-log bucket", "{prefix}-logs", AUTONAME_SUFFIX_LENGTH, 63,
            re.compile(r"^(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9](?:[a-z0-9-]|\.(?!\.))*[a-z0-9]$"),
            "lowercase letters, digits, hyphens and single dots", lowercased=True, only_with="albAccessLogs"),
)


def physical_name(name: AwsName, prefix: str) -> str:
    """The name AWS sees, with a stand-in for the appended random characters."""
    logical = name.template.format(prefix=prefix)
    if name.lowercased:
        logical = logical.lower()
    if name.suffix == AUTONAME_SUFFIX_LENGTH:
        return logical + "-abcdef0"
    return logical + "0" * name.suffix


def name_problems(prefix: str, enabled: frozenset[str] = frozenset()) -> list[tuple[AwsName, str]]:
    """(name, what AWS allows) for every AWS name the prefix breaks; `enabled`: the optional settings that are on."""
    problems = []
    for name in AWS_NAMES:
        if name.only_with and name.only_with not in enabled:
            continue
        physical = physical_name(name, prefix)
        if not name.pattern.match(physical):
            problems.append((name, name.allowed))
        elif name.max_length and len(physical) > name.max_length:
            room = name.max_length - (len(physical) - len(prefix))
            problems.append((name, f"at most {name.max_length} characters with Pulumi's suffix, so a "
                                   f"<project>-<stack> of at most {room}"))
    return problems
