"""Import forwarding and the Executor, measured: one run, ratios first.

    python bench/calls.py [--calls 10000] [--naps 100]

1. Round trips (service requests) and time to import a package of 100 modules, cold, by
   forwarding, against a far side that has the package installed (on its PYTHONPATH): once with a
   package whose __init__ imports its modules (they travel ahead of need) and once with a package
   whose modules the shipped code imports one by one.
2. Executor.map of N tiny calls over 4 popen gateways against ProcessPoolExecutor(4) and
   multiprocessing.Pool(4), all warm, at chunksize 1 and 100 (calls per second).
3. 100 calls that sleep 50 ms each over 4 gateways: wall time against the ideal (100 * 50 ms / 4).
4. Behind via=: the bytes a middle gateway reads while 4 gateways behind it import that package of
   100 modules, in copies of the package's sources, and while 3 more gateways start behind it and
   are each shipped 60 KB of code; with the middle keeping what it passed on, and without (each
   gateway's copy crossing the middle's link).
5. The async faces: one call after another on one gateway (round trips per second) through the
   threaded gw.call, execwire.aio and execwire.trio; and group.map of N tiny calls over 4 popen
   gateways from asyncio against the threaded Group.map, at chunksize 1 and 100.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _tasks  # noqa: E402

import execwire  # noqa: E402

MODULES = 100


def write_package(root: Path, name: str, eager: bool) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    lines = [f"from . import m{number:03d}\n" for number in range(MODULES - 1)] if eager else []
    (folder / "__init__.py").write_text("".join(lines))
    for number in range(MODULES - 1):
        (folder / f"m{number:03d}.py").write_text(
            f"import os\nVALUE = {number}\n\n\ndef f(x):\n    return x + VALUE\n" + "# filler\n" * 40)


def import_code(name: str, eager: bool) -> str:
    if eager:
        return f"import {name}; channel.send(sum(m.VALUE for m in vars({name}).values() if hasattr(m, 'VALUE')))"
    imports = ", ".join(f"{name}.m{number:03d}" for number in range(MODULES - 1))
    return f"import {imports}; channel.send(1)"


def measure_imports(root: Path) -> list[str]:
    lines = []
    for eager in (True, False):
        name = "eagerpkg" if eager else "lazypkg"
        write_package(root, name, eager)
        sys.path.insert(0, str(root))
        try:
            with execwire.Group() as group:
                forwarded = group.makegateway("popen")
                forwarded.forward_imports()
                forwarded.remote_exec("channel.send(1)").receive()
                started = time.perf_counter()
                forwarded.remote_exec(import_code(name, eager)).receive(120)
                cold = time.perf_counter() - started
                trips = forwarded._import_service.requests  # type: ignore[attr-defined]
                installed = group.makegateway(f"popen//env:PYTHONPATH={root}//dont_write_bytecode")
                installed.remote_exec("channel.send(1)").receive()
                started = time.perf_counter()
                installed.remote_exec(import_code(name, eager)).receive(120)
                local = time.perf_counter() - started
        finally:
            sys.path.remove(str(root))
        shape = "__init__ imports all" if eager else "each imported by the code"
        lines.append(f"import {MODULES} modules ({shape}): forwarded cold {trips} round trips, "
                     f"{cold * 1000:.1f} ms; installed there 0 round trips, {local * 1000:.1f} ms "
                     f"(ratio {cold / local:.1f}x)")
    return lines


def bytes_read(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/PID/io")


def measure_via(root: Path, inner: int = 4) -> list[str]:
    """Bytes a middle gateway reads: keeping what it passes on (as execwire does) and not (LIMIT 0)."""
    from execwire.transports import middle_cache

    name = "viapkg"
    write_package(root, name, True)
    package = sum(len(path.read_bytes()) for path in (root / name).iterdir())
    code = "DATA = %r\nchannel.send(len(DATA))\n" % ("z" * 60_000)
    imported, started = {}, {}
    sys.path.insert(0, str(root))
    saved = middle_cache.LIMIT
    try:
        for keeping in (True, False):
            middle_cache.LIMIT = saved if keeping else 0
            with execwire.Group() as group:
                middle = group.makegateway("popen//id=middle")
                behind = [group.makegateway("popen//via=middle") for _ in range(inner)]
                for gateway in behind:
                    gateway.forward_imports()
                before = bytes_read(middle._rinfo().pid)
                for gateway in behind:
                    gateway.remote_exec(import_code(name, True)).receive(120)
                imported[keeping] = (bytes_read(middle._rinfo().pid) - before) / package
                before = bytes_read(middle._rinfo().pid)
                for gateway in [group.makegateway("popen//via=middle") for _ in range(3)]:
                    gateway.remote_exec(code).receive(120)
                started[keeping] = (bytes_read(middle._rinfo().pid) - before) / 1024
    finally:
        middle_cache.LIMIT = saved
        sys.path.remove(str(root))
    return [f"via: {inner} gateways behind one middle import {MODULES} modules ({package / 1024:.0f} KiB): the middle "
            f"read {imported[True]:.2f} copies keeping what it passed on, {imported[False]:.2f} copies without",
            f"via: 3 more gateways started behind it, each shipped 60 KB of code: the middle read "
            f"{started[True]:.0f} KiB keeping, {started[False]:.0f} KiB without "
            f"(ratio {started[True] / started[False]:.2f})"]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} calls/s"


def measure_map(calls: int) -> list[str]:
    items = list(range(calls))
    results: dict[str, float] = {}
    with execwire.Executor(["popen"] * 4) as pool:
        list(pool.map(_tasks.tiny, range(200)))  # warm: modules forwarded, threads up
        for chunksize in (1, 100):
            started = time.perf_counter()
            assert list(pool.map(_tasks.tiny, items, chunksize=chunksize)) == [n + 1 for n in items]
            results[f"execwire Executor, chunksize {chunksize}"] = time.perf_counter() - started
    with concurrent.futures.ProcessPoolExecutor(4) as ppe:
        list(ppe.map(_tasks.tiny, range(200)))
        for chunksize in (1, 100):
            started = time.perf_counter()
            list(ppe.map(_tasks.tiny, items, chunksize=chunksize))
            results[f"ProcessPoolExecutor(4), chunksize {chunksize}"] = time.perf_counter() - started
    with multiprocessing.Pool(4) as mp:
        mp.map(_tasks.tiny, range(200))
        for chunksize in (1, 100):
            started = time.perf_counter()
            mp.map(_tasks.tiny, items, chunksize=chunksize)
            results[f"multiprocessing.Pool(4), chunksize {chunksize}"] = time.perf_counter() - started
    lines = []
    for chunksize in (1, 100):
        ours = results[f"execwire Executor, chunksize {chunksize}"]
        for other in ("ProcessPoolExecutor(4)", "multiprocessing.Pool(4)"):
            theirs = results[f"{other}, chunksize {chunksize}"]
            lines.append(f"map of {calls:,} tiny calls, chunksize {chunksize}: execwire {rate(calls, ours)} "
                         f"vs {other} {rate(calls, theirs)} (execwire/{other.split('(')[0]} = {theirs / ours:.2f})")
    return lines


def measure_naps(count: int, seconds: float) -> list[str]:
    ideal = count * seconds / 4
    with execwire.Executor(["popen"] * 4) as pool:
        list(pool.map(_tasks.tiny, range(20)))
        started = time.perf_counter()
        list(pool.map(_tasks.nap, [seconds] * count))
        ours = time.perf_counter() - started
    with concurrent.futures.ProcessPoolExecutor(4) as ppe:
        list(ppe.map(_tasks.tiny, range(20)))
        started = time.perf_counter()
        list(ppe.map(_tasks.nap, [seconds] * count))
        theirs = time.perf_counter() - started
    return [f"{count} calls of {seconds * 1000:.0f} ms over 4 gateways: {ours:.3f} s, ideal {ideal:.3f} s "
            f"(ratio {ours / ideal:.3f}); ProcessPoolExecutor(4) {theirs:.3f} s (ratio {theirs / ideal:.3f})"]


def measure_async(calls: int) -> list[str]:
    import asyncio

    import execwire.aio as aio

    sequential = min(calls, 2000)
    with execwire.makegateway("popen") as gw:
        gw.call(_tasks.tiny, 0)
        started = time.perf_counter()
        for number in range(sequential):
            gw.call(_tasks.tiny, number)
        threaded = time.perf_counter() - started

    async def one_by_one(face: object) -> float:
        gw = await face.makegateway("popen")  # type: ignore[attr-defined]
        await gw.call(_tasks.tiny, 0)
        started = time.perf_counter()
        for number in range(sequential):
            await gw.call(_tasks.tiny, number)
        elapsed = time.perf_counter() - started
        await gw.exit()
        return elapsed

    faces = {"aio": asyncio.run(one_by_one(aio))}
    try:
        import trio

        import execwire.trio as etrio

        faces["trio"] = trio.run(one_by_one, etrio)
    except ImportError:
        pass
    lines = [f"{sequential:,} calls one after another: threaded {rate(sequential, threaded)}, "
             + ", ".join(f"{name} {rate(sequential, seconds)} ({threaded / seconds:.2f} of threaded)"
                         for name, seconds in faces.items())]
    items = list(range(calls))

    async def async_map() -> dict[int, float]:
        times = {}
        async with aio.Group(["popen"] * 4) as group:
            await group.map(_tasks.tiny, range(200))
            for chunksize in (1, 100):
                started = time.perf_counter()
                assert await group.map(_tasks.tiny, items, chunksize=chunksize, concurrency=2) == [
                    n + 1 for n in items]
                times[chunksize] = time.perf_counter() - started
        return times

    ours = asyncio.run(async_map())
    with execwire.Group(["popen"] * 4) as group:
        group.map(_tasks.tiny, range(200))
        for chunksize in (1, 100):
            started = time.perf_counter()
            group.map(_tasks.tiny, items, chunksize=chunksize)
            theirs = time.perf_counter() - started
            lines.append(f"group.map, {calls:,} tiny calls over 4 gateways, chunksize {chunksize}: aio "
                         f"{rate(calls, ours[chunksize])} vs threaded {rate(calls, theirs)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calls.py", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="tiny calls for the map figure")
    parser.add_argument("--naps", type=int, default=100, help="50 ms calls for the wall-time figure")
    args = parser.parse_args(argv)
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as folder:
        lines = measure_imports(Path(folder))
        lines += measure_via(Path(folder))
    lines += measure_map(args.calls)
    lines += measure_naps(args.naps, 0.05)
    lines += measure_async(args.calls)
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
