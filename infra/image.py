"""Image: builds the reference model server in app/ and pushes it to the stack's ECR repository.

Used when `imageBuild` is true (dev's default). The docker-build provider (BuildKit through `docker buildx`)
builds app/Dockerfile for the instances' architecture (linux/amd64, or linux/arm64 on Graviton: a cross-build
needs QEMU binfmt on the build host, e.g. `docker run --privileged --rm tonistiigi/binfmt --install arm64`)
and pushes it under the `image` tag, logged in with a short-lived ECR token. The task runs the pushed image
by digest (`<repository>@sha256:...`), so a build that changes the image changes the task definition and
ECS rolls out a new revision; an unchanged build context is not rebuilt.

Previews never build (`build_on_preview=False`): a preview on a machine or CI runner without Docker works,
and a pull-request preview costs no build. The ECR token is fetched on every program run, so `pulumi up`
always logs in with a fresh one; `pulumi refresh` alone would reuse the token saved in state, which ECR
expires after 12 hours (pulumi/pulumi-docker-build#121): refresh with `pulumi refresh --run-program`.
"""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build


@dataclass(frozen=True)
class ImageArgs:
    tag: str  # the tag the build is pushed under
    platform: str = "linux/amd64"  # the instances' architecture (linux/arm64 on Graviton)

# Relative to the project directory, where Pulumi runs the program: the same path on every machine, so the
# inputs (and the diff) do not change with the checkout's location.
BUILD_CONTEXT = "app"
DOCKERFILE = f"{BUILD_CONTEXT}/Dockerfile"


def registry_address(repository_url: str) -> str:
    """`123456789012.dkr.ecr.us-east-1.amazonaws.com/name` -> the registry host to log in to."""
    return repository_url.split("/", 1)[0]


class Image(pulumi.ComponentResource):
    image: docker_build.Image
    image_uri: pulumi.Output[str]

    def __init__(self, name: str, args: ImageArgs, *, repository: aws.ecr.Repository,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:Image", name, None, opts)
        tag = args.tag
        token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id,
                                                       opts=pulumi.InvokeOutputOptions(parent=self))

        self.image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=BUILD_CONTEXT),
            dockerfile=docker_build.DockerfileArgs(location=DOCKERFILE),
            platforms=[docker_build.Platform(args.platform)],
            tags=[repository.repository_url.apply(lambda url: f"{url}:{tag}")],
            push=True,
            build_on_preview=False,
            registries=[docker_build.RegistryArgs(
                address=repository.repository_url.apply(registry_address),
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            )],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_uri = pulumi.Output.concat(repository.repository_url, "@", self.image.digest)
        self.register_outputs({"imageUri": self.image_uri})
