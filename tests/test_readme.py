"""The README's configuration table matches Pulumi.yaml and the stack files, key for key, value for value."""

import json
import re

import pytest

from infra.settings import project_schema
from tests.harness import PROJECT, PROJECT_DIR, stack_config

ROW = re.compile(r"^\| `(\w+)` \| (\w+) \| `(.*?)` \| `(.*?)` \| `(.*?)` \| (.+) \|$")


def readme_rows() -> dict[str, tuple[str, ...]]:
    rows = {}
    for line in (PROJECT_DIR / "README.md").read_text().splitlines():
        match = ROW.match(line.replace("\\|", "\x00"))
        if match:
            key, *values = (group.replace("\x00", "|") for group in match.groups())
            rows[key] = tuple('' if v == '""' else v for v in values)
    return rows


def schema() -> dict[str, dict]:
    return project_schema()


def default_text(value: object) -> str:
    return json.dumps(value) if isinstance(value, list | bool) else str(value)


def test_every_declared_key_is_in_the_readme_table_and_nothing_else() -> None:
    assert set(readme_rows()) == set(schema())


@pytest.mark.parametrize("key", list(schema()))
def test_readme_row_matches_the_declared_type_default_and_stack_values(key: str) -> None:
    kind, default, dev, prod, description = readme_rows()[key]
    spec = schema()[key]
    assert kind == spec["type"]
    assert default == default_text(spec["default"])
    assert dev == stack_config("dev")[f"{PROJECT}:{key}"]
    assert prod == stack_config("prod")[f"{PROJECT}:{key}"]
    assert description.strip()


def test_every_declared_key_has_a_description_and_a_default() -> None:
    for key, spec in schema().items():
        assert spec.get("description"), key
        assert "default" in spec, key
