"""Entry point the Pulumi CLI runs (`pulumi preview --policy-pack policy`): serve the pack and block.

Never import this module: `PolicyPack(...)` starts a gRPC server and sleeps forever. Tests import
`policy.rules` instead.
"""

import sys
from pathlib import Path

# The CLI runs this file with policy/ as the script directory; the rules import `policy.rules` and the
# project's `infra.instance_types`, so the repository root must be importable.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from pulumi_policy import PolicyPack  # noqa: E402

from policy.rules import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=DEFAULT_ENFORCEMENT,
    description="Security, reliability and deployability guardrails of the model-serving stack (ECS on EC2).",
)
