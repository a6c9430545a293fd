"""Benchmark execwire against execnet, mitogen, rpyc and a raw pipe between two Pythons.

Every workload runs through each system in interleaved rounds (round 1: execwire,
execnet, raw, ...; round 2 starts one system later; ...), so slow drift of this
noisy machine hits all of them alike. It prints, per workload, the issue 5 targets
with met/MISSED and the ratios first, then the medians; at the end a summary.

    python bench/bench.py [--rounds N] [--quick] [--json FILE] [--chart FILE.png]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _systems  # noqa: E402
from _report import summary, workload_block, write_chart  # noqa: E402
from _systems import ALL_SYSTEMS, Connection, System, Unavailable  # noqa: E402
from _workloads import BY_KEY, WORKLOADS, Workload, calibrated_count, connection_sample, process_sample  # noqa: E402

SHORT_NAMES = {"execwire": "execwire", "execnet": "execnet", "raw": "raw pipe", "bare": "bare python",
               "mitogen": "mitogen", "rpyc": "rpyc"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Run the same workloads through execwire, execnet, mitogen, rpyc and a raw pipe, "
                    "interleaved, and print medians and ratios against the issue 5 targets.")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per workload (default 7, or 3 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter samples and fewer rounds: about half a minute in all")
    parser.add_argument("--json", metavar="FILE", help="also write every sample and the targets as JSON")
    parser.add_argument("--chart", metavar="FILE.png",
                        help="write a bar chart of the ratios against the targets (needs matplotlib)")
    parser.add_argument("--systems", metavar="LIST", default=",".join(SHORT_NAMES),
                        help="comma-separated subset of: " + ", ".join(SHORT_NAMES))
    parser.add_argument("--workloads", metavar="LIST", default=",".join(w.key for w in WORKLOADS),
                        help="comma-separated subset of: " + ", ".join(w.key for w in WORKLOADS))
    parser.add_argument("--as-shipped", action="store_true",
                        help="start every far Python the way its system does (execwire alone gives it a "
                             "session, hence a scheduler autogroup, of its own); default: all get one")
    parser.add_argument("--cpus", metavar="LIST",
                        help="pin the benchmark and every far process to these CPUs (e.g. 0): no cross-CPU "
                             "wake-ups, so per-message costs show without that noise")
    args = parser.parse_args(argv)
    if args.cpus is not None:
        try:
            args.cpus = {int(cpu) for cpu in args.cpus.split(",")}
        except ValueError:
            parser.error(f"--cpus takes CPU numbers separated by commas, not {args.cpus!r}")
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.budget = 0.03 if args.quick else 0.15  # seconds per sample of the per-message workloads
    for name in args.systems.split(","):
        if name not in SHORT_NAMES:
            parser.error(f"unknown system {name!r} in --systems; choose from {', '.join(SHORT_NAMES)}")
    for key in args.workloads.split(","):
        if key not in BY_KEY:
            parser.error(f"unknown workload {key!r} in --workloads; choose from {', '.join(BY_KEY)}")
    return args


def load_systems(wanted: list[str]) -> list[System]:
    """Instantiate the wanted systems; say which are not installed and go on without them."""
    systems = []
    for cls in ALL_SYSTEMS:
        if cls.name not in wanted:
            continue
        try:
            systems.append(cls())
        except Unavailable as exc:
            print(f"skipped {cls.name}: {exc}")
    return systems


class Connections:
    """Warm connections, opened once per system and shared by the per-message workloads."""

    def __init__(self) -> None:
        self.open: dict[str, Connection] = {}
        self.failed: dict[str, str] = {}

    def get(self, system: System) -> Connection:
        if system.name in self.failed:
            raise RuntimeError(self.failed[system.name])
        if system.name not in self.open:
            try:
                self.open[system.name] = system.connect()
            except Exception as exc:
                self.failed[system.name] = f"could not connect: {exc!r}"
                raise
        return self.open[system.name]

    def close(self) -> None:
        for name, conn in self.open.items():
            try:
                conn.close()
            except Exception as exc:
                print(f"closing the {name} connection failed: {exc!r}")
        self.open.clear()


def run_workload(workload: Workload, systems: list[System], args: argparse.Namespace,
                 connections: Connections) -> dict[str, Any]:
    """Warm up (and calibrate) every system, then take one sample of each per round."""
    info: dict[str, dict[str, Any]] = {}
    samplers: dict[str, Callable[[], dict[str, float]]] = {}
    for system in systems:
        entry: dict[str, Any] = {"samples": [], "extras": {}, "median": None}
        info[system.name] = entry
        try:
            samplers[system.name] = make_sampler(workload, system, args, connections, entry)
        except Exception as exc:
            entry["error"] = f"failed during warm-up: {exc!r}"
    order = [system.name for system in systems]
    for round_number in range(args.rounds if order else 0):
        shift = round_number % len(order)
        for name in order[shift:] + order[:shift]:
            sampler = samplers.get(name)
            if sampler is None:
                continue
            gc.collect()
            try:
                values = sampler()
            except Exception as exc:
                info[name]["error"] = f"failed in round {round_number + 1}: {exc!r}"
                del samplers[name]
                continue
            info[name]["samples"].append(values.pop("total"))
            for extra, value in values.items():
                info[name]["extras"].setdefault(extra, []).append(value)
    for entry in info.values():
        if entry["samples"] and "error" not in entry:
            entry["median"] = statistics.median(entry["samples"])
        elif entry["samples"]:
            entry["samples"] = []
    return {"title": workload.title, "unit": workload.unit, "higher_is_better": workload.higher_is_better,
            "systems": info}


def make_sampler(workload: Workload, system: System, args: argparse.Namespace, connections: Connections,
                 entry: dict[str, Any]) -> Callable[[], dict[str, float]]:
    """A function taking one sample; warms the system up (and sizes the sample) first."""
    if workload.needs_connection:
        conn = connections.get(system)
        count = calibrated_count(workload, conn, args.budget)
        entry["count"] = count
        connection_sample(workload, conn, count)  # warm-up at the real size

        def sample() -> dict[str, float]:
            return {"total": connection_sample(workload, conn, count)[1]}

        return sample
    process_sample(workload, system)  # warm-up: page cache, imports, first fork

    def sample_processes() -> dict[str, float]:
        return process_sample(workload, system)

    return sample_processes


def header(systems: list[System], args: argparse.Namespace) -> list[str]:
    versions = ", ".join(f"{s.name} {s.version()}".strip() for s in systems if s.version())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"execwire benchmark: {args.rounds} interleaved rounds{' (quick)' if args.quick else ''}, "
        f"Python {platform.python_version()} both ends, {os.cpu_count()} CPUs, load average {load}",
        f"versions: {versions}",
        "ratios compare medians from this one run; absolute times on a noisy machine are secondary",
        session_note(args),
        f"pinned to CPUs {sorted(args.cpus)}" if args.cpus else "not pinned: the scheduler places both ends",
        site_note(),
        "",
    ]


def site_note() -> str:
    """Say what `site` (its .pth files) costs each interpreter start: every system pays it alike."""
    def start(*flags: str) -> float:
        times = []
        for _ in range(5):
            began = time.perf_counter()
            subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
            times.append(time.perf_counter() - began)
        return sorted(times)[2] * 1e3

    with_site, without = start(), start("-S")
    note = f"python -c pass: {with_site:.1f} ms, with -S (no site): {without:.1f} ms"
    if with_site - without > 5:
        note += ("; the .pth files of this interpreter's site-packages slow every start down alike: "
                 "run the benchmark in a virtual environment to see start-up costs of the systems themselves")
    return note


def session_note(args: argparse.Namespace) -> str:
    """Say how far processes were started: it decides their CPU share when others load the machine."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled", encoding="ascii") as flag:
            autogroup = flag.read().strip() == "1"
    except OSError:
        autogroup = False
    if args.as_shipped:
        if autogroup:
            return ("far processes started as each system does (--as-shipped); scheduler autogroups are on, so "
                    "under other load execwire's far sides (own sessions) get more CPU than the others'")
        return "far processes started as each system does (--as-shipped)"
    if _systems.SETSID is None:
        return "note: setsid(1) not found; execnet's and mitogen's far sides share the benchmark's session"
    return "every far process runs in a session of its own (as execwire starts them), so all get equal CPU shares"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _systems.OWN_SESSION = not args.as_shipped
    if args.cpus:
        os.sched_setaffinity(0, args.cpus)  # far processes inherit it
    wanted = [SHORT_NAMES[name] for name in args.systems.split(",")]
    systems = load_systems(wanted)
    for line in header(systems, args):
        print(line, flush=True)
    results: dict[str, Any] = {}
    connections = Connections()
    began = time.perf_counter()
    workloads = [BY_KEY[key] for key in args.workloads.split(",")]
    try:
        for workload in workloads:
            participants = [s for s in systems if workload.key in s.supports]
            results[workload.key] = run_workload(workload, participants, args, connections)
            for line in workload_block(workload, results[workload.key], args.rounds):
                print(line, flush=True)
            print(flush=True)
            if workload.needs_connection and not any(
                    w.needs_connection for w in workloads[workloads.index(workload) + 1:]):
                connections.close()
    finally:
        connections.close()
    lines, outcomes = summary(results, args.rounds)
    for line in lines:
        print(line)
    print(f"whole run: {time.perf_counter() - began:.1f} s")
    failures = [f"{name} in {key}: {entry['error']}" for key, result in results.items()
                for name, entry in result["systems"].items()
                if "error" in entry and any(s.name == name and s.required for s in systems)]
    if args.json:
        document = {
            "rounds": args.rounds, "quick": args.quick, "python": platform.python_version(),
            "cpus": os.cpu_count(), "versions": {s.name: s.version() for s in systems},
            "workloads": results,
            "targets": [{"workload": o.target.workload, "target": o.target.text, "measured": o.shown,
                         "met": o.met} for o in outcomes],
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    if args.chart:
        print(write_chart(args.chart, outcomes))
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
