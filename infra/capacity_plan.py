"""The capacity plan: how many tasks fit on an instance, which limit binds, and how many instances the
service needs at its minimum and maximum task count on each capacity provider, and at the peak of a
deployment at the maximum (a rolling update runs up to deploymentMaximumPercent of the tasks; blue/green,
linear and canary run a full green revision beside blue).

Computed before deploy from real instance-type data. A plan whose peak cannot be placed within the groups'
maximum sizes is refused: otherwise scale-out stalls with tasks stuck in PROVISIONING, or a release never
finishes starting green.
"""

import math
from dataclasses import dataclass

from infra.instance_types import InstanceType, schedulable


@dataclass(frozen=True)
class TaskSize:
    cpu: int
    memory_mib: int
    gpus: int


@dataclass(frozen=True)
class Fit:
    tasks_per_instance: int
    binding_limit: str


@dataclass(frozen=True)
class GroupSpec:
    """One capacity provider: its instance types, its place in the strategy and its size limit."""

    name: str
    instance_types: tuple[InstanceType, ...]
    base: int
    weight: int
    max_instances: int


@dataclass(frozen=True)
class ProviderPlan:
    name: str
    instance_type: str
    tasks_per_instance: int
    binding_limit: str
    tasks_at_min: int
    tasks_at_max: int
    instances_at_min: int
    instances_at_max: int
    max_instances: int
    tasks_at_peak: int = 0  # during a deployment at the maximum; 0: not planned (the maximum counts)
    instances_at_peak: int = 0

    @property
    def placeable(self) -> bool:
        return max(self.tasks_at_max, self.tasks_at_peak) <= self.tasks_per_instance * self.max_instances

    def as_output(self) -> dict[str, object]:
        return {"instanceType": self.instance_type, "tasksPerInstance": self.tasks_per_instance,
                "bindingLimit": self.binding_limit, "tasksAtMin": self.tasks_at_min,
                "tasksAtMax": self.tasks_at_max, "instancesAtMin": self.instances_at_min,
                "instancesAtMax": self.instances_at_max, "maxInstances": self.max_instances,
                "tasksAtPeak": self.tasks_at_peak, "instancesAtPeak": self.instances_at_peak}


def fit(instance: InstanceType, task: TaskSize) -> Fit:
    """Tasks one instance holds and the resources that run out first (awsvpc: one ENI per task)."""
    cpu, memory = schedulable(instance)
    limits = {
        "cpu": cpu // task.cpu,
        "memory": memory // task.memory_mib,
        "network interfaces": instance.max_enis - 1,  # the instance keeps its primary ENI
    }
    if task.gpus:
        limits["gpus"] = instance.gpus // task.gpus
    fewest = min(limits.values())
    return Fit(max(0, fewest), ", ".join(name for name, count in limits.items() if count == fewest))


def split(tasks: int, groups: list[GroupSpec]) -> dict[str, int]:
    """Tasks per provider under an ECS strategy: bases first, the rest by weight (rounded up: worst case)."""
    placed = {group.name: 0 for group in groups}
    remaining = tasks
    for group in groups:
        base = min(group.base, remaining)
        placed[group.name] += base
        remaining -= base
    total_weight = sum(group.weight for group in groups)
    for group in groups:
        if total_weight and remaining:
            placed[group.name] += math.ceil(remaining * group.weight / total_weight)
    return placed


def instances_needed(tasks: int, tasks_per_instance: int, target_capacity_percent: int) -> int:
    """Instances managed scaling keeps: enough for the tasks, inflated so utilisation stays at the target."""
    if tasks == 0 or tasks_per_instance == 0:
        return 0
    return math.ceil(math.ceil(tasks / tasks_per_instance) * 100 / target_capacity_percent)


def plan(groups: list[GroupSpec], task: TaskSize, min_tasks: int, max_tasks: int,
         target_capacity_percent: int, extra_tasks: int | None = None) -> list[ProviderPlan]:
    """`extra_tasks`: tasks a deployment at the maximum starts beside the running ones (None: not planned)."""
    at_min, at_max = split(min_tasks, groups), split(max_tasks, groups)
    # The new tasks are placed by the same strategy, bases included (a green revision gets its own): worst case.
    extra = split(extra_tasks, groups) if extra_tasks is not None else None
    at_peak = ({name: count + extra[name] for name, count in at_max.items()} if extra is not None
               else dict.fromkeys(at_max, 0))
    plans = []
    for group in groups:
        # A mixed group can launch any of its types: plan for the one that holds the fewest tasks.
        tightest = min(group.instance_types, key=lambda instance: fit(instance, task).tasks_per_instance)
        group_fit = fit(tightest, task)
        plans.append(ProviderPlan(
            name=group.name, instance_type=tightest.name, tasks_per_instance=group_fit.tasks_per_instance,
            binding_limit=group_fit.binding_limit, tasks_at_min=at_min[group.name], tasks_at_max=at_max[group.name],
            instances_at_min=instances_needed(at_min[group.name], group_fit.tasks_per_instance,
                                              target_capacity_percent),
            instances_at_max=instances_needed(at_max[group.name], group_fit.tasks_per_instance,
                                              target_capacity_percent),
            max_instances=group.max_instances,
            tasks_at_peak=at_peak[group.name],
            instances_at_peak=instances_needed(at_peak[group.name], group_fit.tasks_per_instance,
                                               target_capacity_percent),
        ))
    return plans
