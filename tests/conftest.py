"""Each stack runs once per test session under mocks; tests read the recorded resources."""

import pytest

from tests.harness import StackRun, run_stack

STACKS = ("dev", "prod")
_runs: dict[str, StackRun] = {}


def stack_run(stack: str) -> StackRun:
    if stack not in _runs:
        _runs[stack] = run_stack(stack)
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
