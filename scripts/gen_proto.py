"""Regenerate the Python protobuf/gRPC code in src/forex from proto/ (the one command for generated code).

    python scripts/gen_proto.py          # regenerate
    python scripts/gen_proto.py --check  # exit 1 if the committed code differs from what proto/ generates (CI)
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "src" / "forex"


def generate(dest_root: Path) -> Path:
    """Run protoc for every .proto under proto/ into dest_root; return the generated `forex` package dir."""
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{PROTO}", f"-I{well_known}", f"--python_out={dest_root}", f"--pyi_out={dest_root}",
            f"--grpc_python_out={dest_root}", *files]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    pkg = dest_root / "forex"
    # Regular packages (not namespace ones) so setuptools and type checkers find every level.
    for d in [pkg, *(p for p in pkg.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return pkg


def differences(a: Path, b: Path) -> list[str]:
    names = lambda root: {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    left, right = names(a), names(b)
    out = [f"missing: {n}" for n in sorted(right - left)] + [f"stale: {n}" for n in sorted(left - right)]
    out += [f"differs: {n}" for n in sorted(left & right) if not filecmp.cmp(a / n, b / n, shallow=False)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if src/forex is not what proto/ generates")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        if check:
            diff = differences(OUT, fresh) if OUT.exists() else ["src/forex is missing"]
            if diff:
                print("generated code is stale; run `python scripts/gen_proto.py` and commit:", *diff, sep="\n  ")
                sys.exit(1)
            print("generated code is current")
            return
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(fresh, OUT)
        print(f"generated {sum(1 for _ in OUT.rglob('*.py*'))} files into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
