"""Generate what is derived from the settings model: Pulumi.yaml's `config:` block and the README's tables.

    venv/bin/python tools/readme_tables.py           # rewrite Pulumi.yaml and README.md in place
    venv/bin/python tools/readme_tables.py --check   # exit 1 (and say which) when either is stale

infra/settings/model.py is the source; tests/test_readme.py fails until both files match it.
"""

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import yaml

if __name__ == "__main__":  # run as a script (tools/readme_tables.py): the project's packages are one level up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.settings import parse_settings
from infra.settings.schema import allowed, config_schema, fields_by_key, with_config_block

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT_FILE = PROJECT_DIR / "Pulumi.yaml"
README = PROJECT_DIR / "README.md"
STACKS = ("dev", "prod")
CONFIG_HEADER = "| key | type | allowed | default | dev | prod | what it does |"
PLAN_HEADER = ("| stack | provider | instance type | tasks per instance | limited by | tasks at min / max "
               "| instances at min / max | group maximum |")


def config_text(value: Any) -> str:
    """A config value as the Pulumi CLI hands it to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def _yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def stack_values(stack: str) -> dict[str, str]:
    """Every setting of `stack` as the CLI passes it: the model's defaults, then the stack file."""
    project = _yaml(PROJECT_FILE)["name"]
    values = {key: config_text(spec["default"]) for key, spec in config_schema().items()}
    stack_file = _yaml(PROJECT_DIR / f"Pulumi.{stack}.yaml").get("config") or {}
    for key, value in stack_file.items():
        if key.startswith(f"{project}:"):
            values[key.split(":", 1)[1]] = config_text(value)
    return values


def cell(text: str) -> str:
    return "`" + (text or '""').replace("|", "\\|") + "`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def config_table() -> str:
    per_stack = {stack: stack_values(stack) for stack in STACKS}
    lines = [CONFIG_HEADER, "|---|---|---|---|---|---|---|"]
    for key, spec in config_schema().items():
        field = fields_by_key()[key]
        values = [cell(config_text(spec["default"]))] + [cell(per_stack[stack][key]) for stack in STACKS]
        lines.append(f"| `{key}` | {spec['type']} | {_escape(allowed(field))} | {' | '.join(values)} | "
                     f"{_escape(field.description or '')} |")
    return "\n".join(lines)


def plan_table() -> str:
    project = _yaml(PROJECT_FILE)["name"]
    lines = [PLAN_HEADER, "|---|---|---|---|---|---|---|---|"]
    for stack in STACKS:
        for p in parse_settings(project, stack, stack_values(stack)).capacity_plan():
            lines.append(f"| {stack} | {p.name} | {p.instance_type} | {p.tasks_per_instance} | {p.binding_limit} "
                         f"| {p.tasks_at_min} / {p.tasks_at_max} | {p.instances_at_min} / {p.instances_at_max} "
                         f"| {p.max_instances} |")
    return "\n".join(lines)


def replace_table(text: str, first_header_cell: str, table: str) -> str:
    """`text` with the Markdown table whose header starts with `first_header_cell` replaced by `table`."""
    start = text.index(first_header_cell)
    end = text.find("\n\n", start)
    return text[:start] + table + (text[end:] if end >= 0 else "\n")


def generated() -> dict[Path, str]:
    """Each generated file's expected full text."""
    readme = README.read_text()
    readme = replace_table(readme, "| key | type |", config_table())
    readme = replace_table(readme, "| stack | provider |", plan_table())
    return {PROJECT_FILE: with_config_block(PROJECT_FILE.read_text()), README: readme}


def stale() -> list[Path]:
    return [path for path, text in generated().items() if path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    check = parser.parse_args(argv).check
    outdated = stale()
    if check:
        for path in outdated:
            print(f"{path.name} is stale: run venv/bin/python tools/readme_tables.py", file=sys.stderr)
        return 1 if outdated else 0
    # Pulumi.yaml first: the README's dev and prod columns read defaults from the model, not from the file.
    for path, text in generated().items():
        if path in outdated:
            path.write_text(text)
            print(f"rewrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
