"""Which deployment strategy the service runs, and what a strategy needs: one place for args.py and rules.py.

ROLLING replaces tasks in place; BLUE_GREEN, LINEAR and CANARY start a whole green revision behind the
alternate target group and shift traffic to it (infra/release.py).
"""

import math

from infra.settings.model import Settings

SHIFTING = ("BLUE_GREEN", "LINEAR", "CANARY")


def deployment_strategy(s: Settings) -> str:
    """The strategy the stack asks for: prod-like stacks release by canary (a bad model meets a tenth of the
    traffic, then rolls back); dev keeps rolling updates (one set of tasks, fast iterations)."""
    if s.deployment_strategy != "auto":
        return s.deployment_strategy
    return "CANARY" if s.is_prod else "ROLLING"


def service_strategy(s: Settings) -> str:
    """The strategy this update gives the service. ECS switches a load-balanced service between ROLLING and the
    shifting strategies only once the load balancer's advancedConfiguration is in place (entering) and while it
    stays (leaving: either target group may hold production), so such a change runs ROLLING for one update."""
    target = deployment_strategy(s)
    previous = target if s.previous_deployment_strategy == "none" else s.previous_deployment_strategy
    return "ROLLING" if (target == "ROLLING") != (previous == "ROLLING") else target


def traffic_shifting(s: Settings) -> bool:
    """Whether the stack holds the alternate target group, listener rules, test listener and roles."""
    return deployment_strategy(s) in SHIFTING or s.previous_deployment_strategy in SHIFTING


def transition_step(s: Settings) -> str:
    """What a two-update strategy change does in this update ("" when none is under way)."""
    target, running = deployment_strategy(s), service_strategy(s)
    if running == target:
        return ""
    if target in SHIFTING:
        return (f"step 1 of 2 towards {target}: the service stays ROLLING while the alternate target group, listener "
                "rules and test listener are added; once this update is done, remove previousDeploymentStrategy and "
                "run pulumi up again")
    return ("step 1 of 2 towards ROLLING: the service switches to ROLLING and keeps the alternate target group and "
            "listener rules, as either target group may hold production; once the production listener rule forwards "
            "100% to the primary target group, remove previousDeploymentStrategy and run pulumi up again")


def deployment_extra_tasks(s: Settings) -> int:
    """Tasks a deployment at maxTaskCount starts beside the running ones: a rolling update up to
    deploymentMaximumPercent, a shifting strategy a whole green revision (ECS starts all of green before it moves
    any traffic, canary and linear included)."""
    rolling = math.ceil(s.max_task_count * s.deployment_maximum_percent / 100) - s.max_task_count
    shifting = s.max_task_count if {service_strategy(s), deployment_strategy(s)} & set(SHIFTING) else 0
    return max(rolling, shifting)
