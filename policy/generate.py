"""Regenerate what the pack derives from elsewhere: `python -m policy.generate [--check]` from the repository root.

- rules/shared/: unchanged copies of the infra/ files the pack needs (rules/shared/__init__.py lists them), so a
  published pack carries them;
- the policy table of policy/README.md and the policy counts of README.md, from the pack's own policies.

With --check nothing is written: the command lists what is stale and exits 1. The pack never imports this
module (it runs only from a checkout).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from pulumi_policy import Policy

POLICY_DIR = Path(__file__).resolve().parent
ROOT = POLICY_DIR.parent
SHARED_DIR = POLICY_DIR / "rules" / "shared"
PACK_README = POLICY_DIR / "README.md"
PROJECT_README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- policy-table:begin (python -m policy.generate) -->", "<!-- policy-table:end -->"
# The sentence of README.md's guardrails section that counts the policies: "<n> security and reliability
# policies ... and <m> deployability policies" (line breaks anywhere).
COUNTS = re.compile(r"(\d+)(\s+security\s+and\s+reliability\s+policies\b.*?\band\s+)(\d+)"
                    r"(\s+deployability\s+policies)", re.S)


def shared_copies() -> dict[Path, str]:
    from policy.rules.shared import COPIES  # noqa: PLC0415 - after the path setup of `main`

    return {SHARED_DIR / copy: (ROOT / source).read_text() for source, copy in COPIES}


def description_and_sources(policy: Policy) -> tuple[str, str]:
    description, _, sources = (policy.description or "").partition(" Sources: ")
    return description.strip(), sources.strip().rstrip(".")


def policy_table(policies: Iterable[Policy]) -> str:
    rows = ["| policy | kind | what it checks | sources |", "|---|---|---|---|"]
    for policy in policies:
        description, sources = description_and_sources(policy)
        kind = (policy.tags or ["?"])[0]
        rows.append(f"| `{policy.name}` | {kind} | {description.replace('|', '/')} | {sources} |")
    return "\n".join(rows)


def with_table(text: str, table: str) -> str:
    begin, end = text.index(TABLE_BEGIN), text.index(TABLE_END)
    return f"{text[:begin]}{TABLE_BEGIN}\n{table}\n{text[end:]}"


def with_counts(text: str, policies: list[Policy]) -> str:
    security = sum(1 for p in policies if (p.tags or [""])[0] == "security")
    deployability = len(policies) - security
    text, found = COUNTS.subn(lambda m: f"{security}{m.group(2)}{deployability}{m.group(4)}", text, count=1)
    assert found, "README.md: the guardrails section must count the policies"
    return text


def expected_files() -> dict[Path, str]:
    from policy.rules import POLICIES  # noqa: PLC0415

    files = shared_copies()
    files[PACK_README] = with_table(PACK_README.read_text(), policy_table(POLICIES))
    files[PROJECT_README] = with_counts(PROJECT_README.read_text(), POLICIES)
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    return [path for path, text in files.items() if not path.exists() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    files = expected_files()
    outdated = stale(files)
    for path in outdated:
        if args.check:
            print(f"stale: {path.relative_to(ROOT)} (run python -m policy.generate)")
        else:
            path.write_text(files[path])
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if args.check and outdated else 0


if __name__ == "__main__":
    sys.exit(main())
