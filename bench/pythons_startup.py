"""Gateway start-up time on every far-side Python present, against the controller's own Python.

    python bench/pythons_startup.py [--rounds N]

For each interpreter found by tests/pythons.py (pyenv's 3.6 to 3.13, pypy3 on PATH) it prints the
median time from makegateway() to the first item received from a remote_exec, and the ratio of
that to the same for a plain ``popen`` gateway (the controller's interpreter). The bare start-up
of the interpreter (``python -c pass``) is shown beside it, since most of the difference is that.
Rounds are interleaved across interpreters so that drift of the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import execwire

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
pythons = importlib.import_module("pythons")  # the test suite's interpreter discovery


def gateway_start(group: execwire.Group, spec: str) -> float:
    """Seconds from makegateway to the first result of a remote_exec."""
    started = time.perf_counter()
    gateway = group.makegateway(spec)
    gateway.remote_exec("channel.send(1)").receive(timeout=60)
    elapsed = time.perf_counter() - started
    gateway.exit()
    return elapsed


def bare_start(argv: list[str]) -> float:
    """Seconds for ``python -c pass``: the interpreter's own start-up cost."""
    started = time.perf_counter()
    subprocess.run([*argv, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="starts per interpreter (default 9)")
    args = parser.parse_args()

    rows = [("controller", f"{sys.version.split()[0]} {sys.executable}", "popen", [sys.executable])]
    for interpreter in pythons.matrix():
        kind = "PyPy " if interpreter.implementation == "pypy" else ""
        rows.append((interpreter.name, f"{kind}{interpreter.version_text} {interpreter.command}",
                     f"popen//python={shlex.quote(interpreter.command)}", [interpreter.command]))

    group = execwire.Group()
    starts: dict[str, list[float]] = {name: [] for name, *_ in rows}
    bares: dict[str, list[float]] = {name: [] for name, *_ in rows}
    for _name, _, spec, _argv in rows:  # warm the file cache; not counted
        gateway_start(group, spec)
    for _ in range(args.rounds):
        for name, _, spec, argv in rows:
            starts[name].append(gateway_start(group, spec))
            bares[name].append(bare_start(argv))
    group.terminate(timeout=5)

    base = statistics.median(starts["controller"])
    print(f"median of {args.rounds} starts: makegateway -> first remote_exec result")
    print(f"{'far python':<12} {'start ms':>9} {'ratio':>6} {'bare ms':>8}  interpreter")
    for name, label, _, _ in rows:
        median = statistics.median(starts[name])
        print(f"{name:<12} {median * 1000:9.1f} {median / base:6.2f} {statistics.median(bares[name]) * 1000:8.1f}"
              f"  {label}")
    for name in pythons.missing():
        print(f"{name:<12} {'missing':>9}")


if __name__ == "__main__":
    main()
