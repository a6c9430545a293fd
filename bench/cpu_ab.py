"""CPU per operation, both ends counted, for two execwire trees and execnet: a figure a busy machine barely moves.

    python bench/cpu_ab.py OLD_TREE NEW_TREE [--rounds N] [--count N]

Wall-clock rates swing with the machine's load; the processor time an operation
costs (user + system, of the controller and of the far process with all its
threads) swings far less. Each round runs every workload once per tree and once
through execnet, in a fresh process each (alternating the order), and prints the
medians in microseconds per operation, new/old, and each tree against execnet.
Time spent polling for an answer counts too, as it should: it is CPU others lack.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from ab import two_trees_parser

WORKLOADS = ("roundtrip", "tuples", "oneliner")

# Runs in a fresh interpreter: ``sys.argv[1:]`` = system ("execwire" or "execnet"), workload, count.
CHILD = r'''
import json, os, resource, sys
system, workload, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
mod = __import__(system)
gw = mod.makegateway("popen")
ticks = os.sysconf("SC_CLK_TCK")
pid = gw.remote_exec("import os; channel.send(os.getpid())").receive(30)

def far_cpu():
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks

def near_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

if workload == "roundtrip":
    channel = gw.remote_exec("for item in channel:\n    channel.send(item)\n")
    def run(n):
        for i in range(n):
            channel.send(i)
            channel.receive()
elif workload == "tuples":
    def run(n):
        channel = gw.remote_exec("for item in channel:\n    if item is None:\n        break\nchannel.send('done')\n")
        for i in range(n):
            channel.send(("task", i, 1.5))
        channel.send(None)
        channel.receive()
else:
    def run(n):
        for _ in range(n):
            gw.remote_exec("x = 1").waitclose(30)

run(min(count, 200))  # warm up
near0, far0 = near_cpu(), far_cpu()
run(count)
near1, far1 = near_cpu(), far_cpu()
print(json.dumps({"near": (near1 - near0) / count * 1e6, "far": (far1 - far0) / count * 1e6}))
gw.exit()
'''

COUNTS = {"roundtrip": 20000, "tuples": 200000, "oneliner": 4000}


def measure(system: str, tree: Path | None, workload: str, count: int) -> dict[str, float]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "src")
    done = subprocess.run([sys.executable, "-c", CHILD, system, workload, str(count)], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    values: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    values["total"] = values["near"] + values["far"]
    return values


def main() -> None:
    parser = two_trees_parser(__doc__, 3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply each workload's count")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    workloads = [name for name in args.workloads.split(",") if name]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for number in range(args.rounds):
        for workload in workloads:
            count = max(int(COUNTS[workload] * args.scale), 100)
            order = [("old", args.old), ("new", args.new), ("execnet", None)]
            if number % 2:
                order.reverse()
            for name, tree in order:
                system = "execnet" if name == "execnet" else "execwire"
                runs.setdefault((name, workload), []).append(measure(system, tree, workload, count))
        print(f"round {number + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print("CPU microseconds per operation (controller + far process), medians")
    print(f"{'workload':<10} {'part':<6} {'old':>8} {'new':>8} {'execnet':>8} {'new/old':>8} "
          f"{'old/execnet':>12} {'new/execnet':>12}")
    for workload in workloads:
        for part in ("near", "far", "total"):
            old, new, execnet = (statistics.median(run[part] for run in runs[(name, workload)])
                                 for name in ("old", "new", "execnet"))
            print(f"{workload:<10} {part:<6} {old:8.2f} {new:8.2f} {execnet:8.2f} {new / old:8.3f} "
                  f"{old / execnet:12.3f} {new / execnet:12.3f}")


if __name__ == "__main__":
    main()
