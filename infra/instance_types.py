"""EC2 instance types the stack can validate a task size against.

Values are from the EC2 instance-type documentation (vCPUs, memory, maximum network interfaces, GPUs).
Validation refuses a type that is not listed rather than guessing its size: add a row to use another.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_mib: int
    max_enis: int
    gpus: int = 0

    @property
    def cpu_units(self) -> int:
        return self.vcpus * 1024


INSTANCE_TYPES: dict[str, InstanceType] = {
    "t3.small": InstanceType(2, 2048, 3),
    "t3.medium": InstanceType(2, 4096, 3),
    "t3.large": InstanceType(2, 8192, 3),
    "t3.xlarge": InstanceType(4, 16384, 4),
    "t3.2xlarge": InstanceType(8, 32768, 4),
    "m6i.large": InstanceType(2, 8192, 3),
    "m6i.xlarge": InstanceType(4, 16384, 4),
    "m6i.2xlarge": InstanceType(8, 32768, 4),
    "m6i.4xlarge": InstanceType(16, 65536, 8),
    "m7i.large": InstanceType(2, 8192, 3),
    "m7i.xlarge": InstanceType(4, 16384, 4),
    "m7i.2xlarge": InstanceType(8, 32768, 4),
    "m7i.4xlarge": InstanceType(16, 65536, 8),
    "c6i.large": InstanceType(2, 4096, 3),
    "c6i.xlarge": InstanceType(4, 8192, 4),
    "c6i.2xlarge": InstanceType(8, 16384, 4),
    "c6i.4xlarge": InstanceType(16, 32768, 8),
    "c7i.large": InstanceType(2, 4096, 3),
    "c7i.xlarge": InstanceType(4, 8192, 4),
    "c7i.2xlarge": InstanceType(8, 16384, 4),
    "c7i.4xlarge": InstanceType(16, 32768, 8),
    "r6i.large": InstanceType(2, 16384, 3),
    "r6i.xlarge": InstanceType(4, 32768, 4),
    "r6i.2xlarge": InstanceType(8, 65536, 4),
    "g4dn.xlarge": InstanceType(4, 16384, 3, gpus=1),
    "g4dn.2xlarge": InstanceType(8, 32768, 3, gpus=1),
    "g4dn.12xlarge": InstanceType(48, 196608, 8, gpus=4),
    "g5.xlarge": InstanceType(4, 16384, 4, gpus=1),
    "g5.2xlarge": InstanceType(8, 32768, 4, gpus=1),
    "g5.12xlarge": InstanceType(48, 196608, 15, gpus=4),
    "g6.xlarge": InstanceType(4, 16384, 4, gpus=1),
    "g6.2xlarge": InstanceType(8, 32768, 4, gpus=1),
}

# Held back for the ECS agent, the OS and Docker: ECS registers less memory than the instance has, and a
# task sized to the full amount stays PENDING forever.
AGENT_RESERVED_CPU_UNITS = 128
AGENT_RESERVED_MEMORY_FRACTION = 0.10
AGENT_RESERVED_MEMORY_MIN_MIB = 384


def schedulable(instance: InstanceType) -> tuple[int, int]:
    """CPU units and MiB of memory a task can use on one instance of this type."""
    reserved_memory = max(AGENT_RESERVED_MEMORY_MIN_MIB, int(instance.memory_mib * AGENT_RESERVED_MEMORY_FRACTION))
    return instance.cpu_units - AGENT_RESERVED_CPU_UNITS, instance.memory_mib - reserved_memory


def tasks_per_instance(instance: InstanceType, task_cpu: int, task_memory_mib: int) -> int:
    """awsvpc tasks one instance holds: each needs its own ENI besides the instance's primary one."""
    cpu, memory = schedulable(instance)
    return max(0, min(cpu // task_cpu, memory // task_memory_mib, instance.max_enis - 1))
