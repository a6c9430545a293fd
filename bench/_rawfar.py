"""The far end of the raw-pipe baseline: length-prefixed messages on fds 0 and 1, nothing more.

Run as ``python -c SOURCE MODE`` (the benchmark reads this file and passes its text).
MODE "echo" writes every message back as it came; MODE "sink" counts messages and
bytes and answers an empty message with both counts (8 bytes each, big-endian).
Only ``os`` and ``sys`` (already loaded by every interpreter), so it is the cheapest
honest far side: one reused buffer filled with readv, several messages parsed per
read, and messages too large for the buffer read straight into a buffer of their own.
"""

import os
import sys

HEAD = 4
BUFFER = 256 * 1024


def messages(fd):
    """Yield a memoryview of every message until end of stream (valid until the next one)."""
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    large = bytearray(0)
    start = end = 0
    while True:
        while end - start >= HEAD:
            n = int.from_bytes(buf[start:start + HEAD], "big")
            if end - start - HEAD >= n:
                yield view[start + HEAD:start + HEAD + n]
                start += HEAD + n
                continue
            if HEAD + n > BUFFER:
                if len(large) < n:
                    large = bytearray(n)
                lview = memoryview(large)[:n]
                have = end - start - HEAD
                lview[:have] = view[start + HEAD:end]
                while have < n:
                    got = os.readv(fd, [lview[have:]])
                    if not got:
                        return
                    have += got
                start = end = 0
                yield lview
                continue
            break
        if start == end:
            start = end = 0
        elif BUFFER - end < BUFFER // 4:
            pending = end - start
            buf[:pending] = buf[start:end]
            start, end = 0, pending
        got = os.readv(fd, [view[end:]])
        if not got:
            return
        end += got


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(mode):
    count = total = 0
    for message in messages(0):
        if mode == "echo":
            write_all(1, len(message).to_bytes(HEAD, "big") + message)
        elif len(message):
            count += 1
            total += len(message)
        else:
            answer = count.to_bytes(8, "big") + total.to_bytes(8, "big")
            write_all(1, len(answer).to_bytes(HEAD, "big") + answer)
            count = total = 0


main(sys.argv[1])
os._exit(0)  # nothing to clean up: skip the interpreter's shutdown, as execwire's far side does
