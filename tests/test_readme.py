"""The README's configuration table is the one Pulumi.yaml and the stack files produce, row for row.

After changing a setting, regenerate the table with `venv/bin/python -m tools.config_table`.
"""

from infra.settings import project_schema
from tests.harness import PROJECT_DIR
from tools.config_table import table


def readme_table_rows() -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text()
    start = text.index("| key | type | default | dev | prod | what it does |")
    return text[start:].split("\n\n", 1)[0].splitlines()


def test_readme_configuration_table_matches_pulumi_yaml_and_stack_files() -> None:
    assert readme_table_rows() == table().splitlines()


def test_every_declared_key_has_a_row_a_description_and_a_default() -> None:
    rows = "\n".join(readme_table_rows())
    for key, spec in project_schema().items():
        assert f"| `{key}` |" in rows, key
        assert spec.get("description"), key
        assert "default" in spec, key
