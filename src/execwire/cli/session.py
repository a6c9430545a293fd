"""The gateways of one ``execwire`` command: started (at most N at once), watched, timed out, terminated."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from typing import Protocol

from .._far.errors import Error
from ..group import Group
from .console import Console, OutputRouter, _isatty, _terminal_size
from .parser import OK, STDOUT_CLOSED
from .targets import Target


class Job(Protocol):
    """What a command does with each gateway once it is made."""

    def launch(self, target: Target) -> None:
        """Start the work on ``target.gateway``; call ``Session.end(target)`` when it is over."""


class ProgressJob(Job, Protocol):
    """A job whose gateways show how far they are in the status block, until each has ended."""

    def describe(self, target: Target) -> str | None:
        """The state shown for a gateway that is up (None: just "up")."""


_WAKE = object()


class Session:
    """The gateways of one command, the status block while they start, and their clean end.

    The main thread runs ``run()``: it makes gateways (at most ``max_parallel`` alive),
    times them out and collects the ones that ended. Everything that ends a gateway
    elsewhere (a callback, a finisher thread) reports through ``end()``.
    """

    def __init__(self, targets: list[Target], timeout: float | None = None, max_parallel: int | None = None,
                 router_options: dict[str, bool] | None = None, status_block: bool = True) -> None:
        self.targets = targets
        self.timeout = timeout
        self.max_parallel = max_parallel or len(targets)
        self.console = Console(show_status=status_block and _isatty(sys.stderr) and os.environ.get("TERM") != "dumb")
        self.console.on_stdout_closed = self._stdout_closed
        self.router = OutputRouter(self.console, prefixed=len(targets) > 1, **(router_options or {}))
        self.group = Group()
        self.active: list[Target] = []
        # gateways that others start through (via=, installvia=): they stay up until the command ends
        self.passed_through = {spec for target in targets for spec in (target.spec.via, target.spec.installvia)
                               if spec is not None}
        self._ended: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._ending: set[str] = set()
        self._ending_lock = threading.Lock()
        self._stop_reason: str | None = None
        self._status_live = self.console.show_status
        self._job: Job | None = None

    # -- messages -----------------------------------------------------------
    def notice(self, target: Target, text: str) -> None:
        self.router.notice(target.id, text)

    def fail(self, target: Target, error: str) -> None:
        """Record and report a start-up failure (once)."""
        if target.failure_reported:
            return
        target.failure_reported = True
        target.error = (target.error or error).replace(str(target.spec), target.text)
        self.notice(target, f"could not start: {target.error}")

    # -- the main loop --------------------------------------------------------
    def run(self, job: Job) -> None:
        """Start every gateway (at most max_parallel at once) and wait until each has ended."""
        self._job = job
        waiting = deque(self.targets)
        while waiting or self.active:
            while waiting and len(self.active) < self.max_parallel and self._stop_reason is None:
                self._launch(waiting.popleft(), job)
            if self._stop_reason is not None:
                self.stop_all(self._stop_reason)
                return
            self.update_status()
            try:
                ended = self._ended.get(timeout=self.tick())
            except queue.Empty:
                ended = None
            self._collect(ended)
            self._end_failed_starts()
            self._time_out_expired()
        self.update_status()

    def _launch(self, target: Target, job: Job) -> None:
        target.launched = time.monotonic()
        if self.timeout is not None:
            target.deadline = target.launched + self.timeout
        self.active.append(target)
        try:
            gateway = self.group._start_gateway(target.spec)  # returns at once: the loop watches it start
        except (Error, OSError, ValueError) as exc:
            self.fail(target, str(exc))
            self.end(target)
            return
        gateway.output_handler = self.router.output
        target.gateway = gateway
        job.launch(target)

    def _collect(self, ended: object) -> None:
        while ended is not None:
            if isinstance(ended, Target) and ended in self.active:
                self.active.remove(ended)
                self._conclude(ended)
            try:
                ended = self._ended.get_nowait()
            except queue.Empty:
                ended = None

    def _conclude(self, target: Target) -> None:
        if target.ended is None:
            target.ended = time.monotonic()
        gateway = target.gateway
        popen = getattr(gateway._process, "popen", None) if gateway is not None else None  # a local process
        if popen is not None and target.process_status is None:
            target.process_status = popen.returncode
        if target.error is not None:
            self.fail(target, target.error)
        target.conclude()
        extra: dict[str, object] = {"status": target.outcome, "seconds": round(target.seconds or 0.0, 3)}
        if target.error is not None:
            extra["error"] = target.error
        self.router.record(target.id, "exit", target.status, **extra)
        self.router.finish(target.id)

    def end(self, target: Target) -> None:
        """The target's gateway is over (from any thread; once)."""
        with self._ending_lock:
            if target.id in self._ending:
                return
            self._ending.add(target.id)
        target.ended = time.monotonic()
        self._ended.put(target)

    def _end_failed_starts(self) -> None:
        """A gateway that failed to start is over, even if its job still waits on it somewhere."""
        for target in self.active:
            if target.error is not None or target.state == "failed":
                self.end(target)

    def _time_out_expired(self) -> None:
        now = time.monotonic()
        for target in list(self.active):
            if target.deadline is not None and now >= target.deadline and not target.timed_out:
                if target.id in self._ending:
                    continue
                what = "starting" if target.state == "starting" else "running"
                target.timed_out = True
                self.notice(target, f"still {what} after {self.timeout:g} seconds (--timeout): terminated")
                self._terminate_in_background(target)

    def _terminate_in_background(self, target: Target) -> None:
        def terminate() -> None:
            try:
                if target.gateway is not None:
                    target.gateway.exit(timeout=0.5)
            finally:
                self.end(target)

        threading.Thread(target=terminate, name=f"execwire-timeout-{target.id}", daemon=True).start()

    def tick(self) -> float:
        """How long to wait for the next event before looking again."""
        wait = 0.05 if self._status_live else 0.5
        deadlines = [target.deadline for target in self.active if target.deadline is not None and
                     not target.timed_out]
        if deadlines:
            wait = min(wait, max(min(deadlines) - time.monotonic(), 0.0))
        return wait

    # -- stopping everything ------------------------------------------------
    def _stdout_closed(self) -> None:
        """Our stdout was closed (`| head`): stop every gateway now (called from any thread)."""
        self._stop_reason = "stdout closed"
        self._ended.put(_WAKE)

    @property
    def stopped_by(self) -> str | None:
        return self._stop_reason

    def stop_all(self, reason: str) -> None:
        """Ctrl-C, SIGTERM or a closed stdout: terminate every gateway still active (bounded)."""
        self._stop_reason = reason
        self.router.flush()  # what came before the stop is shown (where stdout is still open) ...
        self.router.muted = True  # ... but not what the gateways say as they are ended
        for target in self.active:
            target.stopped_by = reason
        self.close(timeout=0.5 if reason == "stdout closed" else 1.0)
        self._collect(_WAKE)
        for target in list(self.active):
            self.active.remove(target)
            self._conclude(target)

    def close(self, timeout: float) -> None:
        """Terminate every gateway (bounded), then write what waited for a newline."""
        self._end_status()
        self.group.terminate(timeout=timeout)
        self.router.flush()

    # -- the status block while gateways start -----------------------------
    def update_status(self) -> None:
        """Report new start-up failures; redraw the status block, or end it once nothing is starting."""
        starting = False
        for target in self.targets:
            state = target.state
            starting = starting or state in ("starting", "waiting") or (
                self._describes and target.ended is None and target.error is None)
            if target.error is not None and target.launched is not None:
                self.fail(target, target.error)
        if not self._status_live:
            return
        if not starting:
            self.console.status(self._status_lines())
            self._end_status()
            return
        self.console.status(self._status_lines())

    @property
    def _describes(self) -> bool:
        """The job shows progress (the status block stays until every gateway has ended)."""
        return callable(getattr(self._job, "describe", None))

    def end_status(self) -> None:
        """Stop drawing the status block (what it shows stays); a pdb session takes the terminal."""
        self._end_status()

    def _end_status(self) -> None:
        if self._status_live:
            self._status_live = False
            self.console.end_status()

    def _status_lines(self) -> list[str]:
        width, height = _terminal_size()
        width -= 1  # a line that fills the row would wrap and spoil the count of lines to redraw
        states = [(target, target.state) for target in self.targets]
        if len(states) > max(height - 2, 1):  # too many to redraw in place: one summary line
            counts: dict[str, int] = {}
            for target, state in states:
                word = "done" if target.ended is not None and state != "failed" else (
                    "up" if state == "closed" else state)
                counts[word] = counts.get(word, 0) + 1
            summary = ", ".join(f"{count} {word}" for word, count in sorted(counts.items()))
            return [f"gateways: {summary}"[:width]]
        id_width = max(len(target.id) for target in self.targets)
        spec_width = min(max(len(target.text) for target in self.targets), 32)
        lines = []
        for target, state in states:
            if state == "failed":
                state = "failed: " + short_reason(target)
            elif state in ("up", "closed"):
                described = self._job.describe(target) if self._describes else None  # type: ignore[union-attr]
                state = described or "up"  # closed: it started, and its work may already be done
            spec = target.text if len(target.text) <= spec_width else target.text[:spec_width - 1] + "~"
            line = f"{target.id:<{id_width}}  {spec:<{spec_width}}  {state}"
            lines.append(line if len(line) <= width else line[:max(width - 3, 1)] + "...")
        return lines

    # -- the verdict --------------------------------------------------------
    def exit_status(self) -> int:
        """The highest status of the gateways (a closed stdout wins: nobody saw the rest)."""
        if self._stop_reason == "stdout closed":
            return STDOUT_CLOSED
        statuses = [target.status for target in self.targets if target.status is not None]
        return max(statuses, default=OK)


def short_reason(target: Target) -> str:
    """The first line of a start-up error, without the gateway id and spec the status line shows anyway."""
    lines = (target.error or "").strip().splitlines()
    reason = lines[0] if lines else "unknown reason"
    for lead in (f"gateway {target.id!r} ({target.text}): ", f"gateway {target.id!r} ({target.spec}): ",
                 f"gateway {target.id!r}: "):
        if reason.startswith(lead):
            return reason[len(lead):]
    return reason
