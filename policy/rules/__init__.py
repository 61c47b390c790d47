"""The model-serving policy pack's rules, importable without starting the pack's gRPC server.

`policy/__main__.py` builds the `PolicyPack` from `POLICIES` for the Pulumi CLI; tests call each policy's
`validate` directly. Policy names are the keys of policy/config.<stack>.json.
"""

from pulumi_policy import EnforcementLevel, Policy

from . import deployability, security, storage

PACK_NAME = "model-serving-guardrails"
# Without a config file every policy blocks: prod strictness is the default, dev opts out per policy.
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY

POLICIES: list[Policy] = [*security.POLICIES, *storage.POLICIES, *deployability.POLICIES]
BY_NAME: dict[str, Policy] = {p.name: p for p in POLICIES}

__all__ = ["BY_NAME", "DEFAULT_ENFORCEMENT", "PACK_NAME", "POLICIES"]
