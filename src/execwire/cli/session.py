"""The gateways of one ``execwire`` command: started side by side, watched while they start, terminated."""

from __future__ import annotations

import os
import sys
import time

from .._far.errors import Error
from .._far.errors import TimeoutError as ExecwireTimeout
from ..group import Group
from .console import Console, OutputRouter, _isatty, _short_reason, _terminal_size
from .parser import CODE_RAISED, OK, START_FAILED, TIMED_OUT, Target

# -- a session: gateways started together, watched, terminated -----------------


class Session:
    """The gateways of one command, the status block while they start, and their clean end."""

    def __init__(self, targets: list[Target], timeout: float | None) -> None:
        self.targets = targets
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.console = Console(show_status=_isatty(sys.stderr) and os.environ.get("TERM") != "dumb")
        self.router = OutputRouter(self.console, prefixed=len(targets) > 1)
        self.group = Group()
        self._status_live = self.console.show_status

    # -- messages -----------------------------------------------------------
    def notice(self, target: Target, text: str) -> None:
        """A message about one gateway on stderr: "[id] ..." or "execwire: id: ..."."""
        if not self.router.prefixed:
            text = f"execwire: {target.id}: {text}"
        self.router.text(target.id, 2, text)

    def fail(self, target: Target, error: str) -> None:
        """Record and report a start-up failure (once)."""
        if target.outcome == "failed":
            return
        target.error = (target.error or error).replace(str(target.spec), target.text)
        target.outcome = "failed"
        self.notice(target, f"could not start: {target.error}")

    # -- start-up -------------------------------------------------------------
    def start(self) -> None:
        """Make every gateway; each starts in the background, so they start side by side."""
        for target in self.targets:
            try:
                gateway = self.group.makegateway(target.spec)
            except (Error, OSError, ValueError) as exc:
                self.fail(target, str(exc))
                continue
            gateway.output_handler = self.router.output
            target.gateway = gateway
        self.update_status()

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def tick(self, longest: float = 0.5) -> float:
        """How long to wait for the next event before looking again."""
        wait = 0.05 if self._status_live else longest
        remaining = self.remaining()
        return wait if remaining is None else min(wait, remaining)

    def update_status(self) -> None:
        """Report new start-up failures; redraw the status block, or end it once nothing is starting."""
        starting = False
        for target in self.targets:
            state = target.state
            starting = starting or state == "starting"
            if target.error is not None:
                self.fail(target, target.error)
        if not self._status_live:
            return
        self.console.status(self._status_lines())
        if not starting:
            self._status_live = False
            self.console.end_status()

    def _status_lines(self) -> list[str]:
        width, height = _terminal_size()
        width -= 1  # a line that fills the row would wrap and spoil the count of lines to redraw
        states = [(target, target.state) for target in self.targets]
        if len(states) > max(height - 2, 1):  # too many to redraw in place: one summary line
            counts: dict[str, int] = {}
            for _, state in states:
                word = "up" if state == "closed" else state
                counts[word] = counts.get(word, 0) + 1
            summary = ", ".join(f"{count} {word}" for word, count in sorted(counts.items()))
            return [f"gateways: {summary}"[:width]]
        id_width = max(len(target.id) for target in self.targets)
        spec_width = min(max(len(target.text) for target in self.targets), 32)
        lines = []
        for target, state in states:
            if state == "failed":
                state = "failed: " + _short_reason(target)
            elif state == "closed":
                state = "up"  # it started, and its work may already be done
            spec = target.text if len(target.text) <= spec_width else target.text[:spec_width - 1] + "~"
            line = f"{target.id:<{id_width}}  {spec:<{spec_width}}  {state}"
            lines.append(line if len(line) <= width else line[:max(width - 3, 1)] + "...")
        return lines

    def wait_started(self) -> None:
        """Until no gateway is starting any more, or the deadline passes."""
        while True:
            self.update_status()
            starting = [target for target in self.targets if target.state == "starting"]
            if not starting or self.expired():
                return
            gateway = starting[0].gateway
            assert gateway is not None
            try:
                gateway.wait_ready(self.tick())
            except (Error, ExecwireTimeout):
                pass

    # -- the end --------------------------------------------------------------
    def time_out(self, targets: list[Target]) -> None:
        for target in targets:
            what = "starting" if target.state == "starting" else "running"
            self.notice(target, f"still {what} after {self.timeout:g} seconds (--timeout): terminated")
            target.outcome = "timeout"

    def close(self, timeout: float) -> None:
        """Terminate every gateway (bounded), then write what waited for a newline."""
        if self._status_live:
            self._status_live = False
            self.console.end_status()
        self.group.terminate(timeout=timeout)
        self.router.flush()

    def exit_status(self) -> int:
        outcomes = {target.outcome for target in self.targets}
        if "timeout" in outcomes:
            return TIMED_OUT
        if "failed" in outcomes:
            return START_FAILED
        if outcomes & {"raised", "lost"}:
            return CODE_RAISED
        return OK
