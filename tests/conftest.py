"""Each stack runs once per test session under mocks; tests read the recorded resources.

Besides the real dev and prod stacks, two variant runs apply many independent overrides at once (each test
checks the one it is about), which keeps the suite to a handful of program runs.
"""

import gc
import sys
import tempfile
from pathlib import Path

import pytest

from tests.harness import PROJECT, StackRun, run_stack, stack_config

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
    "imageBuild": False,
    "containerEnvironment": ["MODEL_NAME=iris", "WORKERS=2"],
    "taskRolePolicyArns": [TASK_POLICY],
    "healthCheckPath": "/v1/ready",
    "containerHealthCheckCommand": "",
    "deploymentMinimumHealthyPercent": 50,
    "deploymentMaximumPercent": 100,
}
PROD_VARIANT = {"certificateArn": CERTIFICATE, "image": IMAGE_URI}

# Each stack's capacity as the shipped stack files set it: instance types, both groups, strategy, task size, no
# GPU. Tests about the groups (the Spot group above all) run on a stack with these settings: the real run while
# its file says the same, so a documented capacity change (Spot off, GPUs) leaves them testing the groups.
SPOT: dict[str, dict[str, object]] = {
    "dev": {"instanceType": "t3.medium", "instanceMinCount": 0, "instanceMaxCount": 1, "warmPoolMinSize": 0,
            "spotInstanceTypes": ["t3.medium", "t3a.medium", "m5.large", "m6i.large", "m6a.large"],
            "spotMinCount": 0, "spotMaxCount": 2, "onDemandBaseTasks": 0, "onDemandWeight": 0, "spotWeight": 1,
            "taskCpu": 512, "taskMemoryMiB": 1024, "gpusPerTask": 0, "sharedMemoryMiB": 0,
            "instanceRootVolumeGiB": 30, "minTaskCount": 1, "desiredTaskCount": 1, "maxTaskCount": 2,
            "capacityTargetPercent": 100},
    "prod": {"instanceType": "c6i.2xlarge", "instanceMinCount": 2, "instanceMaxCount": 6, "warmPoolMinSize": 1,
             "spotInstanceTypes": ["c6i.2xlarge", "c6a.2xlarge", "c5.2xlarge", "c5a.2xlarge", "m6i.2xlarge"],
             "spotMinCount": 0, "spotMaxCount": 6, "onDemandBaseTasks": 2, "onDemandWeight": 1, "spotWeight": 3,
             "taskCpu": 2048, "taskMemoryMiB": 4096, "gpusPerTask": 0, "sharedMemoryMiB": 0,
             "instanceRootVolumeGiB": 50, "minTaskCount": 2, "desiredTaskCount": 3, "maxTaskCount": 10,
             "capacityTargetPercent": 80},
}

_runs: dict[str, StackRun] = {}
_variants: dict[tuple[str, frozenset[tuple[str, str]]], StackRun] = {}

# Start-up and collection import the SDKs: a few hundred thousand objects that live as long as the session.
# Collecting garbage while they load only scans them over and over (about 0.7 s on 2 cores), so the collector
# stays off until `pytest_collection_finish` has frozen them out of every later collection.
gc.disable()


REAL_SERVER_TESTS = "tests/test_app_server.py"
# Whole modules of the integration tier (marked `integration` inside): not even imported by the default run, so
# moto, the real server's boot and their subprocesses cost the quick suite nothing. `.ci/run` runs them with
# `pytest -m integration`.
INTEGRATION_MODULES = frozenset({"test_app_server.py", "test_verify_deployment.py", "test_promote_image.py",
                                 "test_documented_tools.py"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name in INTEGRATION_MODULES and "integration" not in (config.option.markexpr or "").replace(
            "not integration", ""):
        return True
    return None




def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the real-server tests last, so the server started below has booted by the time they need it."""
    items.sort(key=lambda item: item.nodeid.startswith(REAL_SERVER_TESTS))


def pytest_collection_finish(session: pytest.Session) -> None:
    try:
        _start_real_server_early(session)
    finally:
        # Everything loaded so far (the SDKs, scikit-learn for the model the server gets) lives as long as the
        # session: leave it out of every collection from here on (a full pass over it costs 0.1 s each time).
        gc.freeze()
        # Each program run allocates some hundred thousand short-lived objects: collect the young generation
        # less often (the default 700 allocations makes it run thousands of times over nothing collectable).
        gc.set_threshold(50_000, 20, 20)
        gc.enable()


def _start_real_server_early(session: pytest.Session) -> None:
    """Start the real model server now if a test will use it: it boots (two workers loading scikit-learn)
    on the second core while the stack tests run on the first, instead of making the suite wait."""
    if any("server" in getattr(item, "fixturenames", ()) and item.nodeid.startswith(REAL_SERVER_TESTS)
           for item in session.items):
        from tests import test_app_server  # noqa: PLC0415 - only when its tests were collected

        workdir = Path(tempfile.mkdtemp(prefix="model-server-"))
        session.config.stash[test_app_server.EARLY_SERVER] = test_app_server.launch(workdir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    real_server_tests = sys.modules.get("tests.test_app_server")
    early = real_server_tests and session.config.stash.get(real_server_tests.EARLY_SERVER, None)
    if real_server_tests and early:
        real_server_tests.stop_group(early.process)


def stack_run(stack: str) -> StackRun:
    if stack not in _runs:
        _runs[stack] = {
            "dev-variant": lambda: run_stack("dev", overrides=DEV_VARIANT),
            "prod-variant": lambda: run_stack("prod", overrides=PROD_VARIANT),
        }.get(stack, lambda: run_stack(stack))()
    return _runs[stack]


def run_with(stack: str, **overrides: object) -> StackRun:
    """`stack` (its stack file) with `overrides`, run once per session; the real stack's own run when the stack
    file already says the same. Tests about one behaviour ask for the settings that show it instead of relying
    on what today's stack file happens to set, so a release or a config change never breaks them."""
    real = stack_run(stack)
    config = stack_config(stack, overrides)
    if config == real.config:
        return real
    key = (stack, frozenset(config.items()))
    if key not in _variants:
        _variants[key] = run_stack(stack, overrides=overrides)
    return _variants[key]


def setting(run: StackRun, key: str) -> str:
    """A setting of `run` as the CLI passed it (text)."""
    return run.config[f"{PROJECT}:{key}"]


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


@pytest.fixture(params=STACKS)
def with_spot(request: pytest.FixtureRequest) -> StackRun:
    """Each real stack with its shipped capacity and Spot group (itself while its stack file says the same)."""
    return run_with(request.param, **SPOT[request.param])


@pytest.fixture
def dev_build() -> StackRun:
    """dev building app/ (imageBuild true, dev's default): the real dev run unless its file deploys a given image."""
    if setting(stack_run("dev"), "imageBuild") == "true":
        return stack_run("dev")
    return run_with("dev", imageBuild=True, image="latest")


@pytest.fixture(params=STACKS)
def plain_http(request: pytest.FixtureRequest) -> StackRun:
    """Each real stack without a certificate (itself unless its stack file sets one)."""
    return run_with(request.param, certificateArn="")


@pytest.fixture
def dev_variant() -> StackRun:
    """dev with a certificate, an existing VPC, an image digest, env vars, a task policy, no container check and
    deployments that stay within 100% of the tasks."""
    return stack_run("dev-variant")


@pytest.fixture
def prod_variant() -> StackRun:
    """prod with a certificate and a full image URI."""
    return stack_run("prod-variant")
