"""The `aws:` settings of a stack file, for the provider the program builds itself.

The program registers its own `aws.Provider` (to give every resource the stack's default tags), and an
explicit provider reads nothing from `aws:` config on its own: each key a stack file sets is parsed here
against `pulumi_aws.ProviderArgs` and handed to that provider, so `aws:profile`, `aws:allowedAccountIds`,
`aws:assumeRoles`... take effect. A key the provider does not have, a key of a version of pulumi-aws
before 7, and a key under a namespace the program does not read are refused, not ignored.
"""

import difflib
import functools
import inspect
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pulumi_aws as aws

from infra.settings.rules import Errors

# Namespaces besides the project's and `aws` whose keys the Pulumi CLI or a provider the program uses reads.
OTHER_NAMESPACES = ("pulumi", "docker-build")
# Keys of pulumi-aws before v7 that users still copy from old examples.
RENAMED = {
    "assumeRole": "aws:assumeRoles (a list of role objects)",
    "sharedCredentialsFile": "aws:sharedCredentialsFiles (a list)",
    "sharedConfigFile": "aws:sharedConfigFiles (a list)",
    "s3ForcePathStyle": "aws:s3UsePathStyle",
    "skipGetEc2Platforms": "nothing: pulumi-aws 7 no longer has it",
}
CREDENTIALS = ("accessKey", "secretKey", "token")  # stay secret all the way to the provider
ACCOUNT_LISTS = ("allowedAccountIds", "forbiddenAccountIds")
ACCOUNT_ID = re.compile(r"^\d{12}$")
# AWS tags: keys 1-128 characters, values up to 256, `aws:` reserved; at most 50 per resource.
TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$")
MAX_TAGS = 50
# Tags a resource carries beyond the default tags (the instance groups' Name and AmazonECSManaged).
RESOURCE_TAGS = 2


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _kind(annotation: Any) -> str:
    text = str(annotation)
    for kind, marker in (("objects", "Sequence[typing.Union[ForwardRef('Provider"), ("strings", "Sequence["),
                         ("object", "ForwardRef('Provider"), ("bool", "[bool"), ("int", "[int")):
        if marker in text:
            return kind
    return "string"


def _object_class(annotation: Any) -> type:
    name = re.search(r"ForwardRef\('(Provider\w+Args)'\)", str(annotation)).group(1)  # type: ignore[union-attr]
    return getattr(aws, name)


@functools.cache
def provider_keys() -> dict[str, tuple[str, str, Any]]:
    """`aws:` key (camelCase) -> (ProviderArgs argument, kind of value, annotation)."""
    parameters = inspect.signature(aws.ProviderArgs.__init__).parameters
    return {_camel(name): (name, _kind(p.annotation), p.annotation) for name, p in parameters.items()
            if name not in ("self", "__self__")}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _object(cls: Any, value: Any, fail: Callable[[str], None]) -> Any:
    if not isinstance(value, dict):
        fail("must be an object (a YAML mapping)")
        return None
    fields = {_camel(name): name for name in inspect.signature(cls.__init__).parameters
              if name not in ("self", "__self__")}
    unknown = [key for key in value if key not in fields]
    if unknown:
        fail(f"has no field {', '.join(unknown)}; its fields are {', '.join(fields)}")
        return None
    return cls(**{fields[key]: item for key, item in value.items()})


def _value(kind: str, annotation: Any, raw: Any, fail: Callable[[str], None]) -> Any:
    value = _json(raw)
    if kind == "string":  # text stays as written ("0123" is a profile name, not a number)
        if isinstance(value, list | dict):
            fail("must be text")
        return str(raw)
    if kind == "object":
        return _object(_object_class(annotation), value, fail)
    if kind == "objects":
        items = value if isinstance(value, list) else [value]
        if not isinstance(value, list):
            fail("must be a list of objects")
        return [_object(_object_class(annotation), item, fail) for item in items]
    return _scalar(kind, value, fail)


def _scalar(kind: str, value: Any, fail: Callable[[str], None]) -> Any:
    if kind == "bool":
        text = str(value).lower()
        if text not in ("true", "false"):
            fail("must be true or false")
        return text == "true"
    if kind == "int":
        if isinstance(value, bool) or not str(value).lstrip("-").isdigit():
            fail("must be a whole number")
            return None
        return int(value)
    if kind == "strings":
        # `pulumi config set --path 'key[0]' 123` stores a number: text to the provider, as its schema wants.
        if not (isinstance(value, list) and all(isinstance(item, str | int) and not isinstance(item, bool)
                                                for item in value)):
            fail("must be a list of strings")
            return value
        return [str(item) for item in value]
    return value


def parse_provider(errors: Errors, aws_config: Mapping[str, Any], secret_keys: Collection[str] = ()) -> dict[str, Any]:
    """ProviderArgs keyword arguments from the `aws:` keys (without the namespace); refuses unknown keys and
    credentials kept in plain text (`secret_keys`: the keys stored encrypted)."""
    keys = provider_keys()
    parsed: dict[str, Any] = {}
    for key, raw in aws_config.items():
        def fail(allowed: str, key: str = key, raw: Any = raw) -> None:
            errors.append(f"aws:{key} = {'<secret>' if key in CREDENTIALS else _shown(raw)}: {allowed}")

        if key in CREDENTIALS and key not in secret_keys:
            fail(f"is in plain text in the stack file: store it with `pulumi config set --secret aws:{key}`, or "
                 "better leave credentials to aws:profile or the environment")
        elif key in RENAMED:
            fail(f"is a setting of pulumi-aws before v7; use {RENAMED[key]}")
        elif key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            fail("is not a setting of the aws provider" + (f"; did you mean aws:{close[0]}?" if close else
                 " (see pulumi_aws.ProviderArgs)"))
        else:
            name, kind, annotation = keys[key]
            parsed[name] = _value(kind, annotation, raw, fail)
            if key in ACCOUNT_LISTS and isinstance(parsed[name], list) \
                    and not all(ACCOUNT_ID.match(item) for item in parsed[name]):
                fail("must list 12-digit AWS account IDs; quote them in the stack file (YAML reads 012345678901 as "
                     "a number and drops the leading zero)")
    return parsed


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def check_namespaces(errors: Errors, project: str, other_config: Mapping[str, Any]) -> None:
    """Refuse keys under a namespace nobody reads (`model-servng:image`, `modelserving:image`)."""
    for full_key, value in other_config.items():
        namespace, _, key = full_key.partition(":")
        if namespace in (project, "aws", *OTHER_NAMESPACES):
            continue
        hint = f"; did you mean {project}:{key}?" if difflib.get_close_matches(
            namespace, [project], n=1, cutoff=0.6) else ""
        errors.append(f"{full_key} = {_shown(value)}: is not read by this program: its settings are "
                      f"{project}:<key> (Pulumi.yaml) and aws:<key> (the provider){hint}")


def check_default_tags(errors: Errors, parsed: Mapping[str, Any], stack_tags: Mapping[str, str]) -> None:
    """The user's aws:defaultTags add to the stack's own tags, which they may not change."""
    default_tags = parsed.get("default_tags")
    tags = dict(getattr(default_tags, "tags", None) or {}) if default_tags is not None else {}
    for key, raw in tags.items():
        value = str(raw)
        if key in stack_tags and value != stack_tags[key]:
            errors.append(f"aws:defaultTags = {json.dumps({'tags': {key: value}})}: must not change the stack's own "
                          f"tag {key} ({stack_tags[key]!r}); the stack sets {', '.join(stack_tags)} itself")
        elif not 1 <= len(key) <= 128 or len(value) > 256 or key.lower().startswith("aws:") \
                or not TAG_CHARS.match(key + value):
            errors.append(f"aws:defaultTags = {json.dumps({'tags': {key: value}})}: AWS tags need a key of 1-128 "
                          "and a value of at most 256 letters, digits, spaces and _ . : / = + - @, and no key "
                          "starting with aws:")
    total = len({**tags, **stack_tags})
    if total + RESOURCE_TAGS > MAX_TAGS:
        errors.append(f"aws:defaultTags = {len(tags)} tags: AWS allows {MAX_TAGS} tags per resource; with the "
                      f"stack's {len(stack_tags)} and the {RESOURCE_TAGS} the instance groups add, at most "
                      f"{MAX_TAGS - RESOURCE_TAGS - len(stack_tags)} of your own")


def merged_default_tags(parsed: Mapping[str, Any], stack_tags: Mapping[str, str]) -> dict[str, str]:
    default_tags = parsed.get("default_tags")
    user = dict(getattr(default_tags, "tags", None) or {}) if default_tags is not None else {}
    return {**{key: str(value) for key, value in user.items()}, **stack_tags}
