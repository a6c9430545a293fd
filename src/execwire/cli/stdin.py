"""Our standard input for the far code: read only when a far side asks, a copy for each gateway.

A far ``sys.stdin`` asks for data ("read", size) when its code reads; we read our
stdin then, never before, so input the code does not want stays where it was
(``while read host; do execwire run ...; done < hosts`` works). Each gateway
reads the whole input from its start: what was read is kept until every gateway
that may still ask has had it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

Reply = Callable[[bytes], None]

CHUNK = 64 * 1024


class StdinFan:
    """Standard input (file descriptor ``fd``) shared out to the gateways ``readers`` names."""

    def __init__(self, readers: list[str], fd: int = 0) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._base = 0  # offset in the input of self._chunks[0]
        self._end = 0  # offset of the end of what was read
        self._eof = False
        self._positions = {reader: 0 for reader in readers}
        self._waiting: dict[str, tuple[int, Reply]] = {}
        self._wanted = threading.Condition(self._lock)
        self._reader: threading.Thread | None = None

    def request(self, reader: str, size: int, reply: Reply) -> None:
        """Reader ``reader`` wants up to ``size`` bytes: ``reply`` gets them (b"" at the end), now or later."""
        with self._lock:
            if reader not in self._positions:
                answer: bytes | None = b""
            else:
                answer = self._take(reader, size)
                if answer is None:
                    self._waiting[reader] = (size, reply)
                    self._start_reading()
        if answer is not None:
            reply(answer)

    def forget(self, reader: str) -> None:
        """``reader`` ended: what only it still needed can go."""
        with self._lock:
            self._positions.pop(reader, None)
            self._waiting.pop(reader, None)
            self._trim()

    def _take(self, reader: str, size: int) -> bytes | None:
        """What ``reader`` gets next (b"" at the end), or None if it must wait for more to be read."""
        position = self._positions[reader]
        if position >= self._end:
            return b"" if self._eof else None
        offset = self._base
        for chunk in self._chunks:
            if position < offset + len(chunk):
                start = position - offset
                data = chunk[start:start + max(size, 1)]
                self._positions[reader] = position + len(data)
                self._trim()
                return data
            offset += len(chunk)
        raise AssertionError("a reader's position lies outside the kept input")

    def _trim(self) -> None:
        keep_from = min(self._positions.values(), default=self._end)
        while self._chunks and self._base + len(self._chunks[0]) <= keep_from:
            self._base += len(self._chunks.pop(0))

    def _start_reading(self) -> None:
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_loop, name="execwire-stdin", daemon=True)
            self._reader.start()
        self._wanted.notify()

    def _read_loop(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._wanted.wait()
            try:
                data = os.read(self._fd, CHUNK)
            except InterruptedError:
                continue
            except OSError:  # closed or not readable: that is the end of it
                data = b""
            with self._lock:
                if data:
                    self._chunks.append(data)
                    self._end += len(data)
                else:
                    self._eof = True
                ready = []
                for reader, (size, reply) in list(self._waiting.items()):
                    answer = self._take(reader, size)
                    if answer is not None:
                        del self._waiting[reader]
                        ready.append((reply, answer))
            for reply, answer in ready:
                reply(answer)
            if self._eof:
                return
