"""Turning samples into what a reader wants: ratios against the issue 5 targets first, times second."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from _workloads import BY_KEY, Workload

SUBJECT = "execwire"


@dataclass(frozen=True)
class Target:
    """One target of issue 5, comparing execwire with one other system on one workload.

    ``kind`` "faster": execwire must be at least ``goal`` times better (time or rate);
    "share": execwire's rate must be at least ``goal`` of the other's;
    "within": execwire's cost must be at most ``goal`` times the other's;
    "plus": execwire's time must be at most the other's plus ``goal`` (same unit).
    """

    workload: str
    other: str
    kind: str
    goal: float
    text: str


TARGETS = (
    Target("start", "bare python", "plus", 15.0, "<= python -c pass + 15 ms"),
    Target("start", "execnet", "faster", 2.0, ">= 2x faster than execnet"),
    Target("roundtrip", "raw pipe", "within", 3.0, "<= 3x the raw pipe round trip"),
    Target("roundtrip", "execnet", "faster", 3.0, ">= 3x faster than execnet"),
    Target("oneliner", "execnet", "faster", 3.0, ">= 3x faster than execnet"),
    Target("bulk", "raw pipe", "share", 0.8, ">= 80% of raw pipe bandwidth"),
    Target("tuples", "execnet", "faster", 3.0, ">= 3x execnet's rate"),
    Target("group", "execnet", "faster", 2.5, ">= 2.5x faster than execnet"),
    Target("rss", "bare python", "within", 1.3, "<= 1.3x the RSS of a bare interpreter"),
)


@dataclass
class Outcome:
    target: Target
    shown: str  # the measured ratio, as a reader should see it
    score: float  # measured / needed: >= 1 means met (for the chart)
    met: bool


def advantage(workload: Workload, mine: float, other: float) -> float:
    """How many times better execwire is than ``other`` (above 1: better)."""
    return mine / other if workload.higher_is_better else other / mine


def compare_text(workload: Workload, mine: float, other: float) -> str:
    if workload.key == "rss":
        return f"{mine / other:.2f}x the memory"
    factor = advantage(workload, mine, other)
    if factor >= 1:
        return f"{factor:.2f}x " + ("higher" if workload.higher_is_better else "faster")
    return f"{1 / factor:.2f}x " + ("lower" if workload.higher_is_better else "slower")


def evaluate(target: Target, medians: dict[str, float]) -> Outcome | None:
    workload = BY_KEY[target.workload]
    mine, other = medians.get(SUBJECT), medians.get(target.other)
    if mine is None or other is None or mine <= 0 or other <= 0:
        return None
    if target.kind == "plus":
        extra = mine - other
        return Outcome(target, f"{extra:+.1f} {workload.unit}", (other + target.goal) / mine,
                       extra <= target.goal)
    factor = advantage(workload, mine, other)
    if target.kind == "within":
        cost = 1 / factor
        return Outcome(target, ratio_text(cost, target.goal), target.goal / cost, cost <= target.goal)
    if target.kind == "share":
        return Outcome(target, f"{factor:.1%}", factor / target.goal, factor >= target.goal)
    return Outcome(target, ratio_text(factor, target.goal), factor / target.goal, factor >= target.goal)


def ratio_text(ratio: float, goal: float) -> str:
    """Two decimals, or three when two would round onto the goal and hide which side it is on."""
    return f"{ratio:.3f}x" if f"{ratio:.2f}" == f"{goal:.2f}" and ratio != goal else f"{ratio:.2f}x"


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(value: float, unit: str) -> str:
    if unit in ("items/s",):
        return f"{value:,.0f} {unit}"
    if unit == "MB/s":
        return f"{value:,.0f} {unit}"
    if unit == "MB":
        return f"{value:.1f} {unit}"
    return f"{value:,.1f} {unit}" if value < 1000 else f"{value:,.0f} {unit}"


def status(met: bool) -> str:
    return "met" if met else "MISSED"


def workload_block(workload: Workload, result: dict[str, Any], rounds: int) -> list[str]:
    """The lines printed after a workload ran: targets and ratios, then the medians."""
    better = "higher" if workload.higher_is_better else "lower"
    lines = [f"[{workload.number}] {workload.title}  ({workload.unit}, {better} is better, "
             f"medians of {rounds} interleaved rounds)"]
    systems: dict[str, dict[str, Any]] = result["systems"]
    medians = {name: info["median"] for name, info in systems.items() if info.get("median") is not None}
    for target in TARGETS:
        if target.workload != workload.key:
            continue
        outcome = evaluate(target, medians)
        if outcome is None:
            lines.append(f"    TARGET {target.text:<40} n/a (needs {SUBJECT} and {target.other})")
        else:
            lines.append(f"    TARGET {target.text:<40} {outcome.shown:>10}   {status(outcome.met)}")
    mine = medians.get(SUBJECT)
    for name, value in medians.items():
        if name != SUBJECT and mine is not None:
            lines.append(f"    {SUBJECT} vs {name:<12} {compare_text(workload, mine, value)}")
    for name, info in systems.items():
        if info.get("median") is None:
            lines.append(f"      {name:<12} {info.get('error', 'no samples')}")
            continue
        samples = info["samples"]
        detail = f"min {fmt(min(samples), workload.unit)}, max {fmt(max(samples), workload.unit)}"
        if info.get("count"):
            detail += f"; {info['count']:,} per sample"
        for extra, values in info.get("extras", {}).items():
            detail += f"; {extra} {fmt(median(values), workload.unit)}"
        lines.append(f"      {name:<12} {fmt(info['median'], workload.unit):>16}   ({detail})")
    return lines


def summary(results: dict[str, Any], rounds: int) -> tuple[list[str], list[Outcome]]:
    lines = [f"== issue 5 targets: {SUBJECT}, medians of {rounds} interleaved rounds =="]
    outcomes = []
    for target in TARGETS:
        workload = BY_KEY[target.workload]
        result = results.get(target.workload)
        label = f"[{workload.number}] {workload.key:<9} {target.text:<40}"
        if result is None:
            lines.append(f"  {label} {'':>10}   not run")
            continue
        medians = {name: info["median"] for name, info in result["systems"].items()
                   if info.get("median") is not None}
        outcome = evaluate(target, medians)
        if outcome is None:
            lines.append(f"  {label} {'n/a':>10}   (needs {SUBJECT} and {target.other})")
            continue
        outcomes.append(outcome)
        lines.append(f"  {label} {outcome.shown:>10}   {status(outcome.met)}")
    met = sum(outcome.met for outcome in outcomes)
    lines.append(f"  {met} of {len(outcomes)} measured targets met")
    return lines, outcomes


def write_chart(path: str, outcomes: list[Outcome]) -> str:
    """A bar per target: how far the measurement reaches toward it (1.0 = exactly met)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    if not outcomes:
        return "chart skipped: no target could be measured"
    labels = [f"[{BY_KEY[o.target.workload].number}] {o.target.workload}: {o.target.text}" for o in outcomes]
    scores = [o.score for o in outcomes]
    colors = ["#2e8b57" if o.met else "#c0392b" for o in outcomes]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(outcomes) + 1.5))
    positions = list(range(len(outcomes)))[::-1]
    # bars grow from the target line: right (green) where met, left (red) where missed
    ax.barh(positions, [score - 1.0 for score in scores], left=1.0, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    for y, outcome in zip(positions, outcomes, strict=True):
        side = "left" if outcome.score >= 1 else "right"
        pad = f"  {outcome.shown}" if side == "left" else f"{outcome.shown}  "
        ax.text(outcome.score, y, pad, va="center", ha=side, fontsize=9)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=9)
    ax.set_xscale("log")
    low, high = min(min(scores) * 0.6, 0.5), max(max(scores) * 1.7, 2.0)
    ax.set_xlim(low, high)
    ticks = [t for t in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0) if low <= t <= high]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("measured / needed (log scale; right of the line = target met)")
    ax.set_title("execwire against the issue 5 targets (one run, medians of interleaved rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"
