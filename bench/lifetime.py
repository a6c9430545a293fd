"""What the far side's watchdog costs, and how fast a far side goes once its controller is killed.

For each far Python found (this interpreter, and 3.6, 3.13 and PyPy 3 when present):

- death: a controller process starts a popen gateway whose code prints in a loop, holds the
  interpreter lock in C (``sum(range(10**14))``), ignores signals on the far main thread, or idles;
  the controller gets SIGKILL; the time until the far process and its watchdog are gone is measured
  (median of the rounds);
- memory: VmRSS of the far process, and of its watchdog VmRSS, Pss and private memory, right after
  start-up and after the far side ran a full garbage collection (which rewrites its object pages);
- fork: how long ``os.fork()`` takes in a far process of that size (the watchdog's start-up cost).

    python bench/lifetime.py [--rounds N]

Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pythons  # noqa: E402

import execwire  # noqa: E402

SRC = str(Path(execwire.__file__).resolve().parent.parent)
BEHAVIOURS = {
    "idle": ("", "channel.send('ready')\nimport time\ntime.sleep(600)\n"),
    "prints": ("", "channel.send('ready')\nwhile True:\n    print('x' * 200)\n"),
    "holds-gil": ("", "channel.send('ready')\nsum(range(10 ** 14))\n"),
    "ignores-signals": ("//execmodel=main_thread_only",
                        "import signal\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
                        "    signal.signal(s, signal.SIG_IGN)\nchannel.send('ready')\nwhile True:\n    pass\n"),
}
CONTROLLER = textwrap.dedent("""
    import sys, time, execwire
    gw = execwire.makegateway(sys.argv[1])
    channel = gw.remote_exec(sys.argv[2])
    sys.stderr.write("%d\\n" % gw.remote_info().pid)
    sys.stderr.write(channel.receive(30) + "\\n")
    sys.stderr.flush()
    time.sleep(600)
""")
FORK_COST = textwrap.dedent("""
    import os, time
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        samples.append(time.perf_counter() - started)
        os.waitpid(pid, 0)
    samples.sort()
    channel.send(samples[len(samples) // 2])
""")


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def group_of(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and not gone(int(name)):
            try:
                with open(f"/proc/{name}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        members.append(int(name))
            except FileNotFoundError:
                pass
    return members


def field(pid: int, name: str, file: str) -> int:
    with open(f"/proc/{pid}/{file}") as source:
        for line in source:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def time_to_death(spec: str, code: str) -> float:
    env = {**os.environ, "PYTHONPATH": SRC}
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, spec, code], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=env, bufsize=0)
    assert controller.stderr is not None
    try:
        lines = []
        for _ in range(2):
            ready, _, _ = select.select([controller.stderr], [], [], 60)
            if not ready:
                raise RuntimeError(f"the controller for {spec} did not report")
            lines.append(controller.stderr.readline().decode().strip())
        members = group_of(int(lines[0]))
        controller.kill()
        killed = time.monotonic()
        while not all(map(gone, members)):
            if time.monotonic() - killed > 30:
                for pid in members:
                    if not gone(pid):
                        os.kill(pid, signal.SIGKILL)
                return float("inf")
            time.sleep(0.001)
        return time.monotonic() - killed
    finally:
        controller.kill()
        controller.wait()
        controller.stderr.close()


def memory(spec: str) -> dict[str, float]:
    group = execwire.Group()
    try:
        gateway = group.makegateway(spec)
        far = gateway.remote_info().pid
        gateway.remote_exec("x = 1").waitclose(30)
        watchdog = next(pid for pid in group_of(far) if pid != far)
        figures = {"far VmRSS": field(far, "VmRSS", "status") / 1024,
                   "watchdog VmRSS": field(watchdog, "VmRSS", "status") / 1024,
                   "watchdog Pss": field(watchdog, "Pss", "smaps_rollup") / 1024,
                   "watchdog private": (field(watchdog, "Private_Dirty", "smaps_rollup")
                                        + field(watchdog, "Private_Clean", "smaps_rollup")) / 1024}
        gateway.remote_exec("import gc; gc.collect()").waitclose(30)
        figures["watchdog private after gc"] = (field(watchdog, "Private_Dirty", "smaps_rollup")
                                                + field(watchdog, "Private_Clean", "smaps_rollup")) / 1024
        figures["fork ms"] = gateway.remote_exec(FORK_COST).receive(30) * 1000
        return figures
    finally:
        group.terminate(5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fars = [("this", "popen")] + [(interpreter.name, f"popen//python={shlex.quote(interpreter.command)}")
                                  for interpreter in pythons.matrix() if interpreter.name in ("3.6", "3.13", "pypy3")]
    print(f"controller: Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    print("\nseconds from the controller's SIGKILL until the far process and its watchdog are gone (median):")
    print(f"{'far':>8}  " + "  ".join(f"{name:>16}" for name in BEHAVIOURS))
    for name, spec in fars:
        row = []
        for extra, code in BEHAVIOURS.values():
            row.append(statistics.median(time_to_death(spec + extra, code) for _ in range(args.rounds)))
        print(f"{name:>8}  " + "  ".join(f"{value:16.3f}" for value in row))
    print("\nmemory (MB) and the cost of a fork in the far process:")
    for name, spec in fars:
        figures = memory(spec)
        print(f"{name:>8}  " + ", ".join(f"{key} {value:.1f}" if "ms" not in key else f"{key} {value:.2f}"
                                        for key, value in figures.items()))


if __name__ == "__main__":
    main()
