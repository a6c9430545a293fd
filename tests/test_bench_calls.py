"""bench/calls.py runs end to end (with few calls) and prints every figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "calls.py"
pytestmark = pytest.mark.timeout(120)


def test_calls_bench_prints_every_figure() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, str(SCRIPT), "--calls", "200", "--naps", "8"], capture_output=True,
                            text=True, timeout=110, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("import 100 modules (__init__ imports all): forwarded cold 1 round trips" in line for line in lines)
    assert any("import 100 modules (each imported by the code): forwarded cold 1 round trips" in line
               for line in lines)
    assert any("via: 4 gateways behind one middle import 100 modules" in line for line in lines)
    assert any("via: 3 more gateways started behind it" in line for line in lines)
    assert sum("map of 200 tiny calls" in line for line in lines) == 4
    assert any(line.startswith("8 calls of 50 ms over 4 gateways") for line in lines)
    assert any(line.startswith("200 calls one after another: threaded") and " aio " in line for line in lines)
    assert sum("group.map, 200 tiny calls over 4 gateways" in line for line in lines) == 2
