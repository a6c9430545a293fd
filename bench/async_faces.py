"""The async faces against the threaded API, in one run (issue 10's figures).

    python bench/async_faces.py [--rounds N] [--quick]

1. roundtrip: send an int and receive its echo on one channel: threaded, asyncio and trio, in
   interleaved rounds (each round samples every face once, starting one face later each time);
   the ratio of medians is printed, with issue 10's target (asyncio within 1.5x of threaded).
2. channels: one process, one asyncio loop, 10 popen gateways with 100 channels each, every
   channel waiting in receive() at once; then one item to each and every answer taken. It prints
   the time and this process's thread count while all 1,000 wait (target: a handful).
3. start: 100 popen gateways started side by side, until each answered one remote_exec, then
   terminated: from one asyncio loop (execwire.aio.Group) against the threaded Group (makegateways).

Figures compare only within one run; the machine's load moves them all.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import execwire  # noqa: E402
import execwire.aio as aio  # noqa: E402

try:
    import trio

    import execwire.trio as etrio
except ImportError:  # the optional extra is not installed
    trio = None

ECHO = "for item in channel: channel.send(item)"


def threaded_roundtrips(count: int) -> float:
    """Seconds per round trip, threaded API (gateway made outside the timing)."""
    with execwire.Group() as group:
        channel = group.makegateway("popen").remote_exec(ECHO)
        for i in range(200):
            channel.send(i)
            channel.receive()
        started = time.perf_counter()
        for i in range(count):
            channel.send(i)
            channel.receive()
        return (time.perf_counter() - started) / count


async def _async_roundtrips(face: object, count: int) -> float:
    gw = await face.makegateway("popen")  # type: ignore[attr-defined]
    channel = await gw.remote_exec(ECHO)
    for i in range(200):
        await channel.send(i)
        await channel.receive()
    started = time.perf_counter()
    for i in range(count):
        await channel.send(i)
        await channel.receive()
    elapsed = (time.perf_counter() - started) / count
    await gw.exit()
    return elapsed


def asyncio_roundtrips(count: int) -> float:
    return asyncio.run(_async_roundtrips(aio, count))


def trio_roundtrips(count: int) -> float:
    return float(trio.run(_async_roundtrips, etrio, count))


def roundtrip(rounds: int, count: int) -> None:
    faces: dict[str, Callable[[int], float]] = {"threaded": threaded_roundtrips, "asyncio": asyncio_roundtrips}
    if trio is not None:
        faces["trio"] = trio_roundtrips
    names = list(faces)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names[number % len(names):] + names[:number % len(names)]:
            samples[name].append(faces[name](count))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"1. round trip ({rounds} rounds of {count}; median, min-max in microseconds)")
    for name in names:
        print(f"   {name:9} {medians[name] * 1e6:7.1f}   ({min(samples[name]) * 1e6:.1f}-"
              f"{max(samples[name]) * 1e6:.1f})")
    ratio = medians["asyncio"] / medians["threaded"]
    print(f"   asyncio / threaded = {ratio:.2f}x   target <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'}")
    if "trio" in medians:
        print(f"   trio / threaded    = {medians['trio'] / medians['threaded']:.2f}x")


async def _many_channels(gateways: int, per_gateway: int) -> tuple[float, int, float]:
    async with aio.Group(["popen"] * gateways) as group:
        channels = [await gw.remote_exec("channel.send(channel.receive() + 1)")
                    for gw in group for _ in range(per_gateway)]
        started = time.perf_counter()
        waiting = [asyncio.ensure_future(channel.receive(60)) for channel in channels]
        await asyncio.sleep(0.2)  # every receive() is waiting now
        threads = threading.active_count()
        for number, channel in enumerate(channels):
            await channel.send(number)
        answers = await asyncio.gather(*waiting)
        elapsed = time.perf_counter() - started - 0.2
        assert answers == [number + 1 for number in range(len(channels))]
        probe = await group[0].remote_exec("import threading; channel.send(threading.active_count())")
        far_threads = await probe.receive(30)
    return elapsed, threads, far_threads


def many_channels(gateways: int, per_gateway: int) -> None:
    elapsed, threads, far_threads = asyncio.run(_many_channels(gateways, per_gateway))
    total = gateways * per_gateway
    print(f"2. {total} channels on {gateways} gateways, one asyncio loop: all answered in {elapsed * 1e3:.0f} ms; "
          f"threads in this process while all waited: {threads} (target: a handful: "
          f"{'met' if threads <= 5 else 'MISSED'}); threads in one far process: {far_threads}")


async def _aio_start(count: int) -> tuple[float, float]:
    started = time.perf_counter()
    group = aio.Group(["popen"] * count)
    await group.__aenter__()
    channels = [await gw.remote_exec("channel.send(1)") for gw in group]
    assert [await channel.receive(60) for channel in channels] == [1] * count
    up = time.perf_counter() - started
    await group.terminate()
    return up, time.perf_counter() - started


def aio_start(count: int) -> tuple[float, float]:
    return asyncio.run(_aio_start(count))


def threaded_start(count: int) -> tuple[float, float]:
    started = time.perf_counter()
    group = execwire.Group()
    group.makegateways(["popen"] * count)
    channels = [gw.remote_exec("channel.send(1)") for gw in group]
    assert [channel.receive(60) for channel in channels] == [1] * count
    up = time.perf_counter() - started
    group.terminate()
    return up, time.perf_counter() - started


def start(count: int, rounds: int) -> None:
    samples: dict[str, list[tuple[float, float]]] = {"asyncio": [], "threaded": []}
    for number in range(rounds):
        order = ["asyncio", "threaded"] if number % 2 == 0 else ["threaded", "asyncio"]
        for name in order:
            samples[name].append((aio_start if name == "asyncio" else threaded_start)(count))
    print(f"3. {count} popen gateways started side by side, each answering once, then terminated "
          f"(median of {rounds}):")
    ups = {}
    for name, values in samples.items():
        ups[name] = statistics.median(up for up, _ in values)
        total = statistics.median(whole for _, whole in values)
        print(f"   {name:9} all up in {ups[name]:.2f} s, terminated after {total:.2f} s")
    print(f"   asyncio / threaded (up) = {ups['asyncio'] / ups['threaded']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and operations")
    options = parser.parse_args()
    rounds = 3 if options.quick else options.rounds
    roundtrip(rounds, 2000 if options.quick else 10000)
    many_channels(10, 100)
    start(100, 1 if options.quick else 3)


if __name__ == "__main__":
    main()
