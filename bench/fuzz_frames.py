"""Feed the protocol core a long run of random and mutated frames; report how many and what came out.

    python bench/fuzz_frames.py [--inputs N] [--seed S]

Each input is a short byte stream: a valid handshake followed by frames that are
valid, mutated (a byte flipped, cut short, a length that lies) or random. It goes
to a near or a far core in reads of random sizes. The core must return events or
raise ProtocolError / LoadError; anything else (or a hang) is a bug, printed with
the input that caused it. The test suite runs the same idea with hypothesis, in
short; this is the long run quoted in the notes.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from execwire._far import frames, protocol, wire  # noqa: E402
from execwire._far.errors import ProtocolError  # noqa: E402

HEADER = frames.HEADER
TYPES = sorted(frames.NAMES)


def encoded(value: object) -> bytes:
    return b"".join(bytes(part) for part in wire.encode(value))


def frame(msgtype: int, channel_id: int, payload: bytes) -> bytes:
    return HEADER.pack(frames.MAGIC, msgtype, channel_id, len(payload)) + payload


VALUES = [None, 1, -5, 2**70, 1.5, "text", b"bytes", (1, "a"), [1, 2], {"k": (1,)}, {1, 2}, "x" * 3000]
HELLO = frame(frames.HELLO, 0, encoded({"protocol": frames.PROTOCOL_VERSION, "rinfo": {"pid": 1}}))
CONFIG = frame(frames.CONFIG, 0, encoded({"id": "gw"}))
EXEC = frame(frames.EXEC, 1, encoded(("pass", "<x>", None, {})))


def random_frame(rng: random.Random) -> bytes:
    msgtype = rng.choice(TYPES)
    channel_id = rng.choice([0, 1, 2, 3, 4, 5, 7, rng.getrandbits(32)])
    kind = rng.random()
    if kind < 0.5:
        payload = encoded(rng.choice(VALUES))
    elif kind < 0.7:
        payload = struct.pack("!Q", rng.getrandbits(64))
    elif kind < 0.8:
        payload = b""
    else:
        payload = rng.randbytes(rng.randrange(40))
    data = frame(msgtype, channel_id, payload)
    mutation = rng.random()
    if mutation < 0.1:  # a byte flipped
        index = rng.randrange(len(data))
        data = data[:index] + bytes([data[index] ^ (1 << rng.randrange(8))]) + data[index + 1:]
    elif mutation < 0.15:  # cut short
        data = data[:rng.randrange(len(data))]
    elif mutation < 0.2:  # a length that lies
        data = HEADER.pack(frames.MAGIC, msgtype, channel_id, rng.getrandbits(31)) + data[HEADER.size:]
    return data


def one_input(rng: random.Random) -> tuple[str, bytes]:
    side = rng.choice([protocol.NEAR, protocol.FAR])
    start = HELLO if side == protocol.NEAR else CONFIG + EXEC
    if rng.random() < 0.05:
        start = rng.randbytes(rng.randrange(30))
    body = b"".join(random_frame(rng) for _ in range(rng.randrange(1, 8)))
    return side, start + body


def run(side: str, data: bytes, rng: random.Random) -> int:
    core = protocol.Protocol(side, protocol.ChannelState, max_channels=64)
    events = 0
    view = memoryview(data)
    try:
        while view:
            events += len(core.events())
            target = core.read_buffer()
            count = min(len(target), len(view), rng.randrange(1, 200))
            target[:count] = view[:count]
            del target
            core.bytes_read(count)
            view = view[count:]
        events += len(core.events())
        core.bytes_read(0)
        events += len(core.events())
    except (ProtocolError, wire.LoadError):
        pass
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    frames_fed = events = 0
    for number in range(args.inputs):
        side, data = one_input(rng)
        try:
            events += run(side, data, rng)
        except Exception:
            print(f"input {number} ({side} side) raised:\n{data!r}", file=sys.stderr)
            raise
        frames_fed += data.count(frames.MAGIC)
        if number and number % 100_000 == 0:
            print(f"{number:,} inputs, {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    print(f"{args.inputs:,} inputs ({frames_fed:,} frames) fed in {seconds:.0f} s; {events:,} events; "
          "every input gave events or a ProtocolError/LoadError")


if __name__ == "__main__":
    main()
