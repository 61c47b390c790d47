"""The stack's image paths under mocks: build app/ and run the pushed digest, or deploy a configured image."""

import json
from typing import Any

import pytest

from infra.settings import SettingsError
from tests.harness import ACCOUNT_ID, ECR_PASSWORD, StackRun, image_digest, run_stack

BUILD_TYPE = "docker-build:index:Image"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in serialized inputs
URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shared/model@sha256:" + "a" * 64
_runs: dict[str, StackRun] = {}


def stack(name: str) -> StackRun:
    if name not in _runs:
        _runs[name] = run_stack(name)
    return _runs[name]


def container_image(run: StackRun) -> str:
    definitions = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    return str(definitions[0]["image"])


def repository_url(run: StackRun) -> str:
    return str(run.one("aws:ecr/repository:Repository").state["repositoryUrl"])


def unsecret(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict) and SECRET_SIG in value:
        return value["value"], True
    return value, False


def test_dev_builds_app_and_the_task_runs_the_pushed_digest() -> None:
    dev = stack("dev")
    build = dev.one(BUILD_TYPE)
    component = dev.by_urn(build.parent)
    assert component.type == "model-serving:infra:Image"
    assert build["push"] is True
    assert build["context"] == {"location": "app"}
    assert build["dockerfile"] == {"location": "app/Dockerfile"}
    assert build["platforms"] == ["linux/amd64"]
    assert build["tags"] == [f"{repository_url(dev)}:latest"]  # Pulumi.yaml's default `image` is the tag

    digest = build.state["digest"]
    assert digest == image_digest(build.name)
    assert container_image(dev) == f"{repository_url(dev)}@{digest}"
    assert dev.outputs["image"] == container_image(dev)
    # The task definition takes the digest from the build, so a new digest is a new revision.
    assert dev.depends_on(dev.one("aws:ecs/taskDefinition:TaskDefinition"), build)


def test_the_build_logs_in_to_the_stacks_registry_with_a_secret_ecr_token() -> None:
    dev = stack("dev")
    registries, secret = unsecret(dev.one(BUILD_TYPE)["registries"])
    assert secret, "the registry password must stay a secret in the state"
    assert registries == [{"address": repository_url(dev).split("/")[0], "username": "AWS",
                           "password": ECR_PASSWORD}]
    token_calls = [args for token, args in dev.invokes
                   if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken"]
    assert token_calls == [{"registryId": ACCOUNT_ID}]  # the repository's own registry


def test_prod_deploys_its_configured_tag_and_builds_nothing() -> None:
    prod = stack("prod")
    assert prod.of_type(BUILD_TYPE) == []
    assert not [r for r in prod.resources if r.type == "model-serving:infra:Image"]
    assert container_image(prod) == f"{repository_url(prod)}:v1.0.0"
    assert prod.outputs["image"] == container_image(prod)


@pytest.mark.parametrize(("stack_name", "overrides"), [
    ("dev", {"imageBuild": False, "image": URI}),
    ("prod", {"image": URI}),
])
def test_a_full_image_uri_is_deployed_as_given(stack_name: str, overrides: dict[str, Any]) -> None:
    run = run_stack(stack_name, overrides=overrides)
    assert run.of_type(BUILD_TYPE) == []
    assert container_image(run) == URI


def test_dev_without_a_build_deploys_a_digest_in_its_own_repository() -> None:
    digest = "sha256:" + "b" * 64
    run = run_stack("dev", overrides={"imageBuild": False, "image": digest})
    assert run.of_type(BUILD_TYPE) == []
    assert container_image(run) == f"{repository_url(run)}@{digest}"


def test_a_build_is_pushed_under_the_configured_tag() -> None:
    run = run_stack("dev", overrides={"image": "v1.3.0"})
    build = run.one(BUILD_TYPE)
    assert build["tags"] == [f"{repository_url(run)}:v1.3.0"]
    assert container_image(run) == f"{repository_url(run)}@{build.state['digest']}"


@pytest.mark.parametrize(("stack_name", "overrides", "message"), [
    ("dev", {"image": URI}, f"model-serving:image = '{URI}': must be a tag when imageBuild is true"),
    ("dev", {"image": "sha256:" + "c" * 64}, "must be a tag when imageBuild is true"),
    ("prod", {"imageBuild": True}, "model-serving:imageBuild = true: must be false with environmentClass prod"),
    ("dev", {"containerPort": 9000}, "model-serving:containerPort = 9000: must be 8080 with imageBuild true"),
])
def test_contradictory_image_settings_are_refused(stack_name: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        run_stack(stack_name, overrides=overrides)
    assert message in str(refused.value)


def test_the_reference_image_may_listen_elsewhere_when_port_is_set() -> None:
    run = run_stack("dev", overrides={"containerPort": 9000, "containerEnvironment": ["PORT=9000"]})
    definition = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])[0]
    assert definition["portMappings"][0]["containerPort"] == 9000
    assert {"name": "PORT", "value": "9000"} in definition["environment"]


def test_the_default_health_check_needs_no_curl() -> None:
    for name in ("dev", "prod"):
        definition = json.loads(stack(name).one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])[0]
        command = definition["healthCheck"]["command"]
        assert command[0] == "CMD-SHELL"
        assert "curl" not in command[1] and "http://127.0.0.1:8080/health" in command[1]
