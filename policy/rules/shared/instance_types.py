"""EC2 instance types, from AWS's DescribeInstanceTypes data in instance_types.json.

`tools/instance_types.py` regenerates the file; the tests check it against AWS's published data.
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "instance_types.json"

# Held back for the ECS agent, the OS and Docker: ECS registers less memory than the instance has, and a
# task sized to the full amount stays PENDING forever.
AGENT_RESERVED_CPU_UNITS = 128
AGENT_RESERVED_MEMORY_FRACTION = 0.10
AGENT_RESERVED_MEMORY_MIN_MIB = 384


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_mib: int
    max_enis: int
    gpus: int
    architecture: str

    @property
    def cpu_units(self) -> int:
        return self.vcpus * 1024


@functools.cache
def instance_types() -> dict[str, InstanceType]:
    rows = json.loads(DATA_FILE.read_text())
    return {name: InstanceType(name, *row) for name, row in rows.items()}


def schedulable(instance: InstanceType) -> tuple[int, int]:
    """CPU units and MiB of memory tasks can use on one instance of this type."""
    reserved_memory = max(AGENT_RESERVED_MEMORY_MIN_MIB, int(instance.memory_mib * AGENT_RESERVED_MEMORY_FRACTION))
    return instance.cpu_units - AGENT_RESERVED_CPU_UNITS, instance.memory_mib - reserved_memory
