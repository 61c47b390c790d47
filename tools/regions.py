"""Regenerate infra/regions.json: every AWS region botocore knows, with what the settings check against it.

    venv/bin/python -m tools.regions            # rewrite infra/regions.json
    venv/bin/python -m tools.regions --check    # exit 1 when it is stale (a newer botocore knows more regions)

Per region: its partition, how many Availability Zones an account can use there (`availabilityZoneCount`
must not exceed it; null where AWS does not publish it) and the account ELB delivers access logs from
(`albAccessLogs`; null for regions opened after August 2022, where the log-delivery service principal
delivers them instead). The region list comes from botocore's partition data; the two columns from AWS's documentation:
https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-availability-zones.html and
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html
"""

import json
import sys
from pathlib import Path
from typing import Any

import botocore

OUTPUT = Path(__file__).resolve().parent.parent / "infra" / "regions.json"

# AZs available to a new account (us-west-1 and ap-northeast-1 have one more AZ that new accounts cannot use).
AVAILABILITY_ZONES = {
    "af-south-1": 3, "ap-east-1": 3, "ap-east-2": 3, "ap-northeast-1": 3, "ap-northeast-2": 4, "ap-northeast-3": 3,
    "ap-south-1": 3, "ap-south-2": 3, "ap-southeast-1": 3, "ap-southeast-2": 3, "ap-southeast-3": 3,
    "ap-southeast-4": 3, "ap-southeast-5": 3, "ap-southeast-6": 3, "ap-southeast-7": 3, "ca-central-1": 3,
    "ca-west-1": 3, "eu-central-1": 3, "eu-central-2": 3, "eu-north-1": 3, "eu-south-1": 3, "eu-south-2": 3,
    "eu-west-1": 3, "eu-west-2": 3, "eu-west-3": 3, "il-central-1": 3, "me-central-1": 3, "me-south-1": 3,
    "mx-central-1": 3, "sa-east-1": 3, "us-east-1": 6, "us-east-2": 3, "us-west-1": 2, "us-west-2": 4,
    "cn-north-1": 3, "cn-northwest-1": 3, "us-gov-east-1": 3, "us-gov-west-1": 3,
}
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580", "ap-south-1": "718504428378", "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-south-1": "635631232127",
    "eu-west-3": "009996457667", "eu-north-1": "897822967062", "me-south-1": "076674570225",
    "sa-east-1": "507241528517", "us-gov-west-1": "048591011584", "us-gov-east-1": "190560391635",
    "cn-north-1": "638102146993", "cn-northwest-1": "037604701340",
}


def regions() -> dict[str, dict[str, Any]]:
    # botocore's partitions.json: every region of every partition (7 KB; its endpoints.json is 1.2 MB).
    partitions = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    table = {}
    for partition in partitions["partitions"]:
        for region in partition["regions"]:
            if not region.endswith("-global"):  # pseudo-regions of global endpoints
                table[region] = {"partition": partition["id"], "availabilityZones": AVAILABILITY_ZONES.get(region),
                                 "elbLogAccount": ELB_LOG_ACCOUNTS.get(region)}
    return dict(sorted(table.items()))


def render() -> str:
    lines = ",\n".join(f"{json.dumps(name)}:{json.dumps(row, separators=(',', ':'))}"
                       for name, row in regions().items())
    return "{" + lines + "}\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run venv/bin/python -m tools.regions", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
