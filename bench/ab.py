"""A/B: two execwire source trees (e.g. old main and new) through bench.py's workloads, interleaved.

    python bench/ab.py OLD_TREE NEW_TREE [--rounds N] [--quick] [--cpus LIST] [--workloads LIST]

Each round runs ``bench.py --rounds 1`` once per tree (alternating which goes
first) with that tree's ``src`` first on PYTHONPATH, next to execnet and the raw
pipe, and keeps the medians. It prints, per workload, both trees' medians of
all rounds, new/old (below 1 is better for times, above 1 for rates), and each
tree's ratio against execnet measured in the same rounds: the figure to quote,
since absolute times swing with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench.py"


def one_round(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    command = [sys.executable, str(BENCH), "--rounds", "1", "--systems", "execwire,execnet,raw",
               "--workloads", args.workloads, "--json", str(out)]
    if args.quick:
        command.append("--quick")
    if args.cpus:
        command += ["--cpus", args.cpus]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=1800)
    document = json.loads(out.read_text())
    medians: dict[str, dict[str, float]] = {}
    for key, workload in document["workloads"].items():
        medians[key] = {name: entry["median"] for name, entry in workload["systems"].items() if "median" in entry}
        medians[key]["_higher_is_better"] = float(workload["higher_is_better"])
    return medians


def two_trees_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """The options every old-against-new script takes: the two trees and the number of rounds."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=rounds)
    return parser


def main() -> None:
    parser = two_trees_parser(__doc__, 5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cpus")
    parser.add_argument("--workloads", default="start,roundtrip,oneliner,bulk,tuples,group,rss")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.rounds):
            order = ["old", "new"] if number % 2 == 0 else ["new", "old"]
            for name in order:
                tree = args.old if name == "old" else args.new
                runs[name].append(one_round(tree, args, Path(folder) / f"{name}{number}.json"))
            print(f"round {number + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'workload':10} {'old':>12} {'new':>12} {'new/old':>8}   {'old vs execnet':>14} {'new vs execnet':>14}")
    for key in runs["old"][0]:
        higher = bool(runs["old"][0][key]["_higher_is_better"])

        def median(name: str, system: str, key: str = key) -> float:
            return statistics.median(run[key][system] for run in runs[name] if system in run[key])

        old, new = median("old", "execwire"), median("new", "execwire")
        line = f"{key:10} {old:12.4g} {new:12.4g} {new / old:8.3f}"
        if all("execnet" in run[key] for name in runs for run in runs[name]):
            # how many times better than execnet, in the same rounds: above 1 is better
            versus = {name: statistics.median(
                (run[key]["execwire"] / run[key]["execnet"]) if higher else (run[key]["execnet"] / run[key]["execwire"])
                for run in runs[name]) for name in runs}
            line += f"   {versus['old']:13.2f}x {versus['new']:13.2f}x"
        print(line)


if __name__ == "__main__":
    main()
