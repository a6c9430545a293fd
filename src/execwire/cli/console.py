"""Terminal output of ``execwire``: whole lines from many gateways around a status block on stderr."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from ..gateway import Gateway
from .parser import Target

# -- output --------------------------------------------------------------------


class Console:
    """Writes to stdout and stderr from many threads, keeping the status block on stderr intact.

    While the status block is shown, anything written to a terminal is put
    above it: the block is erased, the text written, the block drawn again.
    """

    def __init__(self, show_status: bool) -> None:
        self.show_status = show_status
        self._lock = threading.Lock()
        self._streams = {1: sys.stdout, 2: sys.stderr}
        self._ttys = {number: _isatty(stream) for number, stream in self._streams.items()}
        self._broken: set[int] = set()
        self._status: list[str] = []
        self._drawn = 0  # lines of the status block now on the screen

    @property
    def status_shown(self) -> bool:
        return self._drawn > 0

    def encoding(self, stream: int) -> str:
        return getattr(self._streams[stream], "encoding", None) or "utf-8"

    def write(self, stream: int, data: bytes) -> None:
        """Write ``data`` to stdout (1) or stderr (2) in one piece."""
        with self._lock:
            cover = self._drawn > 0 and self._ttys[stream]
            if cover:
                self._erase()
            self._raw(stream, data)
            if cover:
                self._draw()

    def text(self, stream: int, text: str) -> None:
        self.write(stream, text.encode(self.encoding(stream), "backslashreplace"))

    def status(self, lines: list[str]) -> None:
        """Draw the status block anew with ``lines``."""
        with self._lock:
            if lines == self._status and self._drawn:
                return
            self._erase()
            self._status = lines
            self._draw()

    def end_status(self) -> None:
        """Leave the block as it stands on the screen; what follows goes below it."""
        with self._lock:
            self._drawn = 0
            self._status = []

    def _erase(self) -> None:
        if self._drawn:
            self._raw(2, f"\x1b[{self._drawn}A\r\x1b[J".encode())
            self._drawn = 0

    def _draw(self) -> None:
        if self._status:
            self._raw(2, ("\n".join(self._status) + "\n").encode(self.encoding(2), "replace"))
            self._drawn = len(self._status)

    def _raw(self, stream: int, data: bytes) -> None:
        if stream in self._broken:
            return
        target = self._streams[stream]
        try:
            target.flush()
            buffer = getattr(target, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                target.write(data.decode(self.encoding(stream), "replace"))
                target.flush()
        except (OSError, ValueError):
            self._broken.add(stream)  # a closed pipe (e.g. `| head`): drop the rest quietly


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class OutputRouter:
    """Turns far output and sent items into whole lines, prefixed by gateway id when asked.

    Output arrives in chunks that may end mid-line; the unfinished rest waits,
    per gateway and stream, until its newline comes or the gateway ends.
    """

    LIMIT = 64 * 1024  # an unfinished line longer than this is written anyway

    def __init__(self, console: Console, prefixed: bool) -> None:
        self.console = console
        self.prefixed = prefixed
        self._pending: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def prefix(self, gateway_id: str) -> str:
        return f"[{gateway_id}] " if self.prefixed else ""

    def output(self, gateway: Gateway, stream: int, data: bytes) -> None:
        """The gateways' output handler: far stdout (1) and stderr (2)."""
        self.feed(gateway.id, 2 if stream == 2 else 1, data)

    def feed(self, gateway_id: str, stream: int, data: bytes) -> None:
        key = (gateway_id, stream)
        with self._lock:
            data = self._pending.pop(key, b"") + data
            if not self.prefixed and not self.console.status_shown:
                self.console.write(stream, data)  # nothing to add: pass it through as it comes
                return
            complete, newline, rest = data.rpartition(b"\n")
            if len(rest) > self.LIMIT:
                complete, newline, rest = data, b"\n", b""
            if newline:
                self.console.write(stream, self._lines(gateway_id, complete))
            if rest:
                self._pending[key] = rest

    def item(self, gateway_id: str, item: object) -> None:
        """An item the code sent: str as is, anything else as repr, on lines of its own."""
        text = item if isinstance(item, str) else repr(item)
        self.text(gateway_id, 1, text)

    def text(self, gateway_id: str, stream: int, text: str) -> None:
        """Whole lines of ``text`` (a newline is added), prefixed when asked."""
        data = text.encode(self.console.encoding(stream), "backslashreplace")
        self.console.write(stream, self._lines(gateway_id, data))

    def flush(self, gateway_id: str | None = None) -> None:
        """Write what waits for a newline (of one gateway, or of all)."""
        with self._lock:
            for key in sorted(self._pending):
                if gateway_id is None or key[0] == gateway_id:
                    rest = self._pending.pop(key)
                    if self.prefixed:
                        self.console.write(key[1], self._lines(key[0], rest))
                    else:
                        self.console.write(key[1], rest)

    def _lines(self, gateway_id: str, block: bytes) -> bytes:
        """``block`` (without its final newline) as prefixed lines, each ending in a newline."""
        prefix = self.prefix(gateway_id).encode()
        return b"".join(prefix + line + b"\n" for line in block.split(b"\n"))


def _short_reason(target: Target) -> str:
    """The first line of a start-up error, without the gateway id and spec the status line shows anyway."""
    lines = (target.error or "").strip().splitlines()
    reason = lines[0] if lines else "unknown reason"
    for lead in (f"gateway {target.id!r} ({target.text}): ", f"gateway {target.id!r}: "):
        if reason.startswith(lead):
            return reason[len(lead):]
    return reason


def _terminal_size() -> tuple[int, int]:
    """Columns and rows of the terminal on stderr (a new pseudo-terminal may say 0: then guess)."""
    try:
        columns, rows = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        columns = rows = 0
    if columns <= 0:
        columns = _int_env("COLUMNS", 80)
    if rows <= 0:
        rows = _int_env("LINES", 24)
    return max(columns, 20), max(rows, 3)


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
