"""Shared plumbing of the policies: reading engine properties and declaring policies in one line.

What the engine hands a policy, and what these helpers absorb:
- properties use the engine's camelCase names, and nested values arrive as read-only mappings and
  sequences (proxies that raise `UnknownValueError` on values not known during a preview), never as
  plain dicts and lists: test with `Mapping` / `Sequence`, never `dict` / `list`;
- numbers arrive as floats (8080.0), some launch-template booleans as the strings "true"/"false";
- `containerDefinitions` and IAM documents are JSON strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

SECURITY = "security"
DEPLOYABILITY = "deployability"

# A resource check yields one message per violation; a stack check yields (message, urn of the culprit).
ResourceCheck = Callable[[ResourceValidationArgs], Iterable[str]]
StackCheck = Callable[["StackView"], Iterable[tuple[str, str]]]


def truthy(value: Any) -> bool:
    """True for True and the string "true" (any case); launch templates send booleans as strings."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def falsy(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def as_list(value: Any) -> list[Any]:
    """A property that is a list in the schema (absent -> [], a lone scalar or object -> [it])."""
    if value is None:
        return []
    if isinstance(value, str | bytes | Mapping):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    return [value]


def as_map(value: Any) -> Mapping[str, Any]:
    """A nested object property; absent or malformed -> empty."""
    if isinstance(value, Mapping):
        return value
    # Single-element lists are how some object blocks arrive from older providers.
    if isinstance(value, Sequence) and not isinstance(value, str | bytes) and len(value) == 1 \
            and isinstance(value[0], Mapping):
        return value[0]
    return {}


def number(value: Any) -> float | None:
    """Numeric properties arrive as floats, or as strings (task cpu/memory); None when absent or not numeric."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def json_value(value: Any) -> Any:
    """A property holding JSON text (policy documents, container definitions), parsed; objects pass through."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def container_definitions(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers of an ECS task definition (`containerDefinitions` is a JSON string)."""
    return [c for c in as_list(json_value(props.get("containerDefinitions"))) if isinstance(c, Mapping)]


def container_label(container: Mapping[str, Any], index: int) -> str:
    return f"container '{container.get('name') or index}'"


def resource_policy(name: str, description: str, resource_types: Iterable[str], check: ResourceCheck, *,
                    tag: str, severity: Severity, remediation: str) -> ResourceValidationPolicy:
    """A policy run on each resource; it ignores every type outside `resource_types` itself."""
    types = frozenset(resource_types)

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in types:
            return
        for message in check(args):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate, tags=[tag],
                                    severity=severity, remediation_steps=remediation)


def stack_policy(name: str, description: str, check: StackCheck, *, tag: str, severity: Severity,
                 remediation: str) -> StackValidationPolicy:
    """A policy run once over every resource of the stack, for rules that span resources."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message, urn in check(StackView(args.resources)):
            report_violation(message, urn)

    return StackValidationPolicy(name=name, description=description, validate=validate, tags=[tag],
                                 severity=severity, remediation_steps=remediation)


class StackView:
    """The stack's resources, indexed by type and linked by property dependencies.

    Links follow `property_dependencies` (which input of A came from which resource B), not output values:
    they are known during a preview, when most IDs, ARNs and names are not.
    """

    def __init__(self, resources: Sequence[PolicyResource]):
        self.resources = list(resources)
        self.by_urn = {r.urn: r for r in self.resources}

    def of_type(self, *types: str) -> list[PolicyResource]:
        return [r for r in self.resources if r.resource_type in types]

    @staticmethod
    def linked(resource: PolicyResource, prop: str, *types: str) -> list[PolicyResource]:
        """Resources of `types` that the input `prop` of `resource` was computed from."""
        return [d for d in resource.property_dependencies.get(prop, []) if not types or d.resource_type in types]

    def referrers(self, target: PolicyResource, prop: str, *types: str) -> list[PolicyResource]:
        """Resources of `types` whose input `prop` was computed from `target`."""
        return [r for r in self.of_type(*types)
                if any(d.urn == target.urn for d in r.property_dependencies.get(prop, []))]

    @staticmethod
    def direct_dependencies(resource: PolicyResource) -> Iterator[PolicyResource]:
        yield from resource.dependencies
        for deps in resource.property_dependencies.values():
            yield from deps

    def depends_on(self, resource: PolicyResource, target: PolicyResource) -> bool:
        """True when `resource` waits for `target`, directly or through other resources."""
        seen: set[str] = set()
        todo = [resource]
        while todo:
            current = todo.pop()
            for dep in self.direct_dependencies(current):
                if dep.urn == target.urn:
                    return True
                if dep.urn not in seen:
                    seen.add(dep.urn)
                    todo.append(dep)
        return False
