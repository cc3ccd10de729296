"""The gRPC contract's breaking-change gate: `buf breaking` against a committed baseline, proto/baseline.json.

    python scripts/proto_baseline.py --check             # CI: fail on a breaking change, or a baseline not updated
    python scripts/proto_baseline.py                     # record a compatible change in the baseline
    python scripts/proto_baseline.py --breaking "why"    # record a deliberate break (listed in docs/breaking-changes.md)

Why a committed baseline rather than a git ref: CI runs on a clean clone that may be shallow or lack main's history
(`.git#ref=HEAD~1` or a merge-base then does not exist), and comparing with the previous commit lets a break made in
two commits through. The baseline is the contract consumers were last given, as a buf image in JSON (reviewable in a
diff), and it moves only when someone runs this script, like the OpenAPI snapshots; a break also needs a reason,
which is kept in docs/breaking-changes.md. The rules are buf.yaml's `breaking` section.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "proto" / "baseline.json"
LOG = ROOT / "docs" / "breaking-changes.md"
LOG_HEAD = ("# Breaking changes of the gRPC contract\n\nEach entry was recorded by `python scripts/proto_baseline.py "
            "--breaking \"why\"`; `buf breaking` lists what changed.\n")


def _buf(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["npx", "--no-install", "buf", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    except FileNotFoundError:
        sys.exit("npx is not installed: run scripts/install.sh (Node and @bufbuild/buf)")


def current_image() -> str:
    """The protos as a buf image in JSON (no source info: comments may change freely), indented for diffs."""
    built = _buf("build", "--exclude-source-info", "-o", "-#format=json")
    if built.returncode != 0:
        sys.exit(f"buf build failed:\n{built.stderr}")
    return json.dumps(json.loads(built.stdout), indent=1) + "\n"


def breaks() -> list[str]:
    """What `buf breaking` reports against the baseline (empty: compatible)."""
    if not BASELINE.exists():
        sys.exit(f"{BASELINE.relative_to(ROOT)} is missing: run `python scripts/proto_baseline.py` once")
    result = _buf("breaking", "--against", str(BASELINE.relative_to(ROOT)))
    if result.returncode not in (0, 100) or (result.returncode == 100 and not result.stdout.strip()):
        sys.exit(f"buf breaking could not run:\n{result.stderr or result.stdout}")
    return result.stdout.strip().splitlines() if result.returncode else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail on a breaking change or a stale baseline")
    parser.add_argument("--breaking", metavar="WHY", help="record a deliberate break, with the reason consumers get")
    args = parser.parse_args()
    found = breaks() if BASELINE.exists() or args.check else []
    if args.check:
        if found:
            print("breaking changes to the gRPC contract (against proto/baseline.json):", *found, sep="\n  ")
            sys.exit("if this break is deliberate, run `python scripts/proto_baseline.py --breaking \"why\"` and "
                     "commit; otherwise keep the old field numbers, names and types (add, do not change)")
        if BASELINE.read_text() != current_image():
            sys.exit("proto/ changed compatibly but proto/baseline.json was not updated: run "
                     "`python scripts/proto_baseline.py` and commit")
        print("gRPC contract: no breaking change, baseline current")
        return
    if found and not args.breaking:
        print("breaking changes:", *found, sep="\n  ")
        sys.exit("refusing to record a break without a reason: add --breaking \"why\"")
    if found:
        log = LOG.read_text() if LOG.exists() else LOG_HEAD
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text(log + f"\n## {date.today().isoformat()}: {args.breaking}\n\n"
                       + "".join(f"- {line}\n" for line in found))
    BASELINE.write_text(current_image())
    print(f"wrote {BASELINE.relative_to(ROOT)}" + (f"; {len(found)} break(s) logged in {LOG.relative_to(ROOT)}"
                                                   if found else ""))


if __name__ == "__main__":
    main()
