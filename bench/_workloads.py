"""The seven workloads: what each measures, in which unit, and how one sample is taken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from _systems import Connection, System

MIB = 1024 * 1024
BLOB = b"\xa5" * MIB


@dataclass(frozen=True)
class Workload:
    key: str
    number: int
    title: str
    unit: str
    higher_is_better: bool
    needs_connection: bool = False
    # how one operation is counted: items per sample are calibrated to a time budget
    calibrate_from: int = 0
    max_count: int = 0


WORKLOADS = (
    Workload("start", 1, "gateway start to first result, then exit", "ms", False),
    Workload("roundtrip", 2, "round trip of a small item on one channel", "us", False, True, 200, 20000),
    Workload("oneliner", 3, "remote_exec of a one-liner on a warm gateway, to its close", "us", False, True,
             50, 5000),
    Workload("bulk", 4, "one-way 1 MiB bytes items", "MB/s", True, True, 4, 512),
    Workload("tuples", 5, "one-way small tuples ('task', i, 1.5)", "items/s", True, True, 2000, 400000),
    Workload("group", 6, "group of 8 popen gateways to one result each, then terminate", "ms", False),
    Workload("rss", 7, "far-side idle RSS after start (VmRSS)", "MB", False),
)
BY_KEY = {workload.key: workload for workload in WORKLOADS}
GROUP_SIZE = 8


def connection_sample(workload: Workload, conn: Connection, count: int) -> tuple[float, float]:
    """Run ``count`` operations; return (seconds taken, value in the workload's unit)."""
    if workload.key == "roundtrip":
        seconds = conn.roundtrip(count)
        return seconds, seconds / count * 1e6
    if workload.key == "oneliner":
        seconds = conn.oneliner(count)
        return seconds, seconds / count * 1e6
    if workload.key == "bulk":
        seconds = conn.bulk(BLOB, count)
        return seconds, count * len(BLOB) / seconds / 1e6
    if workload.key == "tuples":
        seconds = conn.tuples(count)
        return seconds, count / seconds
    raise KeyError(workload.key)


def process_sample(workload: Workload, system: System) -> dict[str, float]:
    """One sample of a workload that starts its own processes: the value, plus extras by name."""
    if workload.key == "start":
        times = system.start()
        return {name: seconds * 1e3 for name, seconds in times.items()}
    if workload.key == "group":
        return {"total": system.group(GROUP_SIZE) * 1e3}
    if workload.key == "rss":
        return {"total": system.idle_rss() / 1024}
    raise KeyError(workload.key)


def calibrated_count(workload: Workload, conn: Connection, budget: float) -> int:
    """How many operations make one sample last about ``budget`` seconds (within fixed bounds)."""
    count = workload.calibrate_from
    connection_sample(workload, conn, count)  # the first run pays for warming up
    # the fastest of three: a stall caused by another process must not shrink every sample
    seconds = min(connection_sample(workload, conn, count)[0] for _ in range(3))
    wanted = int(count * budget / max(seconds, 1e-6))
    return max(workload.calibrate_from, min(wanted, workload.max_count))


Sampler = Callable[[], dict[str, float]]
