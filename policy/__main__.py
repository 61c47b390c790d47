"""Entry point the Pulumi CLI runs (`pulumi preview --policy-pack policy`): serve the pack and block.

Never import this module: `PolicyPack(...)` starts a gRPC server and sleeps forever. Tests import
`policy.rules` instead.

The CLI's Python host runs this file with `runpy.run_path(<pack directory>)`, which puts the pack's own
directory first on sys.path and nothing else: a checkout and a published copy (installed into a directory
named after the pack, without the repository around it) load the same way. So `rules` is imported as a
top-level package, and `rules/` imports only its own modules (relatively), pulumi and pulumi-policy.
"""

from pulumi_policy import PolicyPack
from rules import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES  # type: ignore[import-not-found]

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=DEFAULT_ENFORCEMENT,
    description="Security, reliability and deployability guardrails of the model-serving stack (ECS on EC2).",
)
