"""The breaking-change gate (scripts/proto_baseline.py, run by CI) in a scratch copy of the repository: a committed
breaking proto change fails it, a compatible one passes once recorded, and a deliberate break needs a reason."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTO = "proto/forex/market_analysis/v1/market_analysis.proto"
pytestmark = pytest.mark.timeout(300)  # several buf runs per test, each a Go process reading every proto


@pytest.fixture
def scratch(tmp_path) -> Path:
    if not (ROOT / "node_modules" / ".bin" / "buf").exists():
        pytest.fail("buf is not installed: run scripts/install.sh (npm install of @bufbuild/buf)")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "proto", repo / "proto")
    (repo / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "proto_baseline.py", repo / "scripts")
    shutil.copy(ROOT / "buf.yaml", repo)
    (repo / "node_modules").symlink_to(ROOT / "node_modules")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the contract as committed")
    return repo


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=repo, check=True,
                   timeout=60)


def gate(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/proto_baseline.py", *args], cwd=repo, capture_output=True,
                          text=True, timeout=300)


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / PROTO
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    git(repo, "commit", "-qam", f"change: {new.strip()}")


def test_the_committed_contract_passes(scratch):
    result = gate(scratch, "--check")
    assert result.returncode == 0, result.stderr
    assert "no breaking change" in result.stdout


@pytest.mark.parametrize(("old", "new", "reported"), [
    ("  int32 limit = 4;", "  int64 limit = 4;", 'Field "4" with name "limit" on message "GetCandlesRequest" changed type'),
    ("  string page_token = 5;", "  string page_token = 6;", 'Previously present field "5" with name "page_token"'),
])
def test_a_breaking_change_fails_the_gate_until_recorded_with_a_reason(scratch, old, new, reported):
    edit(scratch, old, new)
    result = gate(scratch, "--check")
    assert result.returncode == 1
    assert reported in result.stdout and "--breaking" in result.stderr
    refused = gate(scratch)  # recording it without a reason is refused, and changes nothing
    assert refused.returncode == 1 and "without a reason" in refused.stderr
    recorded = gate(scratch, "--breaking", "limit may exceed 2^31")
    assert recorded.returncode == 0, recorded.stderr
    log = (scratch / "docs" / "breaking-changes.md").read_text()
    assert "limit may exceed 2^31" in log and reported in log
    assert gate(scratch, "--check").returncode == 0


def test_a_compatible_change_passes_once_recorded(scratch):
    edit(scratch, "  string page_token = 5;\n}", "  string page_token = 5;\n  // Free text, ignored.\n  string note = 6;\n}")
    stale = gate(scratch, "--check")
    assert stale.returncode == 1 and "changed compatibly" in stale.stderr and "breaking changes" not in stale.stdout
    recorded = gate(scratch)
    assert recorded.returncode == 0, recorded.stderr
    assert not (scratch / "docs" / "breaking-changes.md").exists()
    assert gate(scratch, "--check").returncode == 0
