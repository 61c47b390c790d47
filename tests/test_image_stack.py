"""The stack's image paths under mocks: build app/ and run the pushed digest, or deploy a configured image."""

import json
from typing import Any

import pytest

from infra.settings import SettingsError, parse_settings
from tests.conftest import IMAGE_DIGEST, IMAGE_URI, setting
from tests.harness import ACCOUNT_ID, ECR_PASSWORD, PROJECT, StackRun, image_digest, run_stack, stack_config

BUILD_TYPE = "docker-build:index:Image"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in serialized inputs
URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shared/model@sha256:" + "a" * 64


def container(run: StackRun) -> dict[str, Any]:
    definitions = json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition")["containerDefinitions"])
    return dict(definitions[0])


def repository_url(run: StackRun) -> str:
    return str(run.one("aws:ecr/repository:Repository").state["repositoryUrl"])


def test_dev_builds_app_and_the_task_runs_the_pushed_digest(dev_build: StackRun) -> None:
    dev = dev_build
    build = dev.one(BUILD_TYPE)
    assert dev.by_urn(build.parent).type == "model-serving:infra:Image"
    assert build["push"] is True
    assert build["buildOnPreview"] is False  # a preview needs no Docker and builds nothing
    assert build["context"] == {"location": "app"}
    assert build["dockerfile"] == {"location": "app/Dockerfile"}
    assert build["platforms"] == ["linux/amd64"]
    assert build["tags"] == [f"{repository_url(dev)}:{setting(dev, 'image')}"]  # `image` is the pushed tag

    digest = build.state["digest"]
    assert digest == image_digest(build.name)
    assert container(dev)["image"] == f"{repository_url(dev)}@{digest}"
    assert dev.outputs["image"] == container(dev)["image"]
    # The task definition takes the digest from the build, so a new digest is a new revision.
    assert dev.depends_on(dev.one("aws:ecs/taskDefinition:TaskDefinition"), build)


def test_the_build_logs_in_to_the_stacks_registry_with_a_secret_ecr_token(dev_build: StackRun) -> None:
    dev = dev_build
    registries = dev.one(BUILD_TYPE)["registries"]
    assert isinstance(registries, dict) and SECRET_SIG in registries, "the password must stay a secret"
    assert registries["value"] == [{"address": repository_url(dev).split("/")[0], "username": "AWS",
                                    "password": ECR_PASSWORD}]
    token_calls = [args for token, args in dev.invokes
                   if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken"]
    assert token_calls == [{"registryId": ACCOUNT_ID}]  # the repository's own registry


def test_prod_deploys_its_configured_tag_and_builds_nothing(prod: StackRun) -> None:
    assert prod.of_type(BUILD_TYPE) == []
    assert not [r for r in prod.resources if r.type == "model-serving:infra:Image"]
    assert container(prod)["image"] == f"{repository_url(prod)}:{setting(prod, 'image')}"
    assert prod.outputs["image"] == container(prod)["image"]


def test_without_a_build_a_digest_or_a_full_uri_is_deployed_as_given(dev_variant: StackRun,
                                                                      prod_variant: StackRun) -> None:
    # dev_variant: imageBuild false with a digest in its own repository; prod_variant: a full image URI.
    assert dev_variant.of_type(BUILD_TYPE) == [] == prod_variant.of_type(BUILD_TYPE)
    assert container(dev_variant)["image"] == f"{repository_url(dev_variant)}@{IMAGE_DIGEST}"
    assert container(prod_variant)["image"] == IMAGE_URI


def test_a_build_is_pushed_under_the_configured_tag_and_may_listen_on_port() -> None:
    run = run_stack("dev", overrides={"imageBuild": True, "image": "v1.3.0", "containerPort": 9000,
                                      "containerEnvironment": ["PORT=9000"]})
    build = run.one(BUILD_TYPE)
    assert build["tags"] == [f"{repository_url(run)}:v1.3.0"]
    assert container(run)["image"] == f"{repository_url(run)}@{build.state['digest']}"
    assert container(run)["portMappings"][0]["containerPort"] == 9000


def refusal(stack: str, overrides: dict[str, Any]) -> str:
    prefix = f"{PROJECT}:"
    raw = {key[len(prefix):]: value for key, value in stack_config(stack, overrides).items()
           if key.startswith(prefix)}
    with pytest.raises(SettingsError) as refused:
        parse_settings(PROJECT, stack, raw)
    return str(refused.value)


@pytest.mark.parametrize(("stack", "overrides", "message"), [
    ("dev", {"imageBuild": True, "image": URI},
     f"model-serving:image = '{URI}': must be a tag when imageBuild is true"),
    ("dev", {"imageBuild": True, "image": "sha256:" + "c" * 64}, "must be a tag when imageBuild is true"),
    ("prod", {"imageBuild": True}, "model-serving:imageBuild = true: must be false with environmentClass prod"),
    ("dev", {"imageBuild": True, "image": "v1.0.0", "containerPort": 9000},
     "model-serving:containerPort = 9000: must be 8080 with imageBuild true"),
])
def test_contradictory_image_settings_are_refused(stack: str, overrides: dict[str, Any], message: str) -> None:
    assert message in refusal(stack, overrides)


def test_without_a_build_any_image_and_port_are_accepted() -> None:
    for image in (URI, "sha256:" + "c" * 64, "v1.0.0"):
        parse_settings(PROJECT, "dev", {"imageBuild": False, "image": image, "containerPort": 9000})


def test_the_default_health_check_needs_no_curl(run: StackRun) -> None:
    command = container(run)["healthCheck"]["command"]
    assert command[0] == "CMD-SHELL"
    assert "curl" not in command[1] and "http://127.0.0.1:8080/health" in command[1]
