"""What the model declares, read back for errors and docs: bounds, choices, checks, Pulumi.yaml's schema.

`config_block()` is Pulumi.yaml's `config:` block and `tools/readme_tables.py` the README table, both
derived from `infra/settings/model.py`; `project_schema()` reads the block back as the Pulumi CLI sees it.
"""

import functools
import json
import typing
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo

from infra.settings.model import SECTIONS, Check, Settings

PROJECT_FILE = Path(__file__).resolve().parents[2] / "Pulumi.yaml"
# libyaml's loader where PyYAML was built with it: the pure-Python one takes ~0.1 s over Pulumi.yaml.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_HEADER = """\
# Every setting the program reads, GENERATED from infra/settings/model.py by
# `venv/bin/python tools/readme_tables.py` (tests fail when it is stale; do not edit by hand).
# Defaults describe a cheap dev-like stack; Pulumi.prod.yaml overrides what differs.
"""


@functools.cache
def fields_by_key() -> dict[str, FieldInfo]:
    return {field.alias or name: field for name, field in Settings.model_fields.items()}


def field_by_key(key: str) -> FieldInfo:
    return fields_by_key()[key]


def bounds(field: FieldInfo) -> tuple[int | None, int | None]:
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return low, high  # type: ignore[return-value]


def _item_type(field: FieldInfo) -> Any:
    return typing.get_args(field.annotation)[0] if typing.get_origin(field.annotation) is tuple else None


def checks(field: FieldInfo) -> list[Check]:
    """The checks of the value, or of each item of a list."""
    item = _item_type(field)
    metadata = getattr(item, "__metadata__", ()) if item is not None else field.metadata
    return [m.func for m in metadata if isinstance(m, AfterValidator) and isinstance(m.func, Check)]


def choices(field: FieldInfo) -> tuple[str, ...]:
    return typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else ()


def pulumi_type(field: FieldInfo) -> str:
    if _item_type(field) is not None:
        return "array"
    return {bool: "boolean", int: "integer"}.get(field.annotation, "string")  # type: ignore[arg-type]


def allowed(field: FieldInfo) -> str:
    """What values the field takes, from its metadata, for the docs ("" when any value of its type goes)."""
    low, high = bounds(field)
    parts = [f"{low}-{high}"] if low is not None else []
    if choices(field):
        parts.append(" or ".join(choices(field)))
    for check in checks(field)[:1]:  # the first check says what a value is; later ones refuse special cases
        parts.append(check.allowed.removeprefix("must be "))
    if _item_type(field) is not None and parts:
        parts[0] = "each " + parts[0]
    return "; ".join(parts)


def default(field: FieldInfo) -> Any:
    value = field.default
    return list(value) if isinstance(value, tuple) else value


def config_schema() -> dict[str, dict[str, Any]]:
    """Pulumi.yaml's `config:` entries: key -> type (items), description, default."""
    schema: dict[str, dict[str, Any]] = {}
    for key, field in fields_by_key().items():
        entry: dict[str, Any] = {"type": pulumi_type(field)}
        if entry["type"] == "array":
            entry["items"] = {"type": "string"}
        text = field.description or ""
        entry["description"] = f"{text} Allowed: {allowed(field)}." if allowed(field) else text
        entry["default"] = default(field)
        schema[key] = entry
    return schema


def _section(cls: type[BaseModel]) -> str:
    return (cls.__doc__ or cls.__name__).strip()


def config_block(namespaced: dict[str, Any] | None = None) -> str:
    """The `config:` block of Pulumi.yaml, grouped by section, values as JSON (which YAML reads as is).

    `namespaced` keys (`aws:region: ...`) are provider values, not this project's settings: kept as given."""
    schema = config_schema()
    lines = [CONFIG_HEADER.rstrip("\n"), "config:"]
    for key, value in (namespaced or {}).items():
        lines.append(f"  {key}: {json.dumps(value)}")
    for cls in SECTIONS:
        title = f"  # --- {_section(cls)} "
        lines.append(title + "-" * (100 - len(title)))
        for name in cls.__annotations__:
            key = Settings.model_fields[name].alias or name
            entry = schema[key]
            lines.append(f"  {key}:")
            lines.append(f"    type: {entry['type']}")
            if "items" in entry:
                lines.append("    items:\n      type: string")
            lines.append(f"    description: {json.dumps(entry['description'])}")
            lines.append(f"    default: {json.dumps(entry['default'])}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def load_yaml(text: str) -> Any:
    """YAML read safely (plain data only), as every reader of the project's YAML files here does."""
    return yaml.load(text, Loader=_YAML_LOADER)


def with_config_block(project_yaml: str) -> str:
    """Pulumi.yaml's text with its generated part (from the header comment or `config:` on) replaced."""
    start = project_yaml.find(CONFIG_HEADER.splitlines()[0])
    if start < 0:
        start = project_yaml.index("\nconfig:") + 1
    # Keep whatever follows the config block (a later top-level key), though today nothing does.
    rest = project_yaml[start:].split("\n")
    end = next((i for i, line in enumerate(rest) if i and line and not line.startswith((" ", "#", "config:"))),
               len(rest))
    tail = "\n".join(rest[end:])
    config = load_yaml(project_yaml).get("config") or {}
    namespaced = {key: value for key, value in config.items() if ":" in key}
    return project_yaml[:start] + config_block(namespaced) + (("\n" + tail) if tail.strip() else "")


@functools.cache
def project_schema(path: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The `config:` block of Pulumi.yaml as the CLI reads it: key -> {type, description, default}."""
    config = load_yaml(path.read_text())["config"]
    # Keys with a namespace (aws:region) set provider values; only bare keys are this project's settings.
    return {key: spec for key, spec in config.items() if ":" not in key}
