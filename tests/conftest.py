"""Each stack runs once per test session under mocks; tests read the recorded resources.

Besides the real dev and prod stacks, two variant runs apply many independent overrides at once (each test
checks the one it is about), which keeps the suite to a handful of program runs.
"""

import pytest

from tests.harness import StackRun, run_stack

STACKS = ("dev", "prod")
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b5a1c4e-1111-2222-3333-444455556666"
IMAGE_DIGEST = "sha256:" + "ab" * 32
IMAGE_URI = "public.ecr.aws/acme/model-server:1.4.2"
TASK_POLICY = "arn:aws:iam::123456789012:policy/read-model-bucket"
EXISTING_VPC = "vpc-0aaaaaaaaaaaaaaaa"
EXISTING_PUBLIC = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
EXISTING_PRIVATE = ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"]
INGRESS = ["203.0.113.0/24", "198.51.100.0/24"]

DEV_VARIANT = {
    "certificateArn": CERTIFICATE,
    "ingressCidrs": INGRESS,
    "existingVpcId": EXISTING_VPC,
    "existingPublicSubnetIds": EXISTING_PUBLIC,
    "existingPrivateSubnetIds": EXISTING_PRIVATE,
    "image": IMAGE_DIGEST,
    "containerEnvironment": ["MODEL_NAME=iris", "WORKERS=2"],
    "taskRolePolicyArns": [TASK_POLICY],
    "healthCheckPath": "/v1/ready",
    "containerHealthCheckCommand": "",
}
PROD_VARIANT = {"certificateArn": CERTIFICATE, "image": IMAGE_URI}

_runs: dict[str, StackRun] = {}


def stack_run(stack: str) -> StackRun:
    if stack not in _runs:
        _runs[stack] = {
            "dev-variant": lambda: run_stack("dev", overrides=DEV_VARIANT),
            "prod-variant": lambda: run_stack("prod", overrides=PROD_VARIANT),
        }.get(stack, lambda: run_stack(stack))()
    return _runs[stack]


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest) -> StackRun:
    """Both real stacks: a test using it asserts the same behaviour for dev and for prod."""
    return stack_run(request.param)


@pytest.fixture
def dev() -> StackRun:
    return stack_run("dev")


@pytest.fixture
def prod() -> StackRun:
    return stack_run("prod")


@pytest.fixture
def dev_variant() -> StackRun:
    """dev with a certificate, an existing VPC, an image digest, env vars, a task policy and no container check."""
    return stack_run("dev-variant")


@pytest.fixture
def prod_variant() -> StackRun:
    """prod with a certificate and a full image URI."""
    return stack_run("prod-variant")
