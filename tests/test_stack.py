"""Stack-wide behaviour: composition, tags, names, outputs, and stacks without a stack file."""

import functools
import json
import re

import pytest

from infra.naming import AUTONAME_SUFFIX_LENGTH, LOAD_BALANCER_NAME_MAX, TARGET_GROUP_NAME_MAX
from infra.settings import Settings
from tests.conftest import setting
from tests.harness import PROJECT, StackRun, run_stack


@functools.cache
def staging_defaults() -> StackRun:
    """A new stack with a long name and no stack file of its own."""
    return run_stack("performance-staging-eu", use_stack_file=False)


# A release tag: v1.2, v1.2.3, 1.2.3-rc.1 (not latest, main, a branch or a date that gets pushed again).
RELEASE_TAG = re.compile(r"v?\d+\.\d+(\.\d+)?([-+][0-9A-Za-z.-]+)?")


def stack_file_violations(stack: str, settings: Settings) -> list[str]:
    """The rules the committed stack files keep, beyond what the program itself refuses, in its message style.
    tests/test_operations.py applies the same rules to every documented change."""
    found = []
    if stack in ("dev", "prod") and settings.environment_class != stack:
        found.append(f"{PROJECT}:environmentClass = {settings.environment_class!r}: Pulumi.{stack}.yaml is the "
                     f"{stack}-like stack the docs, CI and policy config describe")
    if settings.environment_class == "prod":
        image = settings.image
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "/" in image else image
        if not ("sha256:" in image or RELEASE_TAG.fullmatch(tag)):
            found.append(f"{PROJECT}:image = {image!r}: prod deploys a pinned release tag (e.g. v1.2.0) or a "
                         "digest, never a tag that moves")
        if settings.scale_to_zero_cron:
            found.append(f"{PROJECT}:scaleToZeroCron = {settings.scale_to_zero_cron!r}: prod serves around the clock")
    if settings.scale_to_zero_cron and (settings.instance_min_count or settings.spot_min_count):
        found.append(f"{PROJECT}:instanceMinCount = {settings.instance_min_count}: a schedule implies minimum "
                     "instance counts of 0")
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_committed_stack_files_keep_the_rules(stack: str) -> None:
    from tests.test_operations import settings_of  # noqa: PLC0415 - one reader of stack files for both modules

    assert stack_file_violations(stack, settings_of(stack)) == []


@pytest.mark.parametrize(("image", "pinned"), [
    ("v1.0.0", True), ("1.4.2-rc.1", True), ("v2.1", True), ("sha256:" + "a" * 64, True),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/m:v1.2.0", True), ("host:5000/m@sha256:" + "b" * 64, True),
    ("latest", False), ("main", False), ("123456789012.dkr.ecr.us-east-1.amazonaws.com/m:latest", False),
    ("host:5000/team/m", False),
])
def test_prod_images_must_be_pinned_releases(image: str, pinned: bool) -> None:
    settings = Settings.model_construct(environment_class="prod", image=image, scale_to_zero_cron="",
                                        instance_min_count=2, spot_min_count=0)
    assert (stack_file_violations("prod", settings) == []) is pinned


COMPONENTS = {"Network", "Registry", "Logging", "Cluster", "Task", "LoadBalancer", "Service", "Autoscaling"}


def test_every_piece_is_a_component_and_every_resource_has_a_component_parent(run: StackRun) -> None:
    components = {r.urn: r for r in run.resources if r.type.startswith("model-serving:infra:")}
    assert {r.type.rsplit(":", 1)[-1] for r in components.values()} >= COMPONENTS
    for resource in run.resources:
        if resource.type.startswith("model-serving:infra:") or resource.type == "pulumi:providers:aws":
            continue
        assert resource.parent in components, f"{resource.type} {resource.name} is not parented to a component"


def test_every_aws_resource_uses_the_tagging_provider(run: StackRun) -> None:
    provider = run.one("pulumi:providers:aws")
    tags = json.loads(provider["defaultTags"])["tags"]  # provider config arrives JSON-encoded
    environment = run.config[f"{PROJECT}:environmentClass"]
    assert tags == {"project": PROJECT, "environment": environment, "stack": run.stack, "managed-by": "pulumi"}
    for resource in run.resources:
        if resource.type.startswith("aws:"):
            assert resource.provider.startswith(provider.urn + "::"), f"{resource.type} {resource.name}"


def test_length_limited_names_fit_after_autonaming(run: StackRun) -> None:
    lb = run.one("aws:lb/loadBalancer:LoadBalancer")
    tg = run.one("aws:lb/targetGroup:TargetGroup", "-tg")
    assert "name" not in lb.inputs and "name" not in tg.inputs  # auto-named, so replacements never clash
    assert len(lb.name) + AUTONAME_SUFFIX_LENGTH <= LOAD_BALANCER_NAME_MAX
    assert len(tg.name) + AUTONAME_SUFFIX_LENGTH <= TARGET_GROUP_NAME_MAX


def test_long_stack_names_are_shortened_for_the_load_balancer_and_target_group() -> None:
    long = staging_defaults()
    for type_, limit in (("aws:lb/loadBalancer:LoadBalancer", LOAD_BALANCER_NAME_MAX),
                         ("aws:lb/targetGroup:TargetGroup", TARGET_GROUP_NAME_MAX)):
        name = long.one(type_).name
        assert len(name) + AUTONAME_SUFFIX_LENGTH <= limit, name
        assert not name.startswith("-") and "--" not in name


def test_outputs(run: StackRun) -> None:
    scheme = "https://" if setting(run, "certificateArn") else "http://"
    assert run.outputs["serviceUrl"] == scheme + run.one("aws:lb/loadBalancer:LoadBalancer").state["dnsName"]
    assert run.outputs["repositoryUrl"] == run.one("aws:ecr/repository:Repository").state["repositoryUrl"]
    assert run.outputs["clusterName"] == run.one("aws:ecs/cluster:Cluster").state["name"]
    assert run.outputs["serviceName"] == run.one("aws:ecs/service:Service").state["name"]
    groups = {g.name.rsplit("-", 1)[-1]: g.state["name"] for g in run.of_type("aws:autoscaling/group:Group")}
    providers = {p.name.rsplit("-", 1)[-1]: p.state["name"] for p in run.of_type(
        "aws:ecs/capacityProvider:CapacityProvider")}
    assert run.outputs["autoScalingGroupName"] == groups["instances"]
    assert run.outputs["capacityProviderName"] == providers[run.stack]  # cp-model-serving-<stack>
    assert run.outputs["spotCapacityProviderName"] == providers["spot"]
    assert run.outputs["logGroupName"] == run.one("aws:cloudwatch/logGroup:LogGroup", f"-{run.stack}").state["name"]


def test_service_url_is_https_when_a_certificate_is_configured(dev_variant: StackRun) -> None:
    dns = dev_variant.one("aws:lb/loadBalancer:LoadBalancer").state["dnsName"]
    assert dev_variant.outputs["serviceUrl"] == f"https://{dns}"


def test_a_stack_without_a_stack_file_runs_on_the_defaults() -> None:
    staging = staging_defaults()
    assert json.loads(staging.one("pulumi:providers:aws")["defaultTags"])["tags"]["environment"] == "dev"
    assert staging.one("aws:ecs/service:Service")["desiredCount"] == 1
    on_demand, empty_spot = staging.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert on_demand["instanceType"] == "t3.medium" and empty_spot.name.endswith("-spot")


def test_a_prod_like_staging_stack_is_chosen_by_setting_not_by_name() -> None:
    prod_like = {"environmentClass": "prod", "image": "v2.0.0", "imageBuild": False, "minTaskCount": 2,
                 "desiredTaskCount": 2, "instanceMinCount": 2}
    staging = run_stack("staging", overrides=prod_like, use_stack_file=False)
    assert staging.one("aws:lb/loadBalancer:LoadBalancer")["enableDeletionProtection"] is True
    assert staging.one("aws:ecr/repository:Repository")["imageTagMutability"] == "IMMUTABLE"
