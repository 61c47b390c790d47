"""Pulumi.yaml's `config:` block and the README's tables are generated from infra/settings/model.py.

After changing a setting, regenerate them with `venv/bin/python tools/readme_tables.py`.
"""

import importlib.metadata
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infra.settings import parse_settings, project_schema
from infra.settings.model import Settings
from infra.settings.schema import config_schema, load_yaml, with_config_block
from tests.harness import PROJECT_DIR, StackRun
from tools import readme_tables
from tools.readme_tables import config_table, cost_table, plan_table


def readme_table(header: str) -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text()
    return text[text.index(header):].split("\n\n", 1)[0].splitlines()


def test_generated_files_are_up_to_date() -> None:
    assert readme_tables.main(["--check"]) == 0, "run venv/bin/python tools/readme_tables.py"


def copy_of_the_project(into: Path) -> Path:
    """The generated files and their sources, regenerated: the tests below start from a current copy."""
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "README.md"):
        shutil.copy(PROJECT_DIR / name, into / name)
    readme_tables.main([], root=into)
    return into


def set_config(stack_file: Path, key: str, value: object) -> None:
    """What `pulumi config set` does to a stack file."""
    data = load_yaml(stack_file.read_text())
    data["config"][key] = value
    stack_file.write_text(yaml.safe_dump(data, sort_keys=False))


def test_the_check_fails_on_a_stale_file_and_regenerating_rewrites_it_in_place(tmp_path: Path) -> None:
    root = copy_of_the_project(tmp_path)
    stale = root / "Pulumi.yaml"
    current = stale.read_text()
    stale.write_text(current.replace("default: 8080", "default: 9090"))
    assert readme_tables.main(["--check"], root=root) == 1
    assert readme_tables.main([], root=root) == 0
    assert stale.read_text() == current


def test_a_release_leaves_the_readme_current_and_a_capacity_change_is_regenerated(tmp_path: Path) -> None:
    """The README copies no value a release or a schedule change touches; the capacity tables follow the stack
    files and are regenerated after a capacity change."""
    root = copy_of_the_project(tmp_path)
    set_config(root / "Pulumi.prod.yaml", "model-serving:image", "v9.9.9")
    set_config(root / "Pulumi.dev.yaml", "model-serving:image", "v9.9.9")
    set_config(root / "Pulumi.dev.yaml", "model-serving:scaleToZeroCron", "")
    set_config(root / "Pulumi.dev.yaml", "model-serving:scaleUpCron", "")
    set_config(root / "Pulumi.prod.yaml", "model-serving:ingressCidrs", ["203.0.113.0/24"])
    assert readme_tables.stale(root) == []
    set_config(root / "Pulumi.prod.yaml", "model-serving:maxTaskCount", 7)
    before = (root / "README.md").read_text()
    readme_tables.main([], root=root)
    readme = (root / "README.md").read_text()
    assert readme != before and readme_tables.plan_table(root) in readme and readme_tables.cost_table(root) in readme


def test_pulumi_yaml_declares_exactly_the_model_with_its_types_and_defaults() -> None:
    declared = project_schema()
    assert declared == config_schema()
    assert set(declared) == {field.alias for field in Settings.model_fields.values()}
    assert declared["containerPort"]["default"] == 8080 and declared["ingressCidrs"]["default"] == ["0.0.0.0/0"]


def test_ranges_come_from_the_model_not_from_hand_written_text() -> None:
    assert "Allowed: 1024-65535." in project_schema()["containerPort"]["description"]
    assert "| `containerPort` | integer | 1024-65535 |" in config_table()


def test_readme_configuration_table_matches_the_model() -> None:
    expected = config_table().splitlines()
    assert readme_table(expected[0]) == expected


@pytest.mark.parametrize("table", [plan_table, cost_table])
def test_readme_capacity_plans_and_costs_match_the_stacks(table: Callable[[], str]) -> None:
    expected = table().splitlines()
    assert readme_table(expected[0]) == expected


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_costs_count_what_the_stack_creates(stack: str, request: pytest.FixtureRequest) -> None:
    """NAT gateways, public IPv4 addresses and instances in the cost table are what the program deploys."""
    run: StackRun = request.getfixturevalue(stack)
    settings = readme_tables.stack_settings(stack)
    vpc = run.one("awsx:ec2:Vpc")
    zones = vpc["numberOfAvailabilityZones"]
    assert readme_tables.nat_gateway_count(settings) == (1 if vpc["natGateways"]["strategy"] == "Single" else zones)
    assert readme_tables.public_ipv4_count(settings) == readme_tables.nat_gateway_count(settings) + len(
        run.one("aws:lb/loadBalancer:LoadBalancer")["subnets"])
    plan = run.outputs["capacityPlan"]
    row = readme_tables.cost_rows(settings)["instances (at min - max tasks)"]
    for name, group in plan.items():
        if group["instancesAtMax"]:
            assert f"{group['instanceType']}" in row and f"{'Spot' if name == 'spot' else 'On-Demand'}" in row


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_monitoring_cost_counts_the_alarms_and_metrics_the_stack_creates(stack: str,
                                                                            request: pytest.FixtureRequest) -> None:
    """readme_tables.monitoring counts infra/observability.py's alarms by hand: hold it to what is registered."""
    run: StackRun = request.getfixturevalue(stack)
    alarms = run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    metrics = sum(len([q for q in a.get("metricQueries", []) if "metric" in q]) or 1 for a in alarms)
    text = readme_tables.monitoring(readme_tables.stack_settings(stack))
    assert text.startswith(f"{len(alarms)} alarms reading {metrics} metrics ")
    assert ("alarm topic KMS key" in text) == bool(run.of_type("aws:sns/topic:Topic"))


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
    text = (PROJECT_DIR / "Pulumi.yaml").read_text()
    with_region = text.replace("\nconfig:\n", "\nconfig:\n  aws:region: us-west-2\n", 1)
    regenerated = with_config_block(with_region)
    assert regenerated == with_config_block(regenerated)  # stable
    config = load_yaml(regenerated)["config"]
    assert config["aws:region"] == "us-west-2" and config["containerPort"]["default"] == 8080
    assert regenerated.split("\n# Every setting")[0] == text.split("\n# Every setting")[0]  # name, runtime, ...


# --- Commands in the docs -------------------------------------------------------------------------------------

DOCS = ("README.md", "app/README.md", "policy/README.md", ".github/README-ci.md")
# Commands that act on no stack, or that name it as their argument (`pulumi stack init <org>/dev`).
STACKLESS = ("login", "logout", "new", "version", "plugin", "policy publish", "whoami", "about", "stack init",
             "stack ls", "org")


def code_spans(text: str) -> tuple[list[str], list[str]]:
    """The fenced code blocks and the inline code spans of Markdown `text`."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return blocks, re.findall(r"`([^`\n]+)`", prose)


def pulumi_commands(code: str) -> list[str]:
    """Each `pulumi ...` command in a piece of shell: continuation lines joined, `$(...)` and `&&`, `;`, `|`
    split apart, comments dropped."""
    code = re.sub(r"\\\n\s*", " ", code)
    code = "\n".join(line.split(" #", 1)[0] for line in code.splitlines() if not line.lstrip().startswith("#"))
    return [" ".join(m.group(0).split()) for m in re.finditer(r"\bpulumi\s+[a-z][^\n;&|)`]*", code)]


GROUPS = ("config", "stack", "policy", "org", "plugin", "state", "env")  # `pulumi <group> <verb>`


def has_arguments(command: str) -> bool:
    """More than the operation's name: `pulumi up -s dev`, not the bare `pulumi up` or `pulumi config set`."""
    words = command.split()
    return len(words) > (3 if len(words) > 1 and words[1] in GROUPS else 2)


def names_a_stack(command: str) -> bool:
    words = command.split()
    return (" ".join(words[1:3]) in STACKLESS or (len(words) > 1 and words[1] in STACKLESS)
            or bool(re.search(r"(^|\s)(-s|--stack)(\s|=)\S", command)))


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every pulumi command the docs give to run: every one in a code block, and every one in
    inline code that carries arguments (a bare `pulumi up` in a sentence names the operation, not a command)."""
    found = []
    for name in DOCS:
        blocks, inline = code_spans((PROJECT_DIR / name).read_text())
        for block in blocks:
            found += [(name, command) for command in pulumi_commands(block)]
        for span in inline:
            commands = pulumi_commands(span)
            if any(has_arguments(command) for command in commands):
                found += [(name, command) for command in commands]
    return found


def test_every_pulumi_command_in_the_docs_names_its_stack() -> None:
    commands = documented_commands()
    assert len(commands) > 20  # the scan finds the commands at all
    unnamed = [f"{name}: {command}" for name, command in commands if not names_a_stack(command)]
    assert unnamed == [], "add -s <stack>: the selected stack may be another one\n" + "\n".join(unnamed)
    selects = [c for _, c in commands if c.startswith("pulumi stack select")]
    assert selects == [], "select changes which stack the next command acts on"


@pytest.mark.parametrize(("command", "named"), [
    ("pulumi up -s dev", True), ("pulumi preview --stack=acme/prod --diff", True), ("pulumi login s3://b", True),
    ("pulumi up", False), ("pulumi config set image v1.1.0", False), ("pulumi stack output serviceUrl", False),
    ("pulumi destroy --yes", False), ("pulumi config set sizes -s", False),
])
def test_the_stack_check_tells_named_from_unnamed(command: str, named: bool) -> None:
    assert names_a_stack(command) is named


def test_the_scan_finds_commands_in_blocks_substitutions_and_inline_code() -> None:
    blocks, inline = code_spans('Run `pulumi config set a 1 && pulumi up`.\n```bash\ncurl "$(pulumi stack output '
                                'url -s dev)/health"\npulumi up \\\n  -s prod   # comment -s x\n```\n')
    assert [c for b in blocks for c in pulumi_commands(b)] == ["pulumi stack output url -s dev", "pulumi up -s prod"]
    assert pulumi_commands(inline[0]) == ["pulumi config set a 1", "pulumi up"]
    assert has_arguments("pulumi config set a 1") and not has_arguments("pulumi config set")
    assert not has_arguments("pulumi up") and has_arguments("pulumi up --refresh")


# --- The README's cloud-free commands, run as written -----------------------------------------------------------

def shell_commands(text: str) -> list[str]:
    """Each command of the code blocks and inline code of `text`, split at `&&`, comments dropped."""
    blocks, inline = code_spans(text)
    commands = []
    for code in blocks + inline:
        for line in re.sub(r"\\\n\s*", " ", code).splitlines():
            if not line.lstrip().startswith("#"):
                commands += [part.strip() for part in line.split(" #", 1)[0].split("&&") if part.strip()]
    return commands


def pins(requirements: Path) -> dict[str, str]:
    """name -> pinned version, following `-r` includes."""
    found: dict[str, str] = {}
    for text in requirements.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(requirements.parent / line[3:].strip())
        elif "==" in line:
            name, version = line.split("==")
            found[name.strip()] = version.strip().split(";")[0]
    return found


def _venv(command: str, root: Path) -> None:
    target = command.rsplit(maxsplit=1)[-1]
    assert not (root / target).exists() or (root / target / "bin" / "python").exists(), "venv path is taken"
    subprocess.run(["python3", "-m", "venv", "--help"], check=True, capture_output=True)


def _pip_install(command: str, root: Path) -> None:
    """What the install gives is what the tests run on: every pin is the installed version."""
    requirements = root / command.rsplit(maxsplit=1)[-1]
    installed = {name: importlib.metadata.version(name) for name in pins(requirements)}
    assert installed == pins(requirements)


def _pytest(command: str, root: Path) -> None:  # the full run would recurse into this test: its entry point only
    version = subprocess.run([sys.executable, "-m", "pytest", "--version"], cwd=root, check=True,
                             capture_output=True, text=True)
    assert version.stdout.startswith("pytest ")


def _tables(command: str, root: Path) -> None:
    """Run as written, as a script from the project root, with --check (the tests must not rewrite)."""
    done = subprocess.run([sys.executable, "tools/readme_tables.py", "--check"], cwd=root, check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


CLOUD_FREE = {  # pattern of a README command (venv/bin/python is the interpreter running the tests) -> its check
    r"python3 -m venv (policy/)?venv": _venv,
    r"(policy/)?venv/bin/pip install -r \S+": _pip_install,
    r"venv/bin/python -m pytest( -m integration)?": _pytest,
    r"venv/bin/python tools/readme_tables\.py( --check)?": _tables,
}
NEEDS_AWS = (r"venv/bin/python tools/promote_image\.py .*",  # tests/test_promote_image.py, on a local registry
             r"venv/bin/python tools/verify_deployment\.py .*",  # tests/test_verify_deployment.py, on moto
             r"venv/bin/python tools/preflight\.py .*")  # tests/test_preflight.py, on files of outputs and config


def readme_commands() -> list[str]:
    return [c for c in shell_commands((PROJECT_DIR / "README.md").read_text())
            if re.match(r"(python3|venv/|policy/venv/)", c)]


@pytest.mark.integration  # subprocesses: run by .ci/run (pytest -m integration)
def test_every_cloud_free_readme_command_runs_as_written() -> None:
    commands = readme_commands()
    assert "venv/bin/python -m pytest" in commands and "venv/bin/python tools/readme_tables.py" in commands
    unchecked, checks = [], {}
    for command in dict.fromkeys(commands):
        check = next((check for pattern, check in CLOUD_FREE.items() if re.fullmatch(pattern, command)), None)
        if check is not None:
            checks[(check, command if check is _pip_install else "")] = command  # one run per check, per file
        elif not any(re.fullmatch(pattern, command) for pattern in NEEDS_AWS):
            unchecked.append(command)
    for (check, _), command in checks.items():
        check(command, PROJECT_DIR)
    assert unchecked == [], "give each new README command a check in CLOUD_FREE (or list it in NEEDS_AWS)"


@pytest.mark.integration  # a documented command, run as a script (it imports the project afresh): .ci/run runs it
def test_the_tables_tool_runs_as_a_script_from_anywhere(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`venv/bin/python tools/readme_tables.py`: Python puts tools/, not the project, on the path."""
    script = PROJECT_DIR / "tools" / "readme_tables.py"
    monkeypatch.setattr(sys, "path", [str(script.parent)] + [p for p in sys.path
                                                             if Path(p or ".").resolve() != PROJECT_DIR])
    for name in [name for name in sys.modules if name.split(".")[0] in ("infra", "tools")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "argv", [str(script), "--check"])
    monkeypatch.chdir(script.parent)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0, capsys.readouterr().err


# --- Claims that would drift -------------------------------------------------------------------------------------

def test_the_diagram_names_real_settings_and_both_capacity_groups() -> None:
    blocks, _ = code_spans((PROJECT_DIR / "README.md").read_text())
    (diagram,) = [block for block in blocks if block.startswith("flowchart")]
    groups = [plan.name for plan in parse_settings("model-serving", "dev", {
        "spotInstanceTypes": '["t3.medium"]', "spotMaxCount": "2", "spotWeight": "1"}).capacity_plan()]
    assert groups == ["onDemand", "spot"]
    named = set(re.findall(r"\b[a-z]+(?:[A-Z][a-z0-9]*)+\b", diagram)) - set(groups)
    assert named and named <= set(project_schema()), named - set(project_schema())
    for piece in [f"{group} capacity provider" for group in groups] + ["NAT gateway", "access-log bucket"]:
        assert piece in diagram
    assert "443 too with certificateArn" in diagram  # 443 exists only with a certificate (tests/test_network.py)


def benchmark_rows() -> list[tuple[int, int, float]]:
    table = readme_table("| connections | requests/s | p50 ms | p99 ms |")[2:]
    return [(int(c), int(r), float(p99)) for c, r, _, p99 in (row.strip("|").split("|") for row in table)]


def test_the_benchmark_prose_follows_its_table() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    rows = benchmark_rows()
    peak = max(rows, key=lambda row: row[1])
    sustainable = max((row for row in rows if row[2] < 25), key=lambda row: row[1])
    assert f"up to {peak[0]} connections (about {round(peak[1], -2):,}/s)" in readme
    rate = round(sustainable[1], -2)
    assert f"about **{rate:,} requests/s per vCPU**\n({sustainable[0]} connections)" in readme
    # The default target: half a vCPU at that rate, per minute, halved for headroom, rounded down to 10,000s.
    default = int(0.5 * rate * 60 / 2) // 10_000 * 10_000
    assert project_schema()["requestsPerTargetPerMinute"]["default"] == default
    assert f"2 x {rate:,} x 60 =\n{2 * rate * 60:,}" in readme


def test_the_first_deploy_sets_stacks_up_as_the_ci_guide_does() -> None:
    """Organisation-qualified stack names, the secrets provider and its salt committed, in both guides."""
    readme, ci = ((PROJECT_DIR / name).read_text() for name in ("README.md", ".github/README-ci.md"))
    for stack in ("dev", "prod"):
        assert f"pulumi stack init <org>/{stack}" in readme and f"pulumi stack init <org>/{stack}" in ci
        # A self-managed backend: KMS-encrypted secrets, as CI's previews refuse a passphrase stack.
        kms = rf"pulumi stack init {stack} +--secrets-provider awskms://alias/pulumi-{stack}"
        assert re.search(kms, readme) and re.search(kms, ci)
        assert f"git add Pulumi.{stack}.yaml" in readme
    assert "encryptedkey" in readme and "encryptionsalt" in readme and "encryptionsalt" in ci
    assert "PULUMI_ORG" in readme and "`PULUMI_ORG`" in ci
