"""Which Python interpreters the far-side matrix can run on, and a report of which ran.

Two roles, one module so that both agree on the names:

- a helper: ``discover()`` finds pyenv's interpreters (``$(pyenv root)/versions/X.Y.Z/bin/python``),
  ``pythonX.Y`` on PATH as a fallback, and ``pypy3`` on PATH, and asks each one what it is;
- a pytest plugin (``pytest_plugins = ["pythons"]`` in tests/test_pythons.py): at the end of the
  run it prints which interpreters ran, which were missing, and warns loudly when none of the
  old ones (3.6 to 3.9) was found, because then the matrix proved nothing about them.

Nothing here starts a gateway; the interpreters are only asked for their version.
(PYTEST_DONT_REWRITE: the test module imports this before pytest loads it as a plugin.)
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPPORTED = ("3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
OLD_SUPPORTED = ("3.6", "3.7", "3.8", "3.9")  # CI must have at least one of these
TOO_OLD = ("2.7", "3.5")  # must be refused at once, by name
PYPY = "pypy3"
MINIMUM = (3, 6)
PROPERTY = "far_python"  # user property that ties a test report to an interpreter

# valid Python 2 and 3: version, implementation, executable
_PROBE = (
    "import sys, platform; sys.stdout.write('%d.%d.%d %s %s' % (tuple(sys.version_info[:3]) + "
    "(platform.python_implementation().lower(), sys.executable)))"
)


@dataclass(frozen=True)
class Interpreter:
    """One interpreter found on this machine."""

    name: str  # "3.8", "2.7" or "pypy3": what the matrix calls it
    command: str  # what to put after python= (an absolute path)
    executable: str  # its own sys.executable
    version: tuple[int, int, int]  # language version (PyPy reports the Python it implements)
    implementation: str  # "cpython" or "pypy"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def describe(self) -> str:
        kind = "PyPy" if self.implementation == "pypy" else "CPython"
        return f"{self.name} ({kind} {self.version_text}, {self.command})"


def probe(argv: list[str], timeout: float = 30.0) -> Interpreter | None:
    """Ask the interpreter started by ``argv`` what it is; None if it does not answer like a Python."""
    try:
        result = subprocess.run([*argv, "-E", "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+) (\S+) (.*)", result.stdout.strip())
    if result.returncode != 0 or match is None:
        return None
    major, minor, micro, implementation, executable = match.groups()
    version = (int(major), int(minor), int(micro))
    name = PYPY if implementation == "pypy" else f"{major}.{minor}"
    return Interpreter(name, argv[0], executable, version, implementation)


def pyenv_root() -> Path | None:
    """``pyenv root`` if pyenv is installed, else $PYENV_ROOT, else ~/.pyenv if it exists."""
    if shutil.which("pyenv"):
        try:
            out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if out:
            return Path(out)
    for candidate in (os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")):
        if candidate and Path(candidate, "versions").is_dir():
            return Path(candidate)
    return None


def _pyenv_candidates() -> dict[str, Path]:
    """X.Y -> the newest pyenv build of it (plain X.Y.Z directories only, no 3.13t or pypy)."""
    root = pyenv_root()
    if root is None:
        return {}
    newest: dict[str, tuple[int, Path]] = {}
    for folder in (root / "versions").glob("*"):
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", folder.name)
        python = folder / "bin" / "python"
        if match is None or not os.access(python, os.X_OK):
            continue
        name, micro = f"{match[1]}.{match[2]}", int(match[3])
        if name not in newest or micro > newest[name][0]:
            newest[name] = (micro, python)
    return {name: python for name, (_, python) in newest.items()}


def _on_path(command: str) -> str | None:
    """``command`` on PATH, ignoring pyenv's shims (they only run the versions found above)."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).name != "shims")
    return shutil.which(command, path=path)


@functools.cache
def discover() -> dict[str, Interpreter]:
    """Every wanted interpreter present here, by matrix name, each verified by running it."""
    found: dict[str, Interpreter] = {}
    pyenv = _pyenv_candidates()
    for name in TOO_OLD + SUPPORTED:
        command = str(pyenv[name]) if name in pyenv else _on_path(f"python{name}")
        info = probe([command]) if command else None
        if info is not None and info.name == name and info.implementation == "cpython":
            found[name] = info
    command = _on_path(PYPY)
    info = probe([command]) if command else None
    if info is not None and info.implementation == "pypy" and info.version[0] == 3:
        found[PYPY] = info
    return found


def matrix() -> list[Interpreter]:
    """The interpreters the far side must work on (3.6 to 3.13 and PyPy 3) that are present."""
    present = discover()
    return [present[name] for name in (*SUPPORTED, PYPY) if name in present]


def too_old() -> list[Interpreter]:
    """Interpreters older than the minimum that are present (they must be refused)."""
    present = discover()
    return [present[name] for name in TOO_OLD if name in present]


def missing() -> list[str]:
    """Names of wanted interpreters that are not on this machine."""
    present = discover()
    return [name for name in (*SUPPORTED, PYPY, *TOO_OLD) if name not in present]


def old_supported_present() -> list[Interpreter]:
    present = discover()
    return [present[name] for name in OLD_SUPPORTED if name in present]


def in_ci() -> bool:
    """True when the CI environment variable says so (CI=1, CI=true, ...)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def no_old_python_message() -> str:
    return (f"none of Python {', '.join(OLD_SUPPORTED)} was found (looked in $(pyenv root)/versions and "
            f"on PATH), so the far side was not tested on the old interpreters it promises to support; "
            f"install them with pyenv")


# -- the pytest plugin ----------------------------------------------------------------------------------
_outcomes: dict[str, dict[str, str]] = {}  # interpreter name -> nodeid -> outcome


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag every test parametrized with an Interpreter, so its reports say which one it ran on."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        for value in callspec.params.values():
            if isinstance(value, Interpreter):
                item.user_properties.append((PROPERTY, value.name))
                break


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = dict(report.user_properties).get(PROPERTY)
    if name is None:
        return
    outcomes = _outcomes.setdefault(str(name), {})
    previous = outcomes.get(report.nodeid)
    if report.failed:
        outcomes[report.nodeid] = "failed"
    elif previous != "failed" and (report.skipped or report.when == "call"):
        outcomes[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which interpreters ran and which were missing; warn loudly if the old ones were absent."""
    no_old = not old_supported_present()
    if not _outcomes and not no_old:
        return
    write = terminalreporter.write_line
    terminalreporter.section("execwire far-side pythons")
    present = discover()
    for name in (*SUPPORTED, PYPY, *TOO_OLD):
        if name not in present:
            continue
        counts = Counter(_outcomes.get(name, {}).values())
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no test selected"
        label = "not run" if not counts else "too old" if name in TOO_OLD else "ran"
        write(f"{label:>16}: {present[name].describe()}: {summary}", red=bool(counts["failed"]))
    if missing():
        write(f"{'missing':>16}: {', '.join(missing())}", yellow=True)
    if no_old:
        terminalreporter.write_sep("!", "WARNING: no old Python on this machine", red=True, bold=True)
        write("WARNING: " + no_old_python_message(), red=True, bold=True)
