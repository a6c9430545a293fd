"""The ``execwire`` command: run code on many gateways at once, or ask them who they are.

``execwire run`` ships code to every ``--on`` gateway at once and prints what it
prints and sends, prefixed by gateway id when there are several; ``execwire
info`` prints facts about each far interpreter. While gateways start, a terminal
on stderr shows one status line per gateway, updated in place.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from . import __version__
from ._far.channel import Channel
from ._far.errors import Error, GatewayStartError, RemoteError
from ._far.errors import TimeoutError as ExecwireTimeout
from .gateway import Gateway
from .group import Group
from .spec import FLAG_KEYS, KNOWN_KEYS, XSpec

OK = 0
CODE_RAISED = 1
USAGE = 2
START_FAILED = 3
TIMED_OUT = 4

SPEC_HELP = """\
gateway specs (--on SPEC, repeatable; without --on: one "popen" gateway):
  A spec is KEY=VALUE items joined by "//". It names one gateway type (popen,
  ssh=HOST or socket=HOST:PORT; via=ID alone means popen through gateway ID)
  and any options. Quote specs that hold spaces.
    popen                          a Python subprocess (this very interpreter)
    popen//python=python3.12       another local interpreter (a path or a name on PATH)
    ssh=host//python=python3       Python on an ssh host (your ~/.ssh/config applies)
    'ssh=-p 2222 user@host'        ssh with extra options
    socket=127.0.0.1:8888          a running `python -m execwire.server`
    popen//via=ID                  a Python started through gateway ID (an earlier --on)
    popen//env:NAME=value          set an environment variable on the far side
    popen//chdir=DIR               far working directory (made if missing)
    popen//nice=10                 lower the priority of the whole far process
    popen//id=NAME                 the gateway id shown in prefixes (default gw0, gw1, ...)
{other_keys}
"""

EXIT_HELP = """\
exit status:
  0    every gateway ran the code without error
  1    the code raised on some gateway (its remote traceback is printed, prefixed)
       or a gateway was lost while the code ran
  2    usage error or bad gateway spec (the message names the bad key)
  3    a gateway could not start (its error is printed; the others still ran)
  4    --timeout passed; gateways still running were terminated
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
  When several apply, the highest of 4, 3, 1 wins.
"""

INFO_EXIT_HELP = """\
exit status:
  0    every gateway answered
  2    usage error or bad gateway spec (the message names the bad key)
  3    a gateway could not start (its error is printed; the others are still shown)
  4    --timeout passed before every gateway had started
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
"""

ENV_HELP = """\
environment:
  EXECWIRE_DEBUG=1   trace every message of both sides to stderr
"""

RUN_DESCRIPTION = """\
Run Python code on one or many gateways at once. The code sees `channel` (and
__name__ == "__channelexec__"). What it prints reaches stdout and stderr; every
item it sends with channel.send() is printed on a line of its own (str as is,
anything else as repr). With several gateways every line is prefixed with the
gateway id, e.g. "[gw0] ".
"""

RUN_EXAMPLES = """\
examples:
  execwire run -c 'import sys; print(sys.version)'
  execwire run --on popen//id=old//python=python3.8 --on popen//id=new script.py
  echo 'import os; channel.send(os.getpid())' | execwire run -
  execwire run --timeout 10 --on ssh=web1 --on ssh=web2 -c 'import socket; print(socket.gethostname())'
"""

INFO_DESCRIPTION = """\
Print for each gateway its id, spec, executable, version, implementation,
platform, pid and cwd: one block per gateway, or one JSON object per line with
--json (a gateway that failed gives an object with "error").
"""

INFO_EXAMPLES = """\
examples:
  execwire info
  execwire info --on popen//python=python3.12 --on ssh=host --json
"""

TOP_DESCRIPTION = """\
execwire starts Python interpreters elsewhere (subprocesses, ssh hosts, socket
servers, containers, other users, or any of those through another gateway),
ships code to them and prints what comes back. Run `execwire COMMAND --help`
for the options of a command.
"""


def _other_keys() -> str:
    shown = {"popen", "ssh", "socket", "via", "python", "chdir", "nice", "id"}
    keys = [key if key in FLAG_KEYS else f"{key}=..." for key in KNOWN_KEYS if key not in shown]
    return textwrap.fill("Other keys: " + ", ".join(keys) + ".", width=78, initial_indent="  ",
                         subsequent_indent="    ")


def _epilog(*parts: str) -> str:
    return "\n".join(parts)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"needs a positive number of seconds, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``execwire`` and its subcommands."""
    spec_help = SPEC_HELP.format(other_keys=_other_keys())
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="execwire", description=TOP_DESCRIPTION, formatter_class=raw,
        epilog=_epilog(spec_help, EXIT_HELP, ENV_HELP))
    parser.add_argument("--version", action="version", version=f"execwire {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--on", action="append", default=[], metavar="SPEC",
                        help="a gateway to use (repeat for several; default: popen); see 'gateway specs' below")
    common.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                        help="terminate gateways still running (or starting) after SECONDS; exit status 4")

    run = commands.add_parser(
        "run", parents=[common], formatter_class=raw, help="run Python code on one or many gateways at once",
        description=RUN_DESCRIPTION, epilog=_epilog(RUN_EXAMPLES, spec_help, EXIT_HELP, ENV_HELP))
    run.add_argument("-c", dest="code", metavar="CODE", help="the code to run, as a string")
    run.add_argument("file", nargs="?", metavar="FILE", help="a file of Python code to run; - reads standard input")

    info = commands.add_parser(
        "info", parents=[common], formatter_class=raw, help="print facts about each gateway's interpreter",
        description=INFO_DESCRIPTION, epilog=_epilog(INFO_EXAMPLES, spec_help, INFO_EXIT_HELP, ENV_HELP))
    info.add_argument("--json", action="store_true", help="one JSON object per gateway and line")
    run.set_defaults(parser=run)
    info.set_defaults(parser=info)
    return parser


# -- gateways to start ---------------------------------------------------------


class Target:
    """One ``--on`` gateway: its id, the spec as written, and how it fared."""

    def __init__(self, gateway_id: str, text: str, spec: XSpec) -> None:
        self.id = gateway_id
        self.text = text
        self.spec = spec  # the spec as written plus //id=, so the group uses our id
        self.gateway: Gateway | None = None
        self.channel: Channel | None = None
        self.error: str | None = None  # why it could not start
        self.outcome: str | None = None  # "ok", "raised", "lost", "timeout", "failed"

    @property
    def state(self) -> str:
        """'starting', 'up', 'failed' or 'closed', noting a start-up failure on the way."""
        if self.error is not None:
            return "failed"
        if self.gateway is None:
            return "starting"
        state = self.gateway.state
        if state == "failed":
            try:
                self.gateway.wait_ready(0)
            except Error as exc:
                self.error = str(exc)
        return state


def parse_targets(texts: Sequence[str], parser: argparse.ArgumentParser) -> list[Target]:
    """Check every spec before anything starts; give each gateway its id (explicit ones are reserved)."""
    specs: list[XSpec] = []
    for text in texts or ["popen"]:
        try:
            specs.append(XSpec(text))
        except ValueError as exc:
            _usage_error(parser, f"--on {text!r}: {exc}")
    explicit: set[str] = set()
    for spec in specs:
        if spec.id is not None:
            if spec.id in explicit:
                _usage_error(parser, f"gateway id {spec.id!r} is given by two --on specs; ids must differ")
            explicit.add(spec.id)
    targets: list[Target] = []
    number = 0
    for spec in specs:
        gateway_id = spec.id
        full = spec
        if gateway_id is None:
            while f"gw{number}" in explicit:
                number += 1
            gateway_id = f"gw{number}"
            number += 1
            full = XSpec(f"{spec}//id={gateway_id}")
        for key in ("via", "installvia"):
            other = getattr(spec, key)
            if other is not None and other not in {target.id for target in targets}:
                _usage_error(parser, f"--on {str(spec)!r}: key {key!r} names gateway {other!r}, which no earlier "
                                     f"--on defines; add //id={other} to the spec of that gateway, before this one")
        targets.append(Target(gateway_id, str(spec), full))
    return targets


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.error(message)


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


# -- the commands ----------------------------------------------------------------


_END = object()


class Runner:
    """``execwire run``: the code on every gateway at once, results as they come."""

    def __init__(self, session: Session, code: str) -> None:
        self.session = session
        self.code = code
        self.finished: queue.SimpleQueue[Target] = queue.SimpleQueue()

    def run(self) -> int:
        session = self.session
        session.start()
        active = [target for target in session.targets if target.gateway is not None]
        for target in list(active):
            assert target.gateway is not None
            try:
                channel = target.gateway.remote_exec(self.code)
            except Error as exc:
                session.fail(target, self._why_not_started(target.gateway, exc))
                active.remove(target)
                continue
            target.channel = channel
            channel.setcallback(lambda item, target=target: self._received(target, item), endmarker=_END)
        while active:
            try:
                target = self.finished.get(timeout=session.tick())
            except queue.Empty:
                session.update_status()
                if session.expired():
                    session.time_out(active)
                    break
                continue
            active.remove(target)
            self._report(target)
            session.update_status()
        session.close(timeout=1.0 if session.expired() else 5.0)
        return session.exit_status()

    def _why_not_started(self, gateway: Gateway, error: Error) -> str:
        """The start-up error behind a failed remote_exec (a broken pipe says little by itself)."""
        try:
            gateway.wait_ready(5.0)
        except Error as start_error:
            return str(start_error)
        return str(error)

    def _received(self, target: Target, item: object) -> None:
        """Channel callback (the gateway's callback thread): print an item, or end at the endmarker."""
        if item is not _END:
            self.session.router.item(target.id, item)
            return
        # the code is done: end its gateway now, so all it printed is in before the verdict
        threading.Thread(target=self._finish, args=(target,), name=f"execwire-finish-{target.id}",
                         daemon=True).start()

    def _finish(self, target: Target) -> None:
        try:
            if target.gateway is not None:
                target.gateway.exit(timeout=2.0)
            self.session.router.flush(target.id)
        finally:
            self.finished.put(target)

    def _report(self, target: Target) -> None:
        assert target.channel is not None
        session = self.session
        try:
            target.channel.waitclose(0)
        except RemoteError as exc:
            target.outcome = "raised"
            session.router.text(target.id, 2, exc.formatted.rstrip("\n"))
        except GatewayStartError as exc:
            session.fail(target, str(exc))
        except Error as exc:
            target.outcome = "lost"
            session.notice(target, f"gateway lost while the code ran: {exc}")
        else:
            target.outcome = "ok"


def info(session: Session, as_json: bool) -> int:
    """``execwire info``: wait for every gateway, then one block or JSON object each."""
    session.start()
    session.wait_started()
    late = [target for target in session.targets if target.state == "starting"]
    if late:
        session.time_out(late)
    for target in session.targets:
        record: dict[str, Any] = {"id": target.id, "spec": target.text}
        if target.outcome in ("failed", "timeout") or target.gateway is None:
            record["error"] = target.error or "still starting at the --timeout"
        else:
            try:
                rinfo = target.gateway._rinfo()
            except Error as exc:
                session.fail(target, str(exc))
                record["error"] = str(exc)
            else:
                target.outcome = "ok"
                facts = vars(rinfo)
                version = tuple(facts.get("version_info", ()))
                record.update(
                    executable=facts.get("executable"),
                    version=".".join(str(part) for part in version[:3]),
                    version_info=list(version),
                    implementation=facts.get("implementation"),
                    platform=facts.get("platform"),
                    pid=facts.get("pid"),
                    cwd=facts.get("cwd"),
                )
        if as_json:
            session.console.text(1, json.dumps(record) + "\n")
        elif "error" not in record:
            session.console.text(1, _info_block(record))
    session.close(timeout=1.0 if session.expired() else 5.0)
    return session.exit_status()


def _info_block(record: dict[str, Any]) -> str:
    fields = ("spec", "executable", "version", "implementation", "platform", "pid", "cwd")
    width = max(len(name) for name in fields) + 1
    lines = [f"{record['id']}:"] + [f"  {name + ':':<{width}} {record[name]}" for name in fields]
    return "\n".join(lines) + "\n\n"


def _read_code(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.code is not None and args.file is not None:
        _usage_error(parser, "give either -c CODE or FILE, not both")
    if args.code is not None:
        return str(args.code)
    if args.file is None:
        _usage_error(parser, "nothing to run: give -c CODE, a FILE, or - to read the code from standard input")
    if args.file == "-":
        return sys.stdin.read()
    try:
        with open(args.file, encoding="utf-8") as source:
            return source.read()
    except (OSError, UnicodeDecodeError) as exc:
        _usage_error(parser, f"cannot read {args.file!r}: {exc}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop, but terminate the gateways first."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``execwire`` console script and of ``python -m execwire``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return USAGE
    subparser: argparse.ArgumentParser = args.parser
    code = _read_code(args, subparser) if args.command == "run" else ""
    targets = parse_targets(args.on, subparser)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    session = Session(targets, args.timeout)
    try:
        if args.command == "run":
            return Runner(session, code).run()
        return info(session, args.json)
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        count = len(session.group)
        session.console.text(2, f"execwire: interrupted; terminating {count} gateway{'s' if count != 1 else ''}\n")
        session.close(timeout=1.0)
        return 128 + signum
    finally:
        session.group.terminate(timeout=1.0)
