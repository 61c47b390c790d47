"""Print the README's generated tables: the configuration table and the dev and prod capacity plans.

    venv/bin/python -m tools.readme_tables

tests/test_readme.py fails until the README carries exactly the tables this prints.
"""

import functools
import json
from pathlib import Path
from typing import Any

import yaml

from infra.settings import parse_settings, project_schema

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")


def config_text(value: Any) -> str:
    """A config value as the Pulumi CLI hands it to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def stack_values(stack: str) -> dict[str, str]:
    """Every setting of `stack` as the CLI passes it: Pulumi.yaml's defaults, then the stack file."""
    project = _yaml(PROJECT_DIR / "Pulumi.yaml")["name"]
    values = {key: config_text(spec["default"]) for key, spec in project_schema().items()}
    stack_file = _yaml(PROJECT_DIR / f"Pulumi.{stack}.yaml").get("config") or {}
    for key, value in stack_file.items():
        if key.startswith(f"{project}:"):
            values[key.split(":", 1)[1]] = config_text(value)
    return values


def cell(text: str) -> str:
    return "`" + (text or '""').replace("|", "\\|") + "`"


def config_table() -> str:
    per_stack = {stack: stack_values(stack) for stack in STACKS}
    lines = ["| key | type | default | dev | prod | what it does |", "|---|---|---|---|---|---|"]
    for key, spec in project_schema().items():
        values = [cell(config_text(spec["default"]))] + [cell(per_stack[stack][key]) for stack in STACKS]
        lines.append(f"| `{key}` | {spec['type']} | {' | '.join(values)} | "
                     f"{spec['description'].replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def plan_table() -> str:
    project = _yaml(PROJECT_DIR / "Pulumi.yaml")["name"]
    lines = ["| stack | provider | instance type | tasks per instance | limited by | tasks at min / max "
             "| instances at min / max | group maximum |", "|---|---|---|---|---|---|---|---|"]
    for stack in STACKS:
        for p in parse_settings(project, stack, stack_values(stack)).capacity_plan():
            lines.append(f"| {stack} | {p.name} | {p.instance_type} | {p.tasks_per_instance} | {p.binding_limit} "
                         f"| {p.tasks_at_min} / {p.tasks_at_max} | {p.instances_at_min} / {p.instances_at_max} "
                         f"| {p.max_instances} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_table(), plan_table(), sep="\n\n")
