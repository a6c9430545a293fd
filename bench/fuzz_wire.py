"""Fuzz the serializer for a long time with a fixed seed: loads() on millions of mutated records.

    python bench/fuzz_wire.py                          # 10 million inputs, seed 1 (about an hour here)
    python bench/fuzz_wire.py --inputs 100000 --seed 7 # a quick look

Every input is a dumps() record of a random value, damaged in a few random ways (bytes flipped,
inserted, deleted, repeated, spliced from another record, lengths and counts set to extremes), or
random bytes. Half of the damaged records get their header's length fixed up, so the body decoder
sees them rather than the header check. For each input it checks what a peer relies on:

- loads() returns a value or raises LoadError, nothing else (no IndexError, RecursionError, ...);
- a value that decodes is plain data: dumps() takes it and loads() gives it back unchanged;
- decode_flat(), the decoder's fast path, gives the general decoder's value or declines;
- no input takes much longer per byte than the others: the five slowest per byte are timed again at
  the end (best of five runs, so a pause of the machine does not count) and reported, not failed.

Exits 1 after printing the first input that breaks a rule (as hex, with the seed and input number,
so that the same command reproduces it). Uses only the standard library and the checkout's
src/execwire/_far/wire.py, so any Python 3.6+ can run it (PyPy is much faster at it).
"""

import argparse
import heapq
import importlib.util
import math
import os
import random
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WIRE_PATH = os.path.join(HERE, os.pardir, "src", "execwire", "_far", "wire.py")


def load_wire():
    spec = importlib.util.spec_from_file_location("fuzzed_wire", WIRE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = load_wire()
OPCODES = b"NTFCbiqIdcsSyYaAlLuUmMeEzZ"
EDGE_BYTES = [0, 1, 0x7F, 0x80, 0xFE, 0xFF] + list(OPCODES)
EDGE_U32 = [0, 1, 2, 255, 256, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


# -- values ------------------------------------------------------------------------------------
def random_scalar(rng):
    pick = rng.randrange(12)
    if pick == 0:
        return rng.choice((None, True, False))
    if pick == 1:
        return rng.randrange(-128, 128)
    if pick == 2:
        return rng.randrange(-2 ** 31, 2 ** 31)
    if pick == 3:
        return rng.randrange(-2 ** 63, 2 ** 63)
    if pick == 4:
        return rng.getrandbits(rng.randrange(64, 600)) * rng.choice((1, -1))
    if pick == 5:
        return rng.choice((0.0, -0.0, math.inf, -math.inf, math.nan, 1e-310, rng.random() * 1e300))
    if pick == 6:
        return complex(rng.uniform(-1e9, 1e9), rng.choice((0.0, -0.0, math.nan, 1.5)))
    if pick == 7:
        return "".join(chr(rng.choice((rng.randrange(128), rng.randrange(0x10FFFF), 0xD800)))
                       for _ in range(rng.randrange(rng.choice((4, 40, 300)))))
    if pick == 8:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(rng.choice((4, 40, 300)))))
    if pick == 9:
        return bytearray(rng.getrandbits(8) for _ in range(rng.randrange(20)))
    if pick == 10:
        return rng.randrange(2 ** 61, 2 ** 62) * sys.hash_info.modulus  # hashes alike
    return "s%d" % rng.randrange(100)


def random_hashable(rng, depth):
    if depth > 0 and rng.random() < 0.2:
        if rng.random() < 0.5:
            return tuple(random_hashable(rng, depth - 1) for _ in range(rng.randrange(4)))
        return frozenset(random_hashable(rng, depth - 1) for _ in range(rng.randrange(4)))
    value = random_scalar(rng)
    # nan (since Python 3.10) and None (before 3.12) hash by their address: a set's order, and so the
    # inputs, would follow memory instead of the seed alone
    if value is None or value != value:
        return 0.5
    return bytes(value) if type(value) is bytearray else value


def random_value(rng, depth=4):
    if depth <= 0 or rng.random() < 0.35:
        return random_scalar(rng)
    size = rng.randrange(6)
    if depth <= 1 and rng.random() < 0.05:  # long containers hold scalars only: records stay small
        size = rng.choice((40, 255, 256, 300))
    kind = rng.randrange(5)
    if kind == 0:
        return [random_value(rng, depth - 1) for _ in range(size)]
    if kind == 1:
        return tuple(random_value(rng, depth - 1) for _ in range(size))
    if kind == 2:
        return {random_hashable(rng, 2): random_value(rng, depth - 1) for _ in range(size)}
    if kind == 3:
        return {random_hashable(rng, 2) for _ in range(size)}
    return frozenset(random_hashable(rng, 2) for _ in range(size))


def nested(rng):
    """Deep nesting around the depth limit."""
    depth = rng.choice((wire.MAX_DEPTH - 2, wire.MAX_DEPTH - 1, wire.MAX_DEPTH, wire.MAX_DEPTH + 1))
    return b"l\x01" * depth + b"N"


# -- damage -------------------------------------------------------------------------------------
def mutate(rng, data, corpus):
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        n = len(data)
        at = rng.randrange(n + 1)
        action = rng.randrange(8)
        if action == 0 and n:
            data[at % n] ^= 1 << rng.randrange(8)
        elif action == 1 and n:
            data[at % n] = rng.choice(EDGE_BYTES)
        elif action == 2:
            data[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 6)))
        elif action == 3:
            del data[at:at + rng.randrange(1, 9)]
        elif action == 4:
            end = min(n, at + rng.randrange(1, 33))
            data[at:at] = data[at:end] * rng.randrange(1, 4)
        elif action == 5:
            del data[at:]
        elif action == 6 and n >= 4:
            at = rng.randrange(n - 3)
            data[at:at + 4] = struct.pack(">I", rng.choice(EDGE_U32 + [n, n - at, rng.randrange(n)]))
        else:
            other = corpus[rng.randrange(len(corpus))]
            start = rng.randrange(len(other) + 1)
            data[at:at] = other[start:start + rng.randrange(1, 40)]
    return bytes(data)


def with_true_length(record):
    """The record with its header's length set to what follows: the body decoder then runs."""
    if len(record) < 7:
        return record
    return record[:3] + struct.pack(">I", len(record) - 7) + record[7:]


def next_input(rng, corpus):
    pick = rng.random()
    if pick < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(40)))
    if pick < 0.052:  # few: they are slow to check
        return with_true_length(wire.dumps(None)[:7] + nested(rng))
    damaged = mutate(rng, corpus[rng.randrange(len(corpus))], corpus)
    return with_true_length(damaged) if rng.random() < 0.5 else damaged


# -- checks -------------------------------------------------------------------------------------
def typed(value):
    """A picture of ``value`` that tells exact types, -0.0 and nan apart (nan equals nan here)."""
    t = type(value)
    if t is float or t is complex:
        return (t.__name__, repr(value))
    if t is list or t is tuple:
        return (t.__name__, tuple(typed(item) for item in value))
    if t is dict:
        return ("dict", frozenset((typed(k), typed(v)) for k, v in value.items()))
    if t is set or t is frozenset:
        return (t.__name__, frozenset(typed(item) for item in value))
    if t is bytearray:
        return ("bytearray", bytes(value))
    return (t.__name__, value)


class Broken(Exception):
    """An input broke a rule; the message says which."""


def check(data):
    try:
        value = wire.loads(data)
    except wire.LoadError:
        return False
    except Exception as exc:
        raise Broken("loads raised %s: %s" % (type(exc).__name__, exc))
    picture = typed(value)
    try:
        again = wire.loads(wire.dumps(value))
    except Exception as exc:
        raise Broken("a decoded value does not survive dumps/loads: %s: %s" % (type(exc).__name__, exc))
    if typed(again) != picture:
        raise Broken("dumps/loads changed a decoded value: %r became %r" % (value, again))
    flat = wire.decode_flat(data, 7, len(data))
    if flat is not wire.NOT_FLAT and typed(flat) != picture:
        raise Broken("decode_flat gave %r where the general decoder gives %r" % (flat, value))
    return True


def main(argv=None):
    if os.environ.get("PYTHONHASHSEED") != "0":  # set iteration order, and so the inputs, follow the seed alone
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000_000, help="how many inputs (default 10 million)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--corpus", type=int, default=3000, help="random values to damage (default 3000)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between progress lines (default 30)")
    options = parser.parse_args(argv)
    sys.setrecursionlimit(10000)  # typed() recurses through values nested up to wire.MAX_DEPTH deep
    rng = random.Random(options.seed)
    corpus = [wire.dumps(random_value(rng)) for _ in range(options.corpus)]
    started = last = time.monotonic()
    decoded = 0
    slowest = []  # heap of the five (seconds per byte, number, input) that took longest
    for number in range(options.inputs):
        data = next_input(rng, corpus)
        begin = time.perf_counter()
        try:
            decoded += check(data)
        except Broken as exc:
            print("input %d of seed %d breaks a rule: %s\n  input (%d bytes): %s"
                  % (number, options.seed, exc, len(data), data.hex()))
            return 1
        cost = (time.perf_counter() - begin) / (len(data) + 64)
        if len(slowest) < 5:
            heapq.heappush(slowest, (cost, number, data))
        elif cost > slowest[0][0]:
            heapq.heapreplace(slowest, (cost, number, data))
        now = time.monotonic()
        if now - last >= options.every:
            last = now
            print("%d inputs, %d decoded, %.0f inputs/s" % (number + 1, decoded, (number + 1) / (now - started)))
            sys.stdout.flush()
    elapsed = time.monotonic() - started
    print("done: %d inputs (seed %d) in %.0f s, %.0f inputs/s on %s %s; %d decoded to a value, the rest "
          "raised LoadError; nothing else was raised"
          % (options.inputs, options.seed, elapsed, options.inputs / max(elapsed, 1e-9),
             sys.implementation.name, ".".join(map(str, sys.version_info[:3])), decoded))
    print("the slowest inputs per byte (counting 64 bytes of fixed cost), timed again:")
    for _, number, data in sorted(slowest, reverse=True):
        again = min(timed(check, data) for _ in range(5))
        shown = data[:48].hex() + ("..." if len(data) > 48 else "")
        print("  input %d, %d bytes: %.2f us per byte; %s" % (number, len(data), again / (len(data) + 64) * 1e6, shown))
    return 0


def timed(action, data):
    begin = time.perf_counter()
    action(data)
    return time.perf_counter() - begin


if __name__ == "__main__":
    sys.exit(main())
