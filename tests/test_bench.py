"""The benchmark script runs end to end: every workload, every target line, exit status 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# generous bounds: the quick round takes ~4 s idle but over 18 s on a busy 2-core machine with cold caches
pytestmark = pytest.mark.timeout(150)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"
WORKLOAD_TITLES = (
    "[1] gateway start to first result, then exit",
    "[2] round trip of a small item on one channel",
    "[3] remote_exec of a one-liner on a warm gateway",
    "[4] one-way 1 MiB bytes items",
    "[5] one-way small tuples",
    "[6] group of 8 popen gateways",
    "[7] far-side idle RSS after start",
)


def test_one_quick_round_prints_every_workload_and_target(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    chart = tmp_path / "bench.png"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--rounds", "1", "--systems", "execwire,execnet,raw,bare",
         "--json", str(report), "--chart", str(chart)],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for title in WORKLOAD_TITLES:
        assert title in result.stdout, f"{title!r} missing from:\n{output}"
    summary = result.stdout.split("== issue 5 targets")[1]
    target_lines = [line for line in summary.splitlines() if line.startswith("  [")]
    assert len(target_lines) == 9, summary
    for line in target_lines:
        assert line.rstrip().endswith(("met", "MISSED")) or "(needs" in line, line

    document = json.loads(report.read_text(encoding="utf-8"))
    for key, workload in document["workloads"].items():
        execwire = workload["systems"]["execwire"]
        assert "error" not in execwire, (key, execwire)
        assert execwire["median"] > 0, (key, execwire)
    assert set(document["workloads"]) == {"start", "roundtrip", "oneliner", "bulk", "tuples", "group", "rss"}

    if "chart skipped" not in result.stdout:
        assert chart.read_bytes().startswith(b"\x89PNG"), output


def test_a_bad_option_names_the_choices() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--systems", "execwire,nosuch"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown system 'nosuch'" in result.stderr
    assert "execnet" in result.stderr
