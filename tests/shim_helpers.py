"""Run Python code the way an execnet user would: in a fresh process with the execnet package on PYTHONPATH.

The test process itself may have the real execnet loaded (pytest-xdist's
plugin imports it), so every use of the execnet package happens in a child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import execwire
from execwire._execnet import shim_path

SRC = str(Path(execwire.__file__).resolve().parent.parent)


def shim_env(**extra: str) -> dict[str, str]:
    """Our environment with the execnet package (and these sources of execwire) first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([shim_path(), SRC] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("EXECWIRE_DEBUG", None)
    env.update(extra)
    return env


def run_with_shim(code: str, timeout: float = 90, cwd: Path | None = None,
                  **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter that imports the execnet package; fail the test if it fails."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=shim_env(**extra), cwd=cwd,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result
