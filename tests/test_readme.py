"""Pulumi.yaml's `config:` block and the README's tables are generated from infra/settings/model.py.

After changing a setting, regenerate them with `venv/bin/python -m tools.readme_tables`.
"""

import re
from pathlib import Path

import pytest
import yaml

from infra.settings import project_schema
from infra.settings.model import Settings
from infra.settings.schema import config_schema, with_config_block
from tests.harness import PROJECT_DIR, StackRun
from tools import readme_tables
from tools.readme_tables import config_table, plan_table


def readme_table(header: str) -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text()
    return text[text.index(header):].split("\n\n", 1)[0].splitlines()


def test_generated_files_are_up_to_date() -> None:
    assert readme_tables.main(["--check"]) == 0, "run venv/bin/python -m tools.readme_tables"


def test_the_check_fails_on_a_stale_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "Pulumi.yaml"
    stale.write_text(readme_tables.PROJECT_FILE.read_text().replace("default: 8080", "default: 9090"))
    monkeypatch.setattr(readme_tables, "PROJECT_FILE", stale)
    assert readme_tables.stale() == [stale]
    assert readme_tables.main(["--check"]) == 1


def test_pulumi_yaml_declares_exactly_the_model_with_its_types_and_defaults() -> None:
    declared = project_schema()
    assert declared == config_schema()
    assert set(declared) == {field.alias for field in Settings.model_fields.values()}
    assert declared["containerPort"]["default"] == 8080 and declared["ingressCidrs"]["default"] == ["0.0.0.0/0"]


def test_ranges_come_from_the_model_not_from_hand_written_text() -> None:
    assert "Allowed: 1024-65535." in project_schema()["containerPort"]["description"]
    assert "| `containerPort` | integer | 1024-65535 |" in config_table()


def test_readme_configuration_table_matches_the_model_and_stack_files() -> None:
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


def test_regenerating_keeps_provider_keys_and_everything_outside_the_config_block() -> None:
    text = readme_tables.PROJECT_FILE.read_text()
    with_region = text.replace("\nconfig:\n", "\nconfig:\n  aws:region: us-west-2\n", 1)
    regenerated = with_config_block(with_region)
    assert regenerated == with_config_block(regenerated)  # stable
    config = yaml.safe_load(regenerated)["config"]
    assert config["aws:region"] == "us-west-2" and config["containerPort"]["default"] == 8080
    assert regenerated.split("\n# Every setting")[0] == text.split("\n# Every setting")[0]  # name, runtime, ...
