"""Before `pulumi up`: refuse the changes that need two updates but would be made in one.

    venv/bin/python tools/preflight.py --stack prod

The program cannot see the previous deployment, so this compares the stack's last outputs (`pulumi stack output
--json -s <stack>`, or `--outputs FILE`) with the configuration the next update runs (`pulumi config --json -s
<stack>`, or `--config FILE`: that JSON or the stack file; secret values are not needed and are left out):
- changing `deploymentStrategy` between ROLLING and BLUE_GREEN, LINEAR or CANARY without
  `previousDeploymentStrategy` (ECS switches the service only while its alternate target group and listener
  rules exist). A stack last deployed before this version has no `deploymentStrategy` output and runs ROLLING;
- with the release resources in place, adding or removing `certificateArn` (the production listener rule moves
  to the other listener, created at 100% primary while production may be on the alternate target group) or
  changing `containerPort` (both target groups are replaced while ECS owns the rules' actions). These go
  through ROLLING first.

Exit status: 0 the update may run ("ok: ..."); 1 refused, one line per problem with the commands that do it
in steps; 2 bad arguments, outputs or configuration. A stack never deployed (no outputs) is always fine.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable as when run with -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from infra.settings import Settings, SettingsError, parse_config
from infra.settings.schema import load_yaml
from infra.settings.strategy import SHIFTING, deployment_strategy, service_strategy, traffic_shifting
from tools.verify_deployment import PROJECT_DIR, UsageError, pulumi_json, read_outputs


@dataclass(frozen=True)
class Deployed:
    """What the stack's last update left running, from its outputs."""

    strategy: str  # the service's deploymentStrategy
    release_resources: bool  # alternate target group, listener rules, test listener (testListenerUrl)
    https: bool  # certificateArn set (serviceUrl's scheme)
    container_port: int | None  # None: deployed before the containerPort output
    before_this_version: bool  # no deploymentStrategy output: deployed before strategies existed

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any]) -> Deployed | None:
        """None for a stack that was never deployed."""
        if not outputs.get("serviceName"):
            return None
        port = outputs.get("containerPort")
        return cls(strategy=str(outputs.get("deploymentStrategy") or "ROLLING"),
                   release_resources=bool(outputs.get("testListenerUrl")),
                   https=str(outputs.get("serviceUrl", "")).startswith("https://"),
                   container_port=int(port) if port not in (None, "") else None,
                   before_this_version=not outputs.get("deploymentStrategy"))


@dataclass(frozen=True)
class Next:
    """What the next update asks for (infra/settings/strategy.py derives it from the settings)."""

    target: str  # deploymentStrategy as resolved (auto -> CANARY or ROLLING)
    service: str  # the strategy the service runs after this update
    release_resources: bool
    https: bool
    container_port: int
    previous: str  # previousDeploymentStrategy ("none")

    @classmethod
    def from_settings(cls, s: Settings) -> Next:
        return cls(target=deployment_strategy(s), service=service_strategy(s), release_resources=traffic_shifting(s),
                   https=bool(s.certificate_arn), container_port=s.container_port,
                   previous=s.previous_deployment_strategy)


def _up(stack: str, *config: str) -> str:
    """One update as a command line: the config changes, then `pulumi up`, all naming the stack."""
    commands = [*(f"pulumi config {change} -s {stack}" for change in config), f"pulumi up -s {stack}"]
    return "`" + " && ".join(commands) + "`"


def _to_rolling(stack: str, deployed: Deployed) -> str:
    """The updates that take a stack with release resources to plain ROLLING."""
    last = _up(stack, "set deploymentStrategy ROLLING", "rm previousDeploymentStrategy")
    if deployed.strategy == "ROLLING":
        return last
    return (f"{_up(stack, 'set deploymentStrategy ROLLING', f'set previousDeploymentStrategy {deployed.strategy}')}, "
            f"then, once the production listener rule forwards 100% to the primary target group "
            f"(`aws elbv2 describe-rules`), {_up(stack, 'rm previousDeploymentStrategy')}")


def problems(stack: str, deployed: Deployed | None, upcoming: Next) -> list[str]:
    """Why the update must not run as configured (empty: it may), each with the commands that do it in steps."""
    if deployed is None:
        return []
    found = []
    entering = deployed.strategy == "ROLLING" and upcoming.service in SHIFTING
    if entering and not deployed.release_resources:
        why = ("this stack was last deployed before deploymentStrategy existed, so its service runs ROLLING"
               + (f", and {upcoming.target} is now its default" if upcoming.previous == "none" else "")
               if deployed.before_this_version else "the service runs ROLLING")
        found.append(
            f"deploymentStrategy {upcoming.target}: {why}; ECS switches it only once the alternate target group and "
            f"listener rules exist, so it takes two updates: {_up(stack, 'set previousDeploymentStrategy ROLLING')}, "
            f"then {_up(stack, 'rm previousDeploymentStrategy')}")
    leaving = deployed.strategy in SHIFTING and upcoming.service == "ROLLING"
    if leaving and not upcoming.release_resources:
        found.append(
            f"deploymentStrategy {upcoming.target}: the service runs {deployed.strategy} and production may be on "
            f"either target group, so the listener rules must stay while it switches to ROLLING: "
            f"{_up(stack, f'set previousDeploymentStrategy {deployed.strategy}')}, then, once the production "
            f"listener rule forwards 100% to the primary target group (`aws elbv2 describe-rules`), "
            f"{_up(stack, 'rm previousDeploymentStrategy')}")
    if deployed.release_resources:
        changes = []
        if deployed.https != upcoming.https:
            changes.append(("adding" if upcoming.https else "removing") + " certificateArn moves the production "
                           "listener rule to the other listener, created at 100% primary while production may be "
                           "on the alternate target group")
        if deployed.container_port is not None and deployed.container_port != upcoming.container_port:
            changes.append(f"changing containerPort from {deployed.container_port} to {upcoming.container_port} "
                           "replaces both target groups while ECS owns the listener rules' actions")
        for change in changes:
            back = "" if upcoming.target == "ROLLING" else (
                f", then return to {upcoming.target} in two updates "
                f"({_up(stack, 'set previousDeploymentStrategy ROLLING')}, "
                f"then {_up(stack, 'rm previousDeploymentStrategy')})")
            found.append(
                f"with the release resources in place, {change}: go through ROLLING first, keeping the old value: "
                f"{_to_rolling(stack, deployed)}; then make the change and {_up(stack)}{back}")
    return found


def config_values(data: Any, source: str) -> dict[str, Any]:
    """`namespace:key` -> value from `pulumi config --json` ({key: {"value", "objectValue", "secret"}}) or a
    stack file ({"config": {key: value}}); secret values (unknown without --show-secrets) are left out."""
    if isinstance(data, dict) and isinstance(data.get("config"), dict):  # a stack file
        return {key: value for key, value in data["config"].items()
                if not (isinstance(value, dict) and "secure" in value)}
    if not isinstance(data, dict) or not all(isinstance(entry, dict) for entry in data.values()):
        raise UsageError(f"{source}: neither the JSON of `pulumi config --json` nor a stack file")
    return {key: entry.get("objectValue", entry["value"]) for key, entry in data.items() if "value" in entry}


def read_config(stack: str | None, config_file: str | None) -> dict[str, Any]:
    if config_file:
        try:
            return config_values(load_yaml(Path(config_file).read_text()), f"--config {config_file}")
        except (OSError, yaml.YAMLError) as error:
            raise UsageError(f"--config {config_file}: {error}") from error
    if not stack:
        raise UsageError("name the stack (--stack) or give its configuration (--config FILE)")
    return config_values(pulumi_json(["config"], stack, "--config"), f"`pulumi config --json -s {stack}`")


def settings_of(stack: str, config: dict[str, Any]) -> Settings:
    """The settings the program would read (infra/settings/__init__.py's load_settings, from a config map)."""
    project = str(load_yaml((PROJECT_DIR / "Pulumi.yaml").read_text())["name"])
    try:
        return parse_config(project, stack, config, os.environ)
    except SettingsError as error:
        raise UsageError(str(error)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="preflight", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stack", help="the Pulumi stack to check (pulumi stack output / pulumi config -s)")
    parser.add_argument("--outputs", metavar="FILE", help="the JSON of `pulumi stack output --json` instead")
    parser.add_argument("--config", metavar="FILE",
                        help="the JSON of `pulumi config --json`, or the stack file, instead")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stack = args.stack or "<stack>"
    try:
        deployed = Deployed.from_outputs(read_outputs(args.stack, args.outputs))
        if deployed is None:
            print(f"ok: {stack} has no deployment yet: any configuration may be its first")
            return 0
        upcoming = Next.from_settings(settings_of(stack.rpartition("/")[2], read_config(args.stack, args.config)))
    except UsageError as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    found = problems(stack, deployed, upcoming)
    for problem in found:
        print(f"preflight: {stack}: {problem}")
    if found:
        return 1
    print(f"ok: {stack} runs {deployed.strategy}, the update runs {upcoming.service}"
          + (f" (towards {upcoming.target})" if upcoming.service != upcoming.target else "")
          + ("" if deployed.container_port is not None or not deployed.release_resources else
             "; containerPort not compared: the last update predates the containerPort output"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
