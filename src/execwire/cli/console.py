"""Terminal output of ``execwire``: whole lines from many gateways around a status block on stderr."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

# -- output --------------------------------------------------------------------


class Console:
    """Writes to stdout and stderr from many threads, keeping the status block on stderr intact.

    While the status block is shown, anything written to a terminal is put
    above it: the block is erased, the text written, the block drawn again.
    When stdout turns out closed (a reader such as `head` has left), ``on_stdout_closed``
    is called once and what follows for stdout is dropped.
    """

    def __init__(self, show_status: bool) -> None:
        self.show_status = show_status
        self.on_stdout_closed: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._streams = {1: sys.stdout, 2: sys.stderr}
        self.ttys = {number: _isatty(stream) for number, stream in self._streams.items()}
        self._broken: set[int] = set()
        self._status: list[str] = []
        self._drawn = 0  # lines of the status block now on the screen

    @property
    def status_shown(self) -> bool:
        return self._drawn > 0

    @property
    def stdout_closed(self) -> bool:
        return 1 in self._broken

    def encoding(self, stream: int) -> str:
        return getattr(self._streams[stream], "encoding", None) or "utf-8"

    def write(self, stream: int, data: bytes) -> None:
        """Write ``data`` to stdout (1) or stderr (2) in one piece."""
        with self._lock:
            cover = self._drawn > 0 and self.ttys[stream]
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
            buffer = getattr(target, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                target.write(data.decode(self.encoding(stream), "replace"))
                target.flush()
        except (OSError, ValueError):
            self._broken.add(stream)
            _point_at_devnull(stream)  # nothing may fail at exit flushing what was left in the buffer
            if stream == 1 and self.on_stdout_closed is not None:
                self.on_stdout_closed()


def _point_at_devnull(fd: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class OutputRouter:
    """Turns far output and sent items into lines: passed through, prefixed, grouped or as JSON.

    Output arrives in chunks that may end mid-line; the unfinished rest waits,
    per gateway and stream, until its newline comes, an item follows, or the
    gateway ends. With ``grouped``, a gateway's lines are held until it ends.
    """

    LIMIT = 64 * 1024  # an unfinished line longer than this is written anyway

    def __init__(self, console: Console, prefixed: bool, grouped: bool = False, as_json: bool = False) -> None:
        self.console = console
        self.prefixed = prefixed
        self.grouped = grouped
        self.as_json = as_json
        self._pending: dict[tuple[str, int], bytes] = {}
        self._open_line: set[tuple[str, int]] = set()  # passed through without its newline yet
        self._held: dict[str, list[tuple[int, bytes]]] = {}
        self._lock = threading.RLock()
        self.muted = False  # set once we stop every gateway: what they say while they end is not theirs

    def prefix(self, gateway_id: str) -> str:
        return f"[{gateway_id}] " if self.prefixed else ""

    def output(self, gateway: Any, stream: int, data: bytes) -> None:
        """The gateways' output handler: far stdout (1) and stderr (2) of their processes."""
        self.feed(gateway.id, 2 if stream == 2 else 1, data)

    def feed(self, gateway_id: str, stream: int, data: bytes) -> None:
        """Output of one gateway, in pieces of any size."""
        key = (gateway_id, stream)
        with self._lock:
            passing = not (self.prefixed or self.grouped or self.as_json or self.console.status_shown)
            if passing and key not in self._pending:
                self._emit(gateway_id, stream, data)  # nothing to add: pass it through as it comes
                if data:
                    (self._open_line.discard if data.endswith(b"\n") else self._open_line.add)(key)
                return
            data = self._pending.pop(key, b"") + data
            complete, newline, rest = data.rpartition(b"\n")
            if len(rest) > self.LIMIT:
                complete, newline, rest = data, b"\n", b""
            if newline:
                self._lines(gateway_id, stream, complete + b"\n")
            if rest:
                self._pending[key] = rest

    def item(self, gateway_id: str, item: object) -> None:
        """An item the code sent, as its repr (or JSON) on a line of its own, after the output before it."""
        with self._lock:
            self._end_lines(gateway_id)
            if self.as_json:
                self._json(gateway_id, "item", item)
            else:
                text = repr(item).encode(self.console.encoding(1), "backslashreplace") + b"\n"
                self._lines(gateway_id, 1, text)

    def text(self, gateway_id: str, stream: int, text: str) -> None:
        """Whole lines of ``text`` (a newline is added) as if the gateway had printed them."""
        self.feed(gateway_id, stream, text.encode(self.console.encoding(stream), "backslashreplace") + b"\n")

    def notice(self, gateway_id: str, text: str) -> None:
        """execwire's own message about a gateway, on stderr: "[id] ..." or "execwire: id: ..."."""
        if not self.prefixed or self.as_json:
            self.console.text(2, f"execwire: {gateway_id}: {text}\n")
        else:
            self.text(gateway_id, 2, text)

    def record(self, gateway_id: str, kind: str, value: object, **extra: object) -> None:
        """A JSON record (--json only), after what the gateway printed before."""
        if self.as_json:
            with self._lock:
                self._end_lines(gateway_id)
                muted, self.muted = self.muted, False  # ours, not the gateway's: shown even after a stop
                try:
                    self._json(gateway_id, kind, value, **extra)
                finally:
                    self.muted = muted

    def log(self, gateway_id: str, text: str, fields: dict[str, object]) -> None:
        """A far log record: its lines on the gateway's stderr, or (--json) a record of kind "log"."""
        with self._lock:
            if self.as_json:
                self._end_lines(gateway_id)
                self._json(gateway_id, "log", text, **fields)
            else:
                self.text(gateway_id, 2, text)

    def finish(self, gateway_id: str) -> None:
        """The gateway has ended: write what waits for a newline, and its held lines."""
        with self._lock:
            self._end_lines(gateway_id, at_the_end=True)
            for stream, data in self._held.pop(gateway_id, []):
                self.console.write(stream, data)

    def flush(self) -> None:
        """Write everything still waiting, of every gateway."""
        with self._lock:
            for gateway_id in sorted({key[0] for key in self._pending} | set(self._held)):
                self.finish(gateway_id)

    # -- the pieces
    def _end_lines(self, gateway_id: str, at_the_end: bool = False) -> None:
        """Unfinished lines of the gateway end here, so what follows starts on a line of its own.

        Output passed through as it came is left as it is at the gateway's end: a last
        line without a newline stays so, as it would from python itself.
        """
        for stream in (1, 2):
            key = (gateway_id, stream)
            rest = self._pending.pop(key, b"")
            if rest:
                self._lines(gateway_id, stream, rest + b"\n")
            if key in self._open_line:
                self._open_line.discard(key)
                if not at_the_end:
                    self._emit(gateway_id, stream, b"\n")

    def _lines(self, gateway_id: str, stream: int, block: bytes) -> None:
        """Whole lines (``block`` ends in a newline), prefixed when asked."""
        if self.as_json:
            kind = "stdout" if stream == 1 else "stderr"
            for line in block.splitlines(keepends=True):
                self._json(gateway_id, kind, line.decode("utf-8", "replace"))
            return
        prefix = self.prefix(gateway_id).encode()
        if prefix:
            block = b"".join(prefix + line + b"\n" for line in block[:-1].split(b"\n"))
        self._emit(gateway_id, stream, block)

    def _json(self, gateway_id: str, kind: str, value: object, **extra: object) -> None:
        record: dict[str, object] = {"gateway": gateway_id, "kind": kind, "value": value, **extra}
        try:
            line = json.dumps(record, allow_nan=False)
        except (TypeError, ValueError):
            record["value"] = None
            record["repr"] = repr(value)
            line = json.dumps(record)
        self._emit(gateway_id, 1, line.encode() + b"\n")

    def _emit(self, gateway_id: str, stream: int, data: bytes) -> None:
        if self.muted:
            return
        if self.grouped:
            self._held.setdefault(gateway_id, []).append((stream, data))
        else:
            self.console.write(stream, data)


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
