"""Generate what is derived from the settings model and the stack files: Pulumi.yaml's `config:` block and the
README's configuration, capacity-plan and cost tables.

    venv/bin/python tools/readme_tables.py           # rewrite Pulumi.yaml and README.md in place
    venv/bin/python tools/readme_tables.py --check   # exit 1 (and say which) when either is stale

infra/settings/model.py is the source of the configuration table (keys, types, ranges, defaults); the
capacity-plan and cost tables are computed from Pulumi.dev.yaml and Pulumi.prod.yaml, so a capacity change
(instance types, Spot, counts) is followed by this command. tests/test_readme.py fails until all match.
"""

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable as when run with -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from infra.capacity_plan import ProviderPlan
from infra.settings import Settings, parse_settings
from infra.settings.args import capacity_groups, component_args
from infra.settings.schema import allowed, config_schema, fields_by_key, load_yaml, with_config_block
from infra.settings.strategy import traffic_shifting

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")
CONFIG_HEADER = "| key | type | allowed | default | what it does |"
PLAN_HEADER = ("| stack | provider | instance type | tasks per instance | limited by | tasks at min / max "
               "| instances at min / max | group maximum |")
COST_HEADER = "| per month, us-east-1 list prices, before traffic | dev | prod |"

# us-east-1 list prices (USD per hour). A type missing here is shown without a price.
HOURS_PER_MONTH = 730
NAT_GATEWAY_HOURLY = 0.045
ALB_HOURLY = 0.0225
PUBLIC_IPV4_HOURLY = 0.005  # every public IPv4 address, in use or not, since February 2024
ALARM_METRIC_MONTHLY = 0.10  # per metric a standard alarm reads: a metric-math alarm pays for each of its inputs
CUSTOM_METRIC_MONTHLY = 0.30  # the server's EMF metrics are custom metrics
DASHBOARD_MONTHLY = 3.0  # an account's first three dashboards are free
KMS_KEY_MONTHLY = 1.0
ON_DEMAND_HOURLY = {"t3.medium": 0.0416, "t3a.medium": 0.0376, "c6i.2xlarge": 0.34, "c6a.2xlarge": 0.306,
                    "g5.xlarge": 1.006, "g5.2xlarge": 1.212}


def config_text(value: Any) -> str:
    """A config value as the Pulumi CLI hands it to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def _yaml(path: Path) -> Any:
    return load_yaml(path.read_text())


@functools.cache
def _project_name(path: Path, mtime_ns: int) -> str:
    return str(_yaml(path)["name"])


def project_name(root: Path = PROJECT_DIR) -> str:
    path = root / "Pulumi.yaml"
    return _project_name(path, path.stat().st_mtime_ns)


def stack_values(stack: str, root: Path = PROJECT_DIR) -> dict[str, str]:
    """Every setting of `stack` as the CLI passes it: the model's defaults, then the stack file."""
    project = project_name(root)
    values = {key: config_text(spec["default"]) for key, spec in config_schema().items()}
    path = root / f"Pulumi.{stack}.yaml"
    stack_file = (_yaml(path).get("config") or {}) if path.exists() else {}
    for key, value in stack_file.items():
        if key.startswith(f"{project}:"):
            values[key.split(":", 1)[1]] = config_text(value)
    return values


def stack_settings(stack: str, root: Path = PROJECT_DIR) -> Settings:
    return parse_settings(project_name(root), stack, stack_values(stack, root))


def cell(text: str) -> str:
    return "`" + (text or '""').replace("|", "\\|") + "`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def config_table() -> str:
    """Keys, types, ranges and defaults: what the model declares. What a stack changes is in its own file."""
    lines = [CONFIG_HEADER, "|---|---|---|---|---|"]
    for key, spec in config_schema().items():
        field = fields_by_key()[key]
        lines.append(f"| `{key}` | {spec['type']} | {_escape(allowed(field))} | {cell(config_text(spec['default']))} "
                     f"| {_escape(field.description or '')} |")
    return "\n".join(lines)


def plan_table(root: Path = PROJECT_DIR) -> str:
    lines = [PLAN_HEADER, "|---|---|---|---|---|---|---|---|"]
    for stack in STACKS:
        for p in stack_settings(stack, root).capacity_plan():
            lines.append(f"| {stack} | {p.name} | {p.instance_type} | {p.tasks_per_instance} | {p.binding_limit} "
                         f"| {p.tasks_at_min} / {p.tasks_at_max} | {p.instances_at_min} / {p.instances_at_max} "
                         f"| {p.max_instances} |")
    return "\n".join(lines)


def _monthly(hourly: float) -> int:
    return round(hourly * HOURS_PER_MONTH)


def nat_gateway_count(s: Settings) -> int:
    if s.existing_vpc_id:
        return 0  # the existing VPC's own NAT, not this stack's
    return 1 if s.nat_gateways == "Single" else s.availability_zone_count


def public_ipv4_count(s: Settings) -> int:
    """Each NAT gateway's Elastic IP, and at least one address per AZ of the internet-facing ALB (it adds
    nodes, each with its own address, as it scales). Instances and tasks have none."""
    alb_zones = len(s.existing_public_subnet_ids) if s.existing_vpc_id else s.availability_zone_count
    return nat_gateway_count(s) + alb_zones


def _instances(p: ProviderPlan) -> str:
    count = f"{p.instances_at_min}" if p.instances_at_min == p.instances_at_max else (
        f"{p.instances_at_min}-{p.instances_at_max}")
    hourly = ON_DEMAND_HOURLY.get(p.instance_type)
    if p.name == "spot":
        price = f" (On-Demand ~${_monthly(hourly)} each; Spot usually far less)" if hourly else ""
        text = f"{count} Spot {p.instance_type}{price}"
    else:
        text = f"{count} On-Demand {p.instance_type}" + (f" at ~${_monthly(hourly)} each" if hourly else "")
    return text


def monitoring(s: Settings) -> str:
    """infra/observability.py's alarms, counted by the metrics each reads (what CloudWatch bills)."""
    groups, target_groups = len(capacity_groups(s)), 2 if traffic_shifting(s) else 1
    # 5xx rates and latency read two metrics each; unhealthy targets one per target group; running tasks two
    # (Container Insights only); CPU, memory and each group's capacity reservation one.
    alarms = 4 + (1 if s.container_insights else 0) + 2 + groups
    metrics = 6 + target_groups + (2 if s.container_insights else 0) + 2 + groups
    text = (f"{alarms} alarms reading {metrics} metrics ~${metrics * ALARM_METRIC_MONTHLY:.2f}, dashboard "
            f"${DASHBOARD_MONTHLY:.0f}, 3 server metrics ~${3 * CUSTOM_METRIC_MONTHLY:.2f}")
    if component_args(s).observability.notify:
        text += f", alarm topic KMS key ~${KMS_KEY_MONTHLY:.0f}"
    return text


def cost_rows(s: Settings) -> dict[str, str]:
    nat, ipv4 = nat_gateway_count(s), public_ipv4_count(s)
    fixed = nat * _monthly(NAT_GATEWAY_HOURLY) + _monthly(ALB_HOURLY) + ipv4 * PUBLIC_IPV4_HOURLY * HOURS_PER_MONTH
    plans = [p for p in s.capacity_plan() if p.instances_at_max]
    logs = f"{s.log_retention_days} days' retention"
    if s.log_kms_encryption:
        logs += ", KMS key ~$1"
    if s.alb_access_logs:
        logs += ", S3 access logs"
    return {
        "NAT gateways": f"{nat} x ~${_monthly(NAT_GATEWAY_HOURLY)} + data processed" if nat else "none (existing VPC)",
        "public IPv4 addresses": f"at least {ipv4} x ~${PUBLIC_IPV4_HOURLY * HOURS_PER_MONTH:.2f} "
                                 f"(NAT Elastic IPs, one per ALB zone)",
        "ALB": f"~${_monthly(ALB_HOURLY)} + LCUs",
        "fixed, without instances": f"**~${round(fixed)}**",
        "instances (at min - max tasks)": "; ".join(_instances(p) for p in plans),
        "logs": logs,
        "monitoring": monitoring(s),
    }


def cost_table(root: Path = PROJECT_DIR) -> str:
    rows = {stack: cost_rows(stack_settings(stack, root)) for stack in STACKS}
    lines = [COST_HEADER, "|---|---|---|"]
    for name in rows[STACKS[0]]:
        lines.append(f"| {name} | " + " | ".join(_escape(rows[stack][name]) for stack in STACKS) + " |")
    return "\n".join(lines)


def replace_table(text: str, header: str, table: str) -> str:
    """`text` with the Markdown table that starts with the line `header` replaced by `table`."""
    start = text.index(header)
    end = text.find("\n\n", start)
    return text[:start] + table + (text[end:] if end >= 0 else "\n")


def generated(root: Path = PROJECT_DIR) -> dict[Path, str]:
    """Each generated file's expected full text."""
    readme_path, project_file = root / "README.md", root / "Pulumi.yaml"
    readme = readme_path.read_text()
    readme = replace_table(readme, "| key | type |", config_table())
    readme = replace_table(readme, "| stack | provider |", plan_table(root))
    readme = replace_table(readme, COST_HEADER, cost_table(root))
    return {project_file: with_config_block(project_file.read_text()), readme_path: readme}


def stale(root: Path = PROJECT_DIR, texts: dict[Path, str] | None = None) -> list[Path]:
    texts = generated(root) if texts is None else texts
    return [path for path, text in texts.items() if path.read_text() != text]


def main(argv: list[str] | None = None, root: Path = PROJECT_DIR) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:6]))
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    check = parser.parse_args(argv).check
    texts = generated(root)
    outdated = stale(root, texts)
    if check:
        for path in outdated:
            print(f"{path.name} is stale: run venv/bin/python tools/readme_tables.py", file=sys.stderr)
        return 1 if outdated else 0
    for path in outdated:
        path.write_text(texts[path])
        print(f"rewrote {path.name}")
    if not outdated:
        print("Pulumi.yaml and README.md are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
