"""Reading config values: Pulumi.yaml's schema, the shapes AWS accepts, and a reader that collects errors."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.settings.model import ImageRef

PROJECT_FILE = Path(__file__).resolve().parents[2] / "Pulumi.yaml"

# Values CloudWatch Logs accepts for retentionInDays.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
ECR_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
IMAGE_URI = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})$")
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d:\d{12}:certificate/[0-9a-f-]{36}$")
POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE)
CONTAINER_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,1023}$")
MATCHER = re.compile(r"^[2-4][0-9]{2}((-|,)[2-4][0-9]{2})*$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
# Application Auto Scaling cron: minutes hours day-of-month month day-of-week year.
SCHEDULE_CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")


@functools.cache
def project_schema(path: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The `config:` block of Pulumi.yaml: key -> {type, description, default}."""
    config = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["config"]
    # Keys with a namespace (aws:region) set provider values; only bare keys are this project's settings.
    return {key: spec for key, spec in config.items() if ":" not in key}


class Reader:
    """Reads typed values, falling back to Pulumi.yaml defaults, and collects every error."""

    def __init__(self, project: str, raw: Mapping[str, Any], schema: Mapping[str, Mapping[str, Any]]):
        self.project = project
        self.raw = raw
        self.schema = schema
        self.errors: list[str] = []

    def fail(self, key: str, value: Any, allowed: str) -> None:
        shown = json.dumps(value) if not isinstance(value, str) else repr(value)
        self.errors.append(f"{self.project}:{key} = {shown}: {allowed}")

    def _value(self, key: str) -> Any:
        if key not in self.schema:
            raise KeyError(f"{key} is read by infra/settings/ but not declared in Pulumi.yaml")
        value = self.raw.get(key)
        return self.schema[key].get("default") if value is None else value

    def integer(self, key: str, minimum: int, maximum: int) -> int:
        value = self._value(key)
        try:
            number = int(str(value).strip())
        except ValueError:
            self.fail(key, value, f"must be a whole number from {minimum} to {maximum}")
            return minimum
        if not minimum <= number <= maximum:
            self.fail(key, number, f"must be from {minimum} to {maximum}")
        return number

    def boolean(self, key: str) -> bool:
        value = self._value(key)
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            self.fail(key, value, "must be true or false")
        return text == "true"

    def string(self, key: str, valid: Callable[[str], bool] | None = None, allowed: str = "") -> str:
        value = str(self._value(key))
        if valid is not None and not valid(value):
            self.fail(key, value, allowed)
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        return self.string(key, lambda v: v in choices, "must be one of " + ", ".join(choices))

    def string_list(self, key: str, valid: Callable[[str], bool], allowed: str) -> tuple[str, ...]:
        value = self._value(key)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError:
                self.fail(key, value, "must be a list of strings")
                return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(key, value, "must be a list of strings")
            return ()
        for item in value:
            if not valid(item):
                self.fail(key, item, allowed)
        return tuple(value)


KNOWN_TYPE = "must be an EC2 instance type listed in infra/instance_types.json, e.g. t3.medium, c6i.2xlarge, g5.xlarge"
CRON = "must be empty or cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 19 ? * MON-FRI *)"


def is_timezone(value: str) -> bool:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def is_cidr(value: str, min_prefix: int = 0, max_prefix: int = 32) -> bool:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        return False
    return min_prefix <= network.prefixlen <= max_prefix


def parse_image(value: str) -> ImageRef | None:
    if "/" in value:
        return ImageRef(uri=value) if IMAGE_URI.match(value) else None
    if DIGEST.match(value) or ECR_TAG.match(value):
        return ImageRef(reference=value)
    return None


def parse_environment(reader: Reader, items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        name, _, value = item.partition("=")
        if SECRET_NAME.search(name):
            reader.fail("containerEnvironment", item,
                        "looks like a secret: plain environment variables are visible in the task definition; "
                        "pass secrets through AWS Secrets Manager instead")
        pairs.append((name, value))
    return tuple(pairs)
