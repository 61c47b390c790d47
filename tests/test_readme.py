"""The README's generated tables are the ones Pulumi.yaml and the stack files produce, row for row.

After changing a setting, regenerate them with `venv/bin/python -m tools.readme_tables`.
"""

import re

from infra.settings import project_schema
from tests.harness import PROJECT_DIR, StackRun
from tools.readme_tables import config_table, plan_table


def readme_table(header: str) -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text()
    return text[text.index(header):].split("\n\n", 1)[0].splitlines()


def test_readme_configuration_table_matches_pulumi_yaml_and_stack_files() -> None:
    expected = config_table().splitlines()
    assert readme_table(expected[0]) == expected


def test_readme_capacity_plans_match_the_stacks() -> None:
    expected = plan_table().splitlines()
    assert readme_table(expected[0]) == expected


def test_every_declared_key_has_a_row_a_description_and_a_default() -> None:
    rows = "\n".join(readme_table(config_table().splitlines()[0]))
    for key, spec in project_schema().items():
        assert f"| `{key}` |" in rows, key
        assert spec.get("description"), key
        assert "default" in spec, key


def test_readme_outputs_table_lists_exactly_the_stack_outputs(dev: StackRun, prod: StackRun) -> None:
    rows = readme_table("| output | what it is |")[2:]
    documented = {re.match(r"^\| `(\w+)` \|", row).group(1) for row in rows}  # type: ignore[union-attr]
    assert documented == set(dev.outputs) | set(prod.outputs)
