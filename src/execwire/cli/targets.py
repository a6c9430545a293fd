"""The gateways a command names: ``--on`` specs, lists, hosts files, their ids, and how each one fared."""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Sequence
from typing import NoReturn

from .._far.channel import Channel
from .._far.errors import Error, GatewayStartError
from .._far.errors import TimeoutError as ExecwireTimeout
from ..gateway import Gateway
from ..spec import XSpec
from .parser import CODE_RAISED, INTERRUPTED, START_FAILED, STDOUT_CLOSED, TIMED_OUT


class Target:
    """One ``--on`` gateway: its id, the spec as written, and how it fared."""

    def __init__(self, gateway_id: str, text: str, spec: XSpec, where: str = "") -> None:
        self.id = gateway_id
        self.text = text
        self.spec = spec  # the spec as written plus //id= (and the exec model), so the group uses our id
        self.where = where  # "hosts.txt:3" for a spec from a hosts file
        self.gateway: Gateway | None = None
        self.channel: Channel | None = None
        self.error: str | None = None  # why it could not start
        self.failure_reported = False
        self.launched: float | None = None  # time.monotonic() when its gateway was made
        self.ended: float | None = None
        self.deadline: float | None = None
        # what the far code said at its end (execwire run): its exit status and the exception type, if any
        self.exit_status: int | None = None
        self.raised: str | None = None
        self.timed_out = False
        self.lost: str | None = None  # why the gateway was lost while the code ran
        self.process_status: int | None = None  # the far process's own exit code, when it is known
        self.stopped_by: str | None = None  # "interrupted" (Ctrl-C, SIGTERM) or "stdout closed"
        self.outcome: str | None = None  # set at the end: see OUTCOMES

    @property
    def state(self) -> str:
        """'waiting', 'starting', 'up', 'failed' or 'closed', noting a start-up failure on the way."""
        if self.error is not None:
            return "failed"
        if self.gateway is None:
            return "waiting" if self.launched is None else "starting"
        state = self.gateway.state
        if state == "failed" and self.error is None:
            self.error = start_error_text(self.gateway)
        return state

    @property
    def seconds(self) -> float | None:
        if self.launched is None:
            return None
        return (self.ended if self.ended is not None else time.monotonic()) - self.launched

    def conclude(self) -> None:
        """Decide the outcome from what happened (called once, when the gateway has ended)."""
        if self.outcome is not None:
            return
        if self.launched is None:
            self.outcome = "not started"
        elif self.timed_out:
            self.outcome = "timeout"
        elif self.error is not None:
            self.outcome = "failed"
        elif self.exit_status is not None:
            self.outcome = "raised" if self.raised else ("ok" if self.exit_status == 0 else "exit")
        elif self.stopped_by is not None:
            self.outcome = self.stopped_by
        elif self.lost is not None:
            self.outcome = "lost"
        else:
            self.outcome = "ok"

    @property
    def status(self) -> int | None:
        """The exit status this gateway asks for (the command's is the highest); None if it never started."""
        outcome = self.outcome
        if outcome in ("ok", "exit", "raised"):
            assert self.exit_status is not None
            return self.exit_status & 0xFF
        if outcome == "lost":
            code = self.process_status
            if code is not None and code < 0:
                return 128 - code  # killed by a signal: as a shell reports it
            return code if code else CODE_RAISED
        return {"failed": START_FAILED, "timeout": TIMED_OUT, "interrupted": INTERRUPTED,
                "stdout closed": STDOUT_CLOSED}.get(outcome or "")

    @property
    def status_word(self) -> str:
        """The outcome as the summary shows it."""
        outcome = self.outcome or "running"
        if outcome == "exit":
            return f"exit {self.exit_status}"
        if outcome == "raised":
            return f"raised {self.raised}"
        if outcome == "failed":
            return "could not start"
        if outcome == "timeout":
            return "timed out"
        if outcome == "lost":
            return "lost" + self.how_the_process_ended()
        return outcome

    def how_the_process_ended(self) -> str:
        """" (exit code 5)", " (SIGKILL)", or "" when the far process's end is not known."""
        code = self.process_status
        if code is not None and code < 0:
            try:
                return f" ({signal.Signals(-code).name})"
            except ValueError:
                return f" (signal {-code})"
        return f" (exit code {code})" if code else ""


OUTCOMES = ("ok", "exit", "raised", "lost", "failed", "timeout", "interrupted", "stdout closed", "not started")


def start_error_text(gateway: Gateway) -> str:
    """Why a gateway whose state is 'failed' could not start.

    The gateway says 'failed' a moment before it is done failing (it still kills its
    process), so wait for that instead of asking with no time at all.
    """
    try:
        gateway.wait_ready(10.0)
    except GatewayStartError as exc:
        return str(exc)
    except (Error, ExecwireTimeout) as exc:
        return f"gateway {gateway.id!r}: {exc}"
    return f"gateway {gateway.id!r} could not start"


# -- from the command line ------------------------------------------------------


def spec_texts(values: Sequence[str], parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """The specs of every ``--on``: lists split at commas, ``@FILE`` read line by line; (spec, where)."""
    found: list[tuple[str, str]] = []
    for value in values:
        if value.startswith("@"):
            found.extend(read_hosts_file(value[1:], parser))
            continue
        for part in value.split(","):
            if not part.strip():
                usage_error(parser, f"--on {value!r}: an empty spec in the list (two commas in a row, or one at an "
                                    f"end)")
            found.append((part.strip(), ""))
    return found


def read_hosts_file(path: str, parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """One spec per line; blank lines and comments (from a '#' at the start or after a blank) are left out."""
    try:
        with open(path, encoding="utf-8") as hosts:
            lines = hosts.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        usage_error(parser, f"--on @{path}: cannot read the hosts file: {exc}")
    found = []
    for number, line in enumerate(lines, 1):
        text = _without_comment(line).strip()
        if text:
            found.append((text, f"{path}:{number}"))
    if not found:
        usage_error(parser, f"--on @{path}: the hosts file names no gateway (one spec per line)")
    return found


def _without_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    for index, char in enumerate(line):
        if char == "#" and index > 0 and line[index - 1] in " \t":
            return line[:index]
    return line


def parse_targets(values: Sequence[str], parser: argparse.ArgumentParser, main_thread: bool = False) -> list[Target]:
    """Check every spec before anything starts; give each gateway its id (explicit ones are reserved).

    ``main_thread``: run the code in the far main thread (exec model main_thread_only) where the
    spec does not choose, except on gateways that others start through (via=, installvia=).
    """
    return make_targets(spec_texts(values, parser) if values else [("popen", "")], parser, main_thread)


def make_targets(found: Sequence[tuple[str, str]], parser: argparse.ArgumentParser,
                 main_thread: bool = False) -> list[Target]:
    """The targets of specs already split: (spec, where) pairs, in order (see parse_targets)."""
    specs: list[tuple[XSpec, str]] = []
    for text, where in found:
        try:
            specs.append((XSpec(text), where))
        except ValueError as exc:
            usage_error(parser, f"{where + ': ' if where else ''}--on {text!r}: {exc}")
    explicit: set[str] = set()
    for spec, where in specs:
        if spec.id is not None:
            if spec.id in explicit:
                usage_error(parser, f"{where + ': ' if where else ''}gateway id {spec.id!r} is given by two "
                                    f"--on specs; ids must differ")
            explicit.add(spec.id)
    passed_through = {spec.via for spec, _ in specs} | {spec.installvia for spec, _ in specs}
    targets: list[Target] = []
    number = 0
    for spec, where in specs:
        gateway_id = spec.id
        extra = ""
        if gateway_id is None:
            while f"gw{number}" in explicit:
                number += 1
            gateway_id = f"gw{number}"
            number += 1
            extra += f"//id={gateway_id}"
        if main_thread and spec.execmodel is None and gateway_id not in passed_through:
            extra += "//execmodel=main_thread_only"
        for key in ("via", "installvia"):
            other = getattr(spec, key)
            if other is not None and other not in {target.id for target in targets}:
                usage_error(parser, f"--on {str(spec)!r}: key {key!r} names gateway {other!r}, which no earlier "
                                    f"--on defines; add //id={other} to the spec of that gateway, before this one")
        targets.append(Target(gateway_id, str(spec), XSpec(f"{spec}{extra}"), where))
    return targets


def usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.error(message)
