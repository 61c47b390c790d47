"""Every setting of the stack, declared once: key, type, default, description and what values are allowed.

Each field is one config key (`ecr_keep_tagged_images` is `model-serving:ecrKeepTaggedImages`). Ranges and
checks live in the field's metadata only: the error messages, Pulumi.yaml's `config:` block and the README
table are all derived from it (`infra/settings/schema.py`, `tools/readme_tables.py`). The sections are
mixins so the generated files keep a readable grouping; `Settings` is their flat union.

To add a setting: declare a field in its section, wire it into `infra/settings/args.py`, then run
`venv/bin/python tools/readme_tables.py` to regenerate Pulumi.yaml's schema and the README table.
"""

import functools
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from infra.capacity_plan import GroupSpec, ProviderPlan, TaskSize, plan
from infra.instance_types import InstanceType, instance_types
from infra.secret_patterns import is_secret_name, secret_value_kind
from infra.settings import cron


class SettingsError(pulumi.RunError):
    """Bad configuration. A RunError, so Pulumi prints the message without a stack trace."""


# --- checks: each carries the one sentence users see, in errors and (without "must be") in the docs --------

@dataclass(frozen=True)
class Check:
    """A value check and the sentence that says what is allowed ("must be ...")."""

    valid: Callable[[Any], bool]
    allowed: str
    # A sharper message for a refused value (e.g. "add /32"); None or "" falls back to `allowed`.
    why: Callable[[Any], str | None] | None = None

    def __call__(self, value: Any) -> Any:
        if not self.valid(value):
            message = (self.why(value) if self.why else None) or self.allowed
            raise PydanticCustomError("setting", "{allowed}", {"allowed": message})
        return value


def checked(check: Check) -> AfterValidator:
    """Field metadata: run `check` after the type parsed (the docs generator reads it back as `.func`)."""
    return AfterValidator(check)


def _strict_bool(value: Any) -> Any:
    # The CLI hands booleans over as "true"/"false"; pydantic alone would also take "yes", "1", "on".
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise PydanticCustomError("setting", "must be true or false")
    return text == "true"


def _string_list(value: Any) -> Any:
    # The CLI hands lists over as JSON text.
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise PydanticCustomError("setting", "must be a list of strings") from None
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise PydanticCustomError("setting", "must be a list of strings")
    return value


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool | float):
        raise PydanticCustomError("whole_number", "not a whole number")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise PydanticCustomError("whole_number", "not a whole number") from None
    return value


Bool = Annotated[bool, BeforeValidator(_strict_bool)]
Int = Annotated[int, BeforeValidator(_whole_number)]


def StrList(check: Check, *more: Check | AfterValidator) -> Any:  # noqa: N802 - a type factory
    """A list of strings (JSON text from the CLI), each item checked by `check` (shown in the docs) then `more`."""
    item_validators = [checked(check), *(checked(v) if isinstance(v, Check) else v for v in more)]
    return Annotated[tuple[Annotated[str, *item_validators], ...], BeforeValidator(_string_list)]


def is_cidr(value: str, min_prefix: int = 0, max_prefix: int = 32) -> bool:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        return False
    return min_prefix <= network.prefixlen <= max_prefix


def is_timezone(value: str) -> bool:
    # The tz database's names only: ZoneInfo alone also opens "localtime", "posixrules" and other files.
    return value in _timezones()


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - {"Factory", "localtime", "posixrules"})


def cidr_hint(value: str) -> str | None:
    """Why AWS refuses `value` as a CIDR, when the mistake is a common one."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        return f"must be an IPv4 CIDR: AWS refuses a bare address, write {address}/32"
    try:
        network = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return None
    if str(network) != value:
        return f"must be an IPv4 CIDR without host bits: {value} is inside {network}, write that"
    return None


def is_cidr_text(value: str, min_prefix: int = 0, max_prefix: int = 32) -> bool:
    """A CIDR as AWS takes it: network/prefix, no host bits, no bare address."""
    return "/" in value and cidr_hint(value) is None and is_cidr(value, min_prefix, max_prefix)


# Values CloudWatch Logs accepts for retentionInDays.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
ECR_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
RELEASE_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_*][A-Za-z0-9._*-]{0,127}$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
IMAGE_URI = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})$")
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d:\d{12}:certificate/[0-9a-f-]{36}$")
POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTAINER_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,1023}$")
MATCHER = re.compile(r"^[2-4][0-9]{2}((-|,)[2-4][0-9]{2})*$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
# Application Auto Scaling cron: minutes hours day-of-month month day-of-week year.
SCHEDULE_CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")

KNOWN_TYPE = Check(lambda v: v in instance_types(), "must be an EC2 instance type listed in "
                   "infra/instance_types.json, e.g. t3.medium, c6i.2xlarge, g5.xlarge")
SUBNET = Check(lambda v: bool(SUBNET_ID.match(v)), "must be a subnet ID like subnet-0123456789abcdef0")
CRON = Check(lambda v: v == "" or (bool(SCHEDULE_CRON.match(v)) and cron.problem(v) is None),
             "must be empty or cron(minutes hours day-of-month month day-of-week year), e.g. "
             "cron(0 19 ? * MON-FRI *)",
             why=lambda v: f"must be an AWS cron expression: {v} {cron.problem(v)}"
             if v.startswith("cron(") and cron.problem(v) else None)
SECRETS_MANAGER = ("plain environment variables are visible in the task definition; pass secrets through AWS "
                   "Secrets Manager instead")


def _no_secret(item: str) -> str:
    """Refuse NAME=value when the name or the value's shape says credential (infra/secret_patterns.py, the
    definition the policy pack shares). The error type `secret` keeps the value out of the message."""
    name, _, value = item.partition("=")
    if is_secret_name(name):
        raise PydanticCustomError("secret", "looks like a secret: {why}", {"why": SECRETS_MANAGER})
    kind = secret_value_kind(value)
    if kind:
        raise PydanticCustomError("secret", "holds {kind}: {why}", {"kind": kind, "why": SECRETS_MANAGER})
    return item


@dataclass(frozen=True)
class ImageRef:
    """Either `uri` (a full image reference) or a tag/digest `reference` in the stack's own repository."""

    uri: str = ""
    reference: str = ""

    def in_repository(self, repository_url: str) -> str:
        if self.uri:
            return self.uri
        separator = "@" if self.reference.startswith("sha256:") else ":"
        return f"{repository_url}{separator}{self.reference}"


def parse_image(value: str) -> ImageRef | None:
    if "/" in value:
        return ImageRef(uri=value) if IMAGE_URI.match(value) else None
    if DIGEST.match(value) or ECR_TAG.match(value):
        return ImageRef(reference=value)
    return None


# Field names are the config keys in snake_case; `alias` only where camelCase cannot be derived (MiB, GiB).
# Numbers given for a text key (`image: 2`, as YAML reads it) are that text, as the CLI would pass it.
CONFIG = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True, coerce_numbers_to_str=True)


class _Environment(BaseModel):
    """environment"""

    model_config = CONFIG
    environment_class: Literal["dev", "prod"] = Field(
        "dev", description="prod-like stacks get immutable image tags, a retained registry and log bucket, ALB "
        "deletion protection, a 30-day KMS key deletion window, and are refused with fewer than two AZs, tasks "
        "or instances.")


class _Network(BaseModel):
    """network"""

    model_config = CONFIG
    availability_zone_count: Int = Field(2, ge=2, le=6, description="Availability zones for the new VPC (an ALB "
                                         "needs at least two).")
    nat_gateways: Literal["Single", "OnePerAz"] = Field(
        "Single", description="NAT gateways of the new VPC: Single (cheap, one AZ's NAT is a shared dependency) "
        "or OnePerAz (resilient).")
    vpc_cidr: Annotated[str, checked(Check(lambda v: is_cidr_text(v, 16, 20), "must be an IPv4 CIDR from /16 to /20",
                                           why=cidr_hint))] \
        = Field("10.0.0.0/16", description="IPv4 CIDR of the new VPC.")
    existing_vpc_id: Annotated[str, checked(Check(lambda v: v == "" or bool(VPC_ID.match(v)),
                                                  "must be empty or a VPC ID like vpc-0123456789abcdef0"))] = Field(
        "", description="Deploy into this existing VPC instead of creating one (needs both subnet lists below).")
    existing_public_subnet_ids: StrList(SUBNET) = Field(  # type: ignore[valid-type]
        (), description="Public subnets of existingVpcId for the ALB, in two or more AZs.")
    existing_private_subnet_ids: StrList(SUBNET) = Field(  # type: ignore[valid-type]
        (), description="Private subnets of existingVpcId (with a NAT route) for instances and tasks.")
    ingress_cidrs: StrList(Check(is_cidr_text, "must be an IPv4 CIDR like 203.0.113.0/24", why=cidr_hint)) = Field(  # type: ignore[valid-type]
        ("0.0.0.0/0",), description="IPv4 CIDRs allowed to reach the ALB on ports 80 and 443.")


class _Registry(BaseModel):
    """registry"""

    model_config = CONFIG
    ecr_keep_tagged_images: Int = Field(20, ge=1, le=1000, description="The ECR lifecycle policy keeps this many "
                                        "most recent tagged images.")
    ecr_untagged_expiry_days: Int = Field(3, ge=1, le=365, description="The ECR lifecycle policy expires untagged "
                                          "images after this many days.")
    ecr_release_tag_pattern: Annotated[str, checked(Check(
        lambda v: bool(RELEASE_TAG_PATTERN.match(v)) and v.count("*") <= 4,
        "must be an ECR tag pattern: tag characters and at most four * wildcards, e.g. v*"))] = Field(
        "v*", description="Tags of releases. prod-like stacks keep the last ecrKeepReleaseImages images with such a "
        "tag whatever else is pushed (the rollback window), and deploy only such tags.")
    ecr_keep_release_images: Int = Field(100, ge=1, le=1000, description="Release images a prod-like stack's "
                                         "lifecycle policy keeps: how many releases back a rollback can go.")


class _Capacity(BaseModel):
    """cluster capacity"""

    model_config = CONFIG
    instance_type: Annotated[str, checked(KNOWN_TYPE)] = Field(
        "t3.medium", description="EC2 instance type of the ECS container instances.")
    instance_root_volume_gib: Int = Field(30, ge=30, le=16384, alias="instanceRootVolumeGiB",
                                          description="Encrypted gp3 root volume of each instance in GiB (the ECS "
                                          "AMI needs 30).")
    instance_min_count: Int = Field(1, ge=0, le=1000, description="Minimum instances in the On-Demand Auto "
                                    "Scaling group.")
    instance_max_count: Int = Field(2, ge=1, le=1000, description="Maximum instances in the On-Demand Auto "
                                    "Scaling group.")
    capacity_target_percent: Int = Field(100, ge=1, le=100, description="Managed-scaling target capacity of the "
                                         "capacity providers (100 packs instances fully, lower keeps spare room "
                                         "for fast scale-out).")
    capacity_min_scaling_step: Int = Field(1, ge=1, le=10000, description="Fewest instances managed scaling adds "
                                           "or removes at once.")
    capacity_max_scaling_step: Int = Field(2, ge=1, le=10000, description="Most instances managed scaling adds "
                                           "or removes at once.")
    instance_warmup_seconds: Int = Field(300, ge=0, le=10000, description="Seconds before a new instance counts "
                                         "towards the capacity metric.")
    container_insights: Bool = Field(True, description="Enable CloudWatch Container Insights on the cluster.")
    warm_pool_min_size: Int = Field(0, ge=0, le=1000, description="Stopped, pre-initialised instances kept in a "
                                    "warm pool of the onDemand group (0 disables); scale-out then takes seconds "
                                    "of start, not minutes of boot.")


class _Spot(BaseModel):
    """Spot capacity and the capacity-provider strategy"""

    model_config = CONFIG
    spot_instance_types: StrList(KNOWN_TYPE) = Field(  # type: ignore[valid-type]
        (), description="Interchangeable instance types of the optional spot group and capacity provider "
        "(price-capacity-optimized). Empty disables Spot.")
    spot_min_count: Int = Field(0, ge=0, le=1000, description="Minimum instances in the spot group.")
    spot_max_count: Int = Field(0, ge=0, le=1000, description="Maximum instances in the spot group.")
    on_demand_base_tasks: Int = Field(0, ge=0, le=100000, description="Tasks always placed on the onDemand "
                                      "provider before the weights apply.")
    on_demand_weight: Int = Field(1, ge=0, le=1000, description="Strategy weight of the onDemand provider beyond "
                                  "the base.")
    spot_weight: Int = Field(0, ge=0, le=1000, description="Strategy weight of the spot provider beyond the base "
                             "(e.g. 3 with onDemandWeight 1 puts three of every four tasks on Spot).")


class _Task(BaseModel):
    """task"""

    model_config = CONFIG
    image_build: Bool = Field(
        True, description="Build the reference server in app/ (needs Docker with buildx), push it to this "
        "stack's ECR repository under the `image` tag and run it by digest, so each new build rolls out a new "
        "task definition. false deploys `image` as given; prod-like stacks must use false and deploy an image "
        "promoted from dev (tools/promote_image.py).")
    image: Annotated[str, checked(Check(
        lambda v: parse_image(v) is not None,
        "must be an image tag (e.g. v1.2.0), sha256:<64 hex digits>, or a full image URI "
        "(registry/repository:tag or registry/repository@sha256:...)"))] = Field(
        "latest", description="The model server image: a tag or digest in this stack's ECR repository, or a full "
        "image URI. With imageBuild true, the tag the build is pushed under.")
    task_cpu: Int = Field(512, ge=128, le=196608, description="Task CPU units (1024 = 1 vCPU); must fit the "
                          "instance type beside the ECS agent.")
    task_memory_mib: Int = Field(1024, ge=128, le=1048576, alias="taskMemoryMiB", description="Task memory in "
                                 "MiB; must fit the instance type beside the ECS agent and OS.")
    container_port: Int = Field(8080, ge=1024, le=65535, description="Port the model server listens on "
                                "(non-root).")
    container_environment: StrList(Check(  # type: ignore[valid-type]
        lambda v: bool(ENV_NAME.match(v.partition("=")[0])) and "=" in v,
        "must be NAME=value with NAME of letters, digits and underscores"),
        AfterValidator(_no_secret)) = Field(
        (), description="Plain environment variables as NAME=value. Secret-looking names (HF_TOKEN, "
        "AWS_ACCESS_KEY_ID, ...) and credential-shaped values are refused; use Secrets Manager.")
    task_role_policy_arns: StrList(Check(  # type: ignore[valid-type]
        lambda v: bool(POLICY_ARN.match(v)), "must be an IAM policy ARN like "
        "arn:aws:iam::123456789012:policy/name")) = Field(
        (), description="IAM policy ARNs attached to the task role (what the model may call). Empty by default.")
    container_user: Annotated[str, checked(Check(
        lambda v: v == "" or (bool(CONTAINER_USER.match(v)) and v.split(":")[0] not in ("0", "root")),
        "must be empty or a non-root user: uid, name, uid:gid (not 0 or root)"))] = Field(
        "", description="User the container runs as; empty keeps the image's USER.")
    read_only_root_filesystem: Bool = Field(False, description="Run the container with a read-only root "
                                            "filesystem (set true when the image supports it); a scratch volume "
                                            "stays writable.")
    scratch_volume_path: Annotated[str, checked(Check(lambda v: v.startswith("/") and v != "/",
                                                      "must be an absolute path other than /"))] = Field(
        "/tmp", description="Path of the writable scratch volume inside the container.")
    container_health_check_command: Annotated[str, checked(Check(
        lambda v: set(re.findall(r"{(\w+)}", v)) <= {"port", "path"},
        "may use only the placeholders {port} and {path}"))] = Field(
        # No proxy, ever: HTTP_PROXY without NO_PROXY (common in corporate VPCs) would send 127.0.0.1 to it.
        "python -c \"import urllib.request as u; u.build_opener(u.ProxyHandler({})).open("
        "'http://127.0.0.1:{port}{path}', timeout=4)\" || exit 1",
        description="Shell command of the container health check; {port} and {path} are filled in. Empty "
        "disables it (the ALB check still applies). The default uses the image's python, as the reference image "
        "has no curl; an image without python needs its own command, e.g. curl -fsS "
        "http://localhost:{port}{path} || exit 1.")
    container_start_period_seconds: Int = Field(60, ge=0, le=300, description="Container health-check start "
                                                "period, the model's load time.")
    container_stop_timeout_seconds: Int = Field(30, ge=2, le=120, description="Seconds between SIGTERM and "
                                                "SIGKILL, to finish in-flight requests. The task sets the server's "
                                                "GRACEFUL_TIMEOUT 5 s below it (at least half of it).")
    log_retention_days: Annotated[Int, checked(Check(
        lambda v: v in LOG_RETENTION_DAYS,
        "must be a value CloudWatch Logs accepts: " + ", ".join(map(str, LOG_RETENTION_DAYS))))] = Field(
        7, ge=1, le=3653, description="CloudWatch Logs retention in days (also the expiry of ALB access logs).")
    gpus_per_task: Int = Field(0, ge=0, le=16, description="GPUs reserved per task (needs a GPU instance type; "
                               "switches instances to the ECS GPU AMI).")
    shared_memory_mib: Int = Field(0, ge=0, le=1048576, alias="sharedMemoryMiB", description="Size of /dev/shm in "
                                   "MiB (PyTorch data loaders need more than Docker's 64 MiB); 0 keeps the "
                                   "default.")
    log_kms_encryption: Bool = Field(False, description="Encrypt the log group with a customer-managed KMS key "
                                     "with rotation.")


class _LoadBalancer(BaseModel):
    """load balancer"""

    model_config = CONFIG
    certificate_arn: Annotated[str, checked(Check(
        lambda v: v == "" or bool(CERTIFICATE_ARN.match(v)),
        "must be empty or an ACM certificate ARN like arn:aws:acm:us-east-1:123456789012:certificate/<uuid>"))] \
        = Field("", description="ACM certificate ARN. When set, HTTP redirects (301) to an HTTPS listener.")
    alb_idle_timeout_seconds: Int = Field(60, ge=1, le=4000, description="ALB idle timeout; must exceed the "
                                          "slowest inference request. The task sets the server's KEEPALIVE_SECONDS "
                                          "5 s above it.")
    alb_access_logs: Bool = Field(False, description="Write ALB access logs to an S3 bucket the stack creates "
                                  "(any region: newer ones deliver through the log-delivery service).")
    health_check_path: Annotated[str, checked(Check(
        lambda v: bool(HTTP_PATH.match(v)), "must be an HTTP path starting with / (at most 1024 characters)"))] \
        = Field("/health", description="HTTP path of the ALB and container health checks.")
    health_check_interval_seconds: Int = Field(10, ge=5, le=300, description="ALB health-check interval.")
    health_check_timeout_seconds: Int = Field(5, ge=2, le=120, description="ALB health-check timeout, shorter "
                                              "than the interval.")
    healthy_threshold_count: Int = Field(2, ge=2, le=10, description="Consecutive passes before a target is "
                                         "healthy.")
    unhealthy_threshold_count: Int = Field(3, ge=2, le=10, description="Consecutive failures before a target is "
                                           "unhealthy.")
    health_check_matcher: Annotated[str, checked(Check(
        lambda v: bool(MATCHER.match(v)), "must be HTTP codes like 200, 200,204 or 200-299"))] = Field(
        "200", description="HTTP codes that count as healthy.")
    deregistration_delay_seconds: Int = Field(30, ge=0, le=3600, description="Seconds the ALB drains a target "
                                              "before ECS stops it; must exceed the slowest request.")


class _Service(BaseModel):
    """service"""

    model_config = CONFIG
    desired_task_count: Int = Field(1, ge=1, le=5000, description="Tasks at creation; afterwards service "
                                    "autoscaling owns the count.")
    min_task_count: Int = Field(1, ge=1, le=5000, description="Fewest tasks service autoscaling keeps.")
    max_task_count: Int = Field(2, ge=1, le=5000, description="Most tasks service autoscaling runs.")
    deployment_minimum_healthy_percent: Int = Field(100, ge=0, le=100, description="Share of tasks kept running "
                                                    "during a deployment.")
    deployment_maximum_percent: Int = Field(200, ge=100, le=200, description="Upper limit of running tasks "
                                            "during a deployment, above the minimum; the groups' maximum sizes "
                                            "must hold maxTaskCount x this / 100 tasks.")
    health_check_grace_period_seconds: Int = Field(120, ge=0, le=2147483647, description="Seconds ECS ignores ALB "
                                                   "health checks after a task starts; at least the container "
                                                   "start period.")


class _Scaling(BaseModel):
    """service autoscaling"""

    model_config = CONFIG
    requests_per_target_per_minute: Int = Field(
        20000, ge=1, le=1000000, description="Target of the ALBRequestCountPerTarget tracking policy (requests per "
        "task per minute). The default is about half of what the reference server sustains on a 512-unit task "
        "(app/README.md); measure your own model with app/benchmark.py.")
    cpu_target_percent: Int = Field(60, ge=10, le=90, description="Target of the CPU tracking policy.")
    scale_out_cooldown_seconds: Int = Field(60, ge=0, le=3600, description="Seconds after a scale-out before "
                                            "another.")
    scale_in_cooldown_seconds: Int = Field(300, ge=0, le=3600, description="Seconds after a scale-in before "
                                           "another.")
    scale_to_zero_cron: Annotated[str, checked(CRON)] = Field(
        "", description="Cron at which the service scales to zero tasks; empty disables the schedule.")
    scale_up_cron: Annotated[str, checked(CRON)] = Field(
        "", description="Cron at which the service returns to minTaskCount..maxTaskCount, e.g. "
        "cron(0 7 ? * MON-FRI *).")
    schedule_timezone: Annotated[str, checked(Check(
        is_timezone, "must be an IANA time zone such as UTC or Europe/Berlin"))] = Field(
        "UTC", description="Time zone of both schedules.")


EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


class _Observability(BaseModel):
    """alarms, dashboard and the server's metrics"""

    model_config = CONFIG
    alarm_emails: StrList(Check(  # type: ignore[valid-type]
        lambda v: len(v) <= 254 and bool(EMAIL.match(v)), "must be an email address like ops@example.com")) = Field(
        (), description="Email addresses subscribed to the alarm topic (each confirms a mail from AWS first). A "
        "dev-like stack with none keeps its alarms without actions and has no topic.")
    alarm_error_rate_percent: Int = Field(0, ge=0, le=100, description="Share of requests answered 5xx (by the "
                                          "targets, or by the ALB) that trips the error-rate alarms; 0 takes the "
                                          "environment class's value (infra/settings/args.py).")
    alarm_min_requests_per_minute: Int = Field(20, ge=1, le=10000000, description="Below this many requests in a "
                                               "minute the error-rate and latency alarms stay OK, so a quiet "
                                               "service does not alarm on one slow or failed request.")
    latency_objective_ms: Int = Field(0, ge=0, le=4000000, description="p99 target response time the latency "
                                      "alarm holds the service to, and the release check the green revision, in "
                                      "milliseconds; 0 takes the environment class's value (infra/settings/args.py).")
    alarm_cpu_percent: Int = Field(90, ge=1, le=100, description="Average service CPU (percent of the tasks' "
                                   "reservation) that trips the CPU alarm after 15 minutes.")
    alarm_memory_percent: Int = Field(90, ge=1, le=100, description="Average service memory (percent of the "
                                      "tasks' reservation) that trips the memory alarm after 15 minutes.")
    in_flight_requests_per_task: Int = Field(0, ge=0, le=10000, description="Target of an extra tracking policy "
                                             "on the server's InFlightRequests per task; 0 disables it.")
    # Micro-batching is on: measured in app/README.md, it never costs a lone request (a batch of one goes at
    # once) and at 64 connections serves 4.6-4.9x the instances/s at a p99 of 7 ms instead of 121 ms.
    batch_max_size: Int = Field(64, ge=1, le=4096, description="Most instances the server scores in one model "
                                "call (task env BATCH_MAX_SIZE); 1 turns micro-batching off.")
    batch_max_wait_ms: Int = Field(2, ge=0, le=1000, description="Longest a batch waits for more requests (task "
                                   "env BATCH_MAX_WAIT_MS); 0 with batchMaxSize 1.")


STRATEGIES = ("ROLLING", "BLUE_GREEN", "LINEAR", "CANARY")


class _Release(BaseModel):
    """releases"""

    model_config = CONFIG
    deployment_strategy: Literal["auto", "ROLLING", "BLUE_GREEN", "LINEAR", "CANARY"] = Field(
        "auto", description="How ECS rolls out a new task definition: ROLLING replaces tasks in place; BLUE_GREEN, "
        "LINEAR and CANARY start a full green revision behind the alternate target group, run the release check "
        "on the test listener, then shift production traffic (all at once, in steps, or a canary share first) and "
        "roll back on a failed check or alarm. auto: CANARY for environmentClass prod, ROLLING for dev.")
    previous_deployment_strategy: Literal["none", "ROLLING", "BLUE_GREEN", "LINEAR", "CANARY"] = Field(
        "none", description="Set to the strategy the running service uses when changing deploymentStrategy between "
        "ROLLING and the others: the change then takes two updates (README, Releasing a new model). none: no "
        "change in progress.")
    deployment_bake_minutes: Int = Field(10, ge=0, le=1440, description="Minutes blue and green both run after "
                                         "all production traffic moved to green, before blue stops (an alarm in "
                                         "this time rolls back at once).")
    canary_percent: Int = Field(10, ge=1, le=100, description="CANARY: share of production traffic the green "
                                "revision gets first, in whole percent.")
    canary_bake_minutes: Int = Field(10, ge=0, le=1440, description="CANARY: minutes the canary share runs "
                                     "before the rest of the traffic moves.")
    linear_step_percent: Int = Field(20, ge=3, le=100, description="LINEAR: share of production traffic moved "
                                     "per step, in whole percent.")
    linear_step_bake_minutes: Int = Field(5, ge=0, le=1440, description="LINEAR: minutes between steps.")
    test_listener_port: Int = Field(9000, ge=1, le=65535, description="Port of the test listener that reaches "
                                    "the green revision during a release (not 80 or 443).")
    test_listener_cidrs: StrList(Check(is_cidr, "must be an IPv4 CIDR like 203.0.113.0/24")) = Field(  # type: ignore[valid-type]
        (), description="IPv4 CIDRs allowed to reach the test listener besides the release check; empty keeps it "
        "off the internet.")
    release_check_min_accuracy_percent: Int = Field(
        90, ge=0, le=100, description="The release check fails when fewer of the smoke set's labels "
        "(app/smoke/requests.json) are answered correctly, in percent.")


# The order of the generated Pulumi.yaml block and README table.
SECTIONS: tuple[type[BaseModel], ...] = (_Environment, _Network, _Registry, _Capacity, _Spot, _Task,
                                         _LoadBalancer, _Service, _Scaling, _Observability, _Release)


class Settings(_Release, _Observability, _Scaling, _Service, _LoadBalancer, _Task, _Spot, _Capacity, _Registry,
               _Network, _Environment):
    """The validated settings of one stack (every section's fields, flat, one per config key)."""

    model_config = CONFIG
    _project: str = PrivateAttr("")
    _stack: str = PrivateAttr("")

    @property
    def project(self) -> str:
        return self._project

    @property
    def stack(self) -> str:
        return self._stack

    @property
    def is_prod(self) -> bool:
        return self.environment_class == "prod"

    @property
    def name_prefix(self) -> str:
        """Prefix of physical names, so resources of different stacks are told apart in the console."""
        return f"{self.project}-{self.stack}"

    @property
    def tags(self) -> dict[str, str]:
        return {"project": self.project, "environment": self.environment_class, "stack": self.stack,
                "managed-by": "pulumi"}

    @property
    def instance(self) -> InstanceType:
        return instance_types()[self.instance_type]

    @property
    def spot(self) -> bool:
        return bool(self.spot_instance_types)

    @property
    def scheduled(self) -> bool:
        return bool(self.scale_to_zero_cron)

    @property
    def image_ref(self) -> ImageRef:
        return parse_image(self.image) or ImageRef(reference="invalid")

    @property
    def environment(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, value) for name, _, value in (item.partition("=") for item in self.container_environment))

    def capacity_plan(self, extra_tasks: int | None = None) -> list[ProviderPlan]:
        """Tasks per instance and instances needed, per capacity provider (onDemand first); `extra_tasks` are the
        tasks a deployment at maxTaskCount starts beside the running ones (infra/settings/args.py)."""
        groups = [GroupSpec("onDemand", (self.instance,), self.on_demand_base_tasks, self.on_demand_weight,
                            self.instance_max_count)]
        if self.spot:
            spot_types = tuple(instance_types()[name] for name in self.spot_instance_types)
            groups.append(GroupSpec("spot", spot_types, 0, self.spot_weight, self.spot_max_count))
        task = TaskSize(self.task_cpu, self.task_memory_mib, self.gpus_per_task)
        return plan(groups, task, self.min_task_count, self.max_task_count, self.capacity_target_percent,
                    extra_tasks=extra_tasks)

    # The `aws:` settings (ProviderArgs keyword arguments, infra/settings/provider.py) and the region.
    _provider: dict[str, Any] = PrivateAttr(default_factory=dict)
    _region: str = PrivateAttr("")

    @property
    def provider(self) -> dict[str, Any]:
        return self._provider

    @property
    def region(self) -> str:
        """aws:region, else the AWS_REGION the provider falls back to ("" when neither is set)."""
        return self._region

    @property
    def deployment_max_tasks(self) -> int:
        """Tasks that must fit at once for a rolling deployment at maxTaskCount to make progress.

        ECS rounds the minimum-healthy limit up: when it keeps every task running, a deployment must start a new
        task before it may stop an old one, so one more than maxTaskCount must fit. More room (up to
        deploymentMaximumPercent) only makes the deployment faster; ECS starts what fits and continues as old
        tasks drain.
        """
        keep = -(-self.max_task_count * self.deployment_minimum_healthy_percent // 100)
        return self.max_task_count + 1 if keep >= self.max_task_count else self.max_task_count

