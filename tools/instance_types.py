"""Regenerate infra/instance_types.json from EC2's DescribeInstanceTypes.

    venv/bin/python -m tools.instance_types            # with AWS credentials: the live catalogue

The committed file holds, per virtualised x86_64 or arm64 type, what the capacity plan needs:
vCPUs, memory, maximum network interfaces (awsvpc tasks take one each), GPUs and architecture. The tests
check it against the copy of AWS's data that moto ships, so the stacks validate offline with real numbers.
"""

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import boto3

OUTPUT = Path(__file__).resolve().parent.parent / "infra" / "instance_types.json"
ARCHITECTURES = ("x86_64", "arm64")


def describe(client: Any, instance_types: Iterable[str] | None = None) -> dict[str, list[Any]]:
    """type -> [vcpus, memory_mib, max_enis, gpus, architecture] for every virtualised x86_64/arm64 type."""
    request: dict[str, Any] = {"InstanceTypes": sorted(instance_types)} if instance_types else {}
    rows: dict[str, list[Any]] = {}
    for page in client.get_paginator("describe_instance_types").paginate(**request):
        for item in page["InstanceTypes"]:
            architecture = next((a for a in item["ProcessorInfo"]["SupportedArchitectures"] if a in ARCHITECTURES),
                                None)
            if architecture is None or item.get("BareMetal"):
                continue
            gpus = sum(gpu["Count"] for gpu in item.get("GpuInfo", {}).get("Gpus", [])
                       if gpu.get("Manufacturer") == "NVIDIA")
            rows[item["InstanceType"]] = [item["VCpuInfo"]["DefaultVCpus"], item["MemoryInfo"]["SizeInMiB"],
                                          item["NetworkInfo"]["MaximumNetworkInterfaces"], gpus, architecture]
    return dict(sorted(rows.items()))


def main() -> int:
    rows = describe(boto3.client("ec2"))
    OUTPUT.write_text(json.dumps(rows, separators=(",", ":")).replace("],", "],\n") + "\n")
    print(f"wrote {len(rows)} instance types to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
