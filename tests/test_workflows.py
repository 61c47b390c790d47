"""The GitHub Actions workflows: GitHub's schema, plus the rules the schema cannot see.

prod deploys only by manual dispatch in the protected `production` environment, AWS credentials only
through OIDC, previews of both stacks with their policy configs, the pinned requirements installed where
Pulumi.yaml's runtime looks for them, and every secret and variable documented in .github/README-ci.md.
"""

import functools
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CI_README = ROOT / ".github" / "README-ci.md"
STACKS = ["dev", "prod"]

# The major versions chosen (current majors when written); .github/README-ci.md lists the same.
ACTIONS = {
    "actions/checkout": "v7",
    "actions/setup-python": "v7",
    "aws-actions/configure-aws-credentials": "v6",
    "pulumi/actions": "v7",
}
BACKEND_ENV = {
    "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
    "PULUMI_BACKEND_URL": "${{ vars.PULUMI_BACKEND_URL }}",
    "PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
}
AWS_KEY_MARKERS = ("aws-access-key-id", "aws-secret-access-key", "aws-session-token",
                   "aws_access_key_id", "aws_secret_access_key", "aws_session_token")

Workflow = dict[str, Any]
Job = dict[str, Any]
Step = dict[str, Any]


@functools.cache
def load(name: str) -> Workflow:
    """A workflow as parsed once per session (tests only read it)."""
    raw: dict[Any, Any] = yaml.load((WORKFLOWS / name).read_text(), Loader=yaml.CSafeLoader)
    # YAML 1.1 reads the key `on` as the boolean true.
    return {"on" if key is True else key: value for key, value in raw.items()}


def all_workflows() -> dict[str, Workflow]:
    return {path.name: load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def action(step: Step) -> str:
    return str(step.get("uses", "")).split("@")[0]


def the_step(job: Job, name: str) -> Step:
    found = [step for step in job.get("steps", []) if action(step) == name]
    assert len(found) == 1, f"expected one {name} step, found {len(found)}"
    return found[0]


def has_step(job: Job, name: str) -> bool:
    return any(action(step) == name for step in job.get("steps", []))


def pulumi_jobs() -> list[tuple[str, str, Job]]:
    return [(file, job_id, job) for file, workflow in all_workflows().items()
            for job_id, job in workflow["jobs"].items() if has_step(job, "pulumi/actions")]


def run_commands(job: Job) -> str:
    return "\n".join(str(step["run"]) for step in job.get("steps", []) if "run" in step)


def bash(script: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs a workflow's `run:` script the way GitHub's default shell does (bash -e -o pipefail)."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)


# --- the files and GitHub's schema ---------------------------------------------------------------------

def test_the_three_workflows_exist_and_none_hides_behind_a_yaml_extension() -> None:
    assert set(all_workflows()) == {"checks.yml", "preview.yml", "deploy.yml"}
    # .ci/run validates .github/workflows/*.yml: a .yaml file would escape the schema check.
    assert not list(WORKFLOWS.glob("*.yaml"))


def schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True, text=True, check=False)


def test_every_workflow_is_valid_and_a_broken_one_is_rejected(tmp_path: Path) -> None:
    """One run of the checker over the real workflows and a broken copy: only the copy may be reported."""
    broken = tmp_path / "broken-deploy.yml"
    broken.write_text((WORKFLOWS / "deploy.yml").read_text().replace("runs-on:", "run-on:", 1))
    result = schema_check(*sorted(WORKFLOWS.glob("*.yml")), broken)
    assert result.returncode != 0
    reported = [line.split("::", 1)[0].strip() for line in result.stdout.splitlines() if "::$" in line]
    assert reported == [str(broken)], result.stdout + result.stderr
    assert "'runs-on' is a required property" in result.stdout


def test_the_gate_runs_the_schema_check_after_mypy_and_before_the_tests() -> None:
    gate = (ROOT / ".ci" / "run").read_text()
    command = "venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml"
    assert f'step "workflows: schema"\n{command}\n' in gate
    assert gate.index("venv/bin/mypy") < gate.index(command) < gate.index("venv/bin/python -m pytest")
    assert "check-jsonschema==0.39.0" in (ROOT / "requirements-dev.txt").read_text().splitlines()


# --- actions, triggers, permissions, credentials -------------------------------------------------------

def test_actions_are_the_chosen_ones_at_their_major_tags_and_documented() -> None:
    documented = CI_README.read_text()
    for workflow in all_workflows().values():
        for job in workflow["jobs"].values():
            if "uses" in job:  # a reusable workflow: only this repository's own
                assert job["uses"].startswith("./.github/workflows/")
            for step in job.get("steps", []):
                if "uses" in step:
                    name, _, ref = step["uses"].partition("@")
                    assert name in ACTIONS, f"unexpected action {step['uses']}"
                    assert ref == ACTIONS[name] or re.fullmatch(r"[0-9a-f]{40}", ref), step["uses"]
    for name, major in ACTIONS.items():
        assert f"`{name}@{major}`" in documented


def test_no_privileged_triggers() -> None:
    for file, workflow in all_workflows().items():
        assert not {"pull_request_target", "workflow_run"} & set(workflow["on"]), file


def test_workflows_default_to_read_only_and_widen_per_job_only_where_needed() -> None:
    for file, workflow in all_workflows().items():
        assert workflow["permissions"] == {"contents": "read"}, file
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions", {})
            assert isinstance(permissions, dict), f"{file} {job_id}: no read-all/write-all"
            writes = {scope for scope, level in permissions.items() if level == "write"}
            expected = set()
            if has_step(job, "aws-actions/configure-aws-credentials"):
                expected.add("id-token")
            if comments_on_the_pull_request(job):
                expected.add("pull-requests")
            assert writes == expected, f"{file} {job_id}: writes {writes}, expected {expected}"


def comments_on_the_pull_request(job: Job) -> bool:
    return any(action(step) == "pulumi/actions" and step.get("with", {}).get("comment-on-pr") is True
               for step in job.get("steps", []))


def test_no_long_lived_aws_keys_anywhere() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text = path.read_text().lower()
        for marker in AWS_KEY_MARKERS:
            assert marker not in text, f"{path.name} mentions {marker}"


def test_aws_credentials_only_through_oidc_role_assumption_from_variables() -> None:
    aws_jobs = 0
    for file, workflow in all_workflows().items():
        for job_id, job in workflow["jobs"].items():
            if not has_step(job, "aws-actions/configure-aws-credentials"):
                continue
            aws_jobs += 1
            assert job["permissions"]["id-token"] == "write", f"{file} {job_id}"
            inputs = the_step(job, "aws-actions/configure-aws-credentials")["with"]
            assert set(inputs) == {"role-to-assume", "role-session-name", "aws-region"}
            assert inputs["role-to-assume"] == "${{ env.AWS_ROLE_ARN }}"
            assert re.fullmatch(r"\$\{\{ .*vars\.AWS_\w+_ROLE_ARN.* \}\}", job["env"]["AWS_ROLE_ARN"])
            assert "vars.AWS_REGION" in inputs["aws-region"]
            steps = [action(step) for step in job["steps"]]
            assert steps.index("aws-actions/configure-aws-credentials") < steps.index("pulumi/actions")
    assert aws_jobs == 3  # preview (a matrix of two stacks), deploy dev, deploy prod


# --- checks.yml --------------------------------------------------------------------------------------------

def test_checks_run_on_every_push_and_pull_request_and_run_the_gates_commands() -> None:
    checks = load("checks.yml")
    assert set(checks["on"]) == {"push", "pull_request", "workflow_call"}
    assert checks["on"]["push"] is None and checks["on"]["pull_request"] is None  # no branch or path filter
    assert checks["concurrency"]["cancel-in-progress"] is True
    (job,) = checks["jobs"].values()
    python = the_step(job, "actions/setup-python")["with"]
    assert python["python-version"] == "3.11" and python["cache"] == "pip"
    assert python["cache-dependency-path"].split() == ["requirements.txt", "requirements-dev.txt"]
    commands = run_commands(job)
    assert "python -m venv venv && venv/bin/pip install -r requirements-dev.txt" in commands
    gate = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("venv/bin/")]
    assert len(gate) == 6
    positions = [commands.index(line) for line in gate]  # every command of .ci/run, in the same order
    assert positions == sorted(positions)


def test_mypy_covers_the_program_and_the_infrastructure() -> None:
    config = (ROOT / "pyproject.toml").read_text()
    files = re.search(r"^files = \[(.*)\]$", config, re.MULTILINE)
    assert files is not None
    listed = {name.strip().strip('"') for name in files.group(1).split(",")}
    assert {"__main__.py", "infra"} <= listed
    if (ROOT / "policy").is_dir():
        assert "policy" in listed


# --- pulumi jobs: install, CLI version, backend, policy pack -----------------------------------------------

def test_every_pulumi_job_installs_the_pinned_requirements_into_the_venv_pulumi_yaml_names() -> None:
    project = yaml.load((ROOT / "Pulumi.yaml").read_text(), Loader=yaml.CSafeLoader)
    venv = project["runtime"]["options"]["virtualenv"]
    for file, job_id, job in pulumi_jobs():
        commands = run_commands(job)
        assert f"python -m venv {venv} && {venv}/bin/pip install -r requirements-dev.txt" in commands, job_id
        assert f'echo "$PWD/{venv}/bin" >> "$GITHUB_PATH"' in commands, f"{file} {job_id}"
        python = the_step(job, "actions/setup-python")["with"]
        assert python["python-version"] == "3.11"


def test_the_pulumi_cli_is_the_version_of_the_pinned_sdk(tmp_path: Path) -> None:
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin is not None
    for _file, job_id, job in pulumi_jobs():
        (versions,) = [step for step in job["steps"] if step.get("id") == "versions"]
        output = tmp_path / f"{job_id}.out"
        result = bash(versions["run"], {"GITHUB_OUTPUT": str(output), "PATH": os.environ["PATH"]})
        assert result.returncode == 0, result.stderr
        assert output.read_text() == f"pulumi={pin.group(1)}\n"
        assert the_step(job, "pulumi/actions")["with"]["pulumi-version"] == "${{ steps.versions.outputs.pulumi }}"


def test_every_pulumi_job_works_with_pulumi_cloud_or_a_self_managed_backend() -> None:
    for file, job_id, job in pulumi_jobs():
        assert {key: job["env"][key] for key in BACKEND_ENV} == BACKEND_ENV, f"{file} {job_id}"
        inputs = the_step(job, "pulumi/actions")["with"]
        assert inputs["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
        # <org>/<stack> on Pulumi Cloud when PULUMI_ORG is set, the plain stack name otherwise
        assert inputs["stack-name"] == "${{ env.STACK_NAME }}"
        assert job["env"]["STACK_NAME"].startswith("${{ vars.PULUMI_ORG && format(")
        assert "upsert" not in inputs  # CI never creates a stack
        assert job["steps"][0]["name"].startswith("Preflight")


def pulumi_stack(job: Job) -> str:
    """The stack a job operates on, read from its policy config, and checked against its stack name."""
    inputs = the_step(job, "pulumi/actions")["with"]
    assert inputs["policyPacks"] == "policy"
    config = re.fullmatch(r"policy/config\.(.+)\.json", inputs["policyPackConfigs"])
    assert config is not None
    stack = config.group(1)
    if stack == "${{ matrix.stack }}":
        assert "matrix.stack" in job["env"]["STACK_NAME"]
        return stack
    expected = "${{ vars.PULUMI_ORG && format('{0}/STACK', vars.PULUMI_ORG) || 'STACK' }}".replace("STACK", stack)
    assert job["env"]["STACK_NAME"] == expected
    return stack


def test_policy_configs_exist_for_every_stack_ci_touches() -> None:
    for stack in STACKS:
        assert (ROOT / f"Pulumi.{stack}.yaml").is_file()
    if not (ROOT / "policy").is_dir():
        pytest.skip("policy/ (the policy pack) is not in this tree yet")
    for stack in STACKS:
        assert (ROOT / "policy" / f"config.{stack}.json").is_file()


# --- preview.yml -------------------------------------------------------------------------------------------

def test_previews_run_on_pull_requests_for_dev_and_prod_and_comment_on_the_pull_request() -> None:
    preview = load("preview.yml")
    assert set(preview["on"]) == {"pull_request"}
    (job,) = preview["jobs"].values()
    assert job["strategy"]["matrix"] == {"stack": STACKS}
    assert job["strategy"]["fail-fast"] is False  # a failing dev preview still shows prod's
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert pulumi_stack(job) == "${{ matrix.stack }}"
    inputs = the_step(job, "pulumi/actions")["with"]
    assert inputs["command"] == "preview"
    assert inputs["policyPackConfigs"] == "policy/config.${{ matrix.stack }}.json"
    assert inputs["comment-on-pr"] is True and inputs["github-token"] == "${{ secrets.GITHUB_TOKEN }}"
    assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    assert "vars.AWS_PREVIEW_ROLE_ARN" in job["env"]["AWS_ROLE_ARN"]
    assert "DEPLOY" not in job["env"]["AWS_ROLE_ARN"]


# --- deploy.yml --------------------------------------------------------------------------------------------

def test_deploys_run_on_pushes_to_main_and_by_dispatch_only() -> None:
    deploy = load("deploy.yml")
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    assert deploy["on"]["push"] == {"branches": ["main"]}
    stack_input = deploy["on"]["workflow_dispatch"]["inputs"]["stack"]
    assert stack_input["type"] == "choice" and stack_input["options"] == STACKS and stack_input["default"] == "dev"
    assert deploy["jobs"]["checks"] == {"uses": "./.github/workflows/checks.yml"}


def deploy_jobs() -> dict[str, Job]:
    return {job_id: job for job_id, job in load("deploy.yml")["jobs"].items() if has_step(job, "pulumi/actions")}


def test_each_deploy_runs_after_the_checks_one_at_a_time_per_stack_and_is_never_cancelled() -> None:
    jobs = deploy_jobs()
    assert {pulumi_stack(job) for job in jobs.values()} == set(STACKS)
    groups = set()
    for job_id, job in jobs.items():
        assert "checks" in ([job["needs"]] if isinstance(job["needs"], str) else job["needs"]), job_id
        assert the_step(job, "pulumi/actions")["with"]["command"] == "up"
        assert job["concurrency"] == {"group": f"pulumi-up-{pulumi_stack(job)}", "cancel-in-progress": False}
        groups.add(job["concurrency"]["group"])
        assert job["env"]["AWS_ROLE_ARN"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert len(groups) == len(jobs)
    assert "cancel-in-progress: true" not in (WORKFLOWS / "deploy.yml").read_text()


def test_dev_deploys_on_push_in_the_dev_environment() -> None:
    (job,) = [job for job in deploy_jobs().values() if pulumi_stack(job) == "dev"]
    assert job["environment"]["name"] == "dev"
    assert job["if"] == "github.event_name == 'push' || inputs.stack == 'dev'"


def test_prod_deploys_only_by_dispatch_from_main_in_the_protected_production_environment() -> None:
    prod_jobs = [(file, job_id, job) for file, job_id, job in pulumi_jobs()
                 if "prod" in the_step(job, "pulumi/actions")["with"]["policyPackConfigs"]
                 and the_step(job, "pulumi/actions")["with"]["command"] == "up"]
    assert len(prod_jobs) == 1
    file, job_id, job = prod_jobs[0]
    assert file == "deploy.yml"
    assert job["environment"]["name"] == "production"
    assert job["if"] == ("github.event_name == 'workflow_dispatch' && inputs.stack == 'prod'"
                         " && github.ref == 'refs/heads/main'")
    assert set(job["needs"]) == {"checks", "guard-prod"}
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    # No other job of any workflow runs in production, and only deploy.yml changes anything.
    for other_file, workflow in all_workflows().items():
        for other_id, other in workflow["jobs"].items():
            if (other_file, other_id) != (file, job_id) and "environment" in other:
                assert other["environment"]["name"] != "production", f"{other_file} {other_id}"
    for other_file, _other_id, other in pulumi_jobs():
        if other_file != "deploy.yml":
            assert the_step(other, "pulumi/actions")["with"]["command"] == "preview"


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
    assert guard["if"] == "github.event_name == 'workflow_dispatch' && inputs.stack == 'prod'"
    assert guard["permissions"] == {"actions": "read"}
    main_only, reviewers = guard["steps"]
    assert main_only["if"] == "github.ref != 'refs/heads/main'" and "exit 1" in main_only["run"]
    result = bash(reviewers["run"], fake_gh(tmp_path, gh_body))
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    if not passes:
        assert "::error::" in result.stdout


@pytest.mark.parametrize(("env", "passes", "message"), [
    ({}, False, "AWS_"),
    ({"AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, False, "No Pulumi backend"),
    ({"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "PULUMI_ACCESS_TOKEN": "pul-x"}, True, "stack: "),
    ({"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "PULUMI_BACKEND_URL": "s3://b"}, True, "stack: "),
])
def test_preflight_names_the_missing_setting(env: dict[str, str], passes: bool, message: str) -> None:
    for file, job_id, job in pulumi_jobs():
        preflight = job["steps"][0]["run"]
        result = bash(preflight, {"PATH": os.environ["PATH"], "STACK_NAME": "dev", **env})
        assert (result.returncode == 0) is passes, f"{file} {job_id}: {result.stdout}"
        assert message in result.stdout


# --- documentation -----------------------------------------------------------------------------------------

def test_every_secret_and_variable_the_workflows_read_is_documented_and_nothing_else() -> None:
    text = "\n".join(path.read_text() for path in sorted(WORKFLOWS.glob("*.yml")))
    used = set(re.findall(r"\b(?:secrets|vars)\.([A-Z][A-Z0-9_]*)", text))
    table = CI_README.read_text().split("### Secrets and variables", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE))
    assert used == documented
