"""``execwire shell SPEC``: an interactive Python prompt whose statements run on a far interpreter.

This side reads lines (with readline: editing, history, Tab completion) and sends
the source typed so far; the far job compiles it as the interactive interpreter
does and answers "more" (a block goes on) or runs it and answers "done". What
the statement prints comes back before that answer. Ctrl-C while a statement
runs sends ("interrupt",): the far job raises KeyboardInterrupt in it (see
far_job.Interrupter) and the gateway stays.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from types import FrameType
from typing import Any

from .. import debugger
from .._far.channel import Channel
from .._far.errors import Error
from .._far.errors import TimeoutError as ExecwireTimeout
from ..group import Group
from ..spec import XSpec
from . import far_job
from .console import _isatty
from .parser import CODE_RAISED, INTERRUPTED, START_FAILED
from .targets import start_error_text, usage_error

HISTORY_LENGTH = 1000


def shell(spec_text: str, parser: argparse.ArgumentParser) -> int:
    """Run the prompt on the gateway ``spec_text`` until Ctrl-D; the exit status."""
    try:
        spec = XSpec(spec_text)
    except ValueError as exc:
        usage_error(parser, f"{spec_text!r}: {exc}")
    if spec.execmodel == "thread":
        usage_error(parser, f"{spec_text!r}: execwire shell runs statements in the far main thread, so that "
                            "Ctrl-C can interrupt them; leave out execmodel=thread")
    if spec.execmodel is None:
        spec = XSpec(f"{spec_text}//execmodel=main_thread_only")
    group = Group()
    try:
        return Shell(group, spec, spec_text).run()
    finally:
        group.terminate(timeout=1.0)


class Shell:
    """The prompt loop on this side; one far job answers each request in turn."""

    def __init__(self, group: Group, spec: XSpec, spec_text: str) -> None:
        self.group = group
        self.spec = spec
        self.spec_text = spec_text
        self.interactive = _isatty(sys.stdin)
        self.channel: Channel | None = None
        self.gateway_id = "gw0"
        self._interrupts = 0
        self._waiting = False  # for the far side: Ctrl-C is passed on instead of raised here
        self._readline: Any = None
        self._history_file = os.environ.get("EXECWIRE_HISTORY") or os.path.expanduser("~/.execwire_history")
        self.exit_status: int | None = None

    # -- start and end --------------------------------------------------------
    def run(self) -> int:
        gateway = None
        try:
            gateway = self.group.makegateway(self.spec)
            self.gateway_id = gateway.id
            gateway.wait_ready()
            self.channel = gateway.remote_exec(far_job)
            self.channel.send({"mode": "shell", "stdin": True, "argv": [""],
                               "encoding": getattr(sys.stdout, "encoding", None) or "utf-8"})
        except (Error, OSError, ValueError) as exc:
            message = start_error_text(gateway) if gateway is not None else str(exc)
            sys.stderr.write(f"execwire: could not start {self.spec_text!r}: {message}\n")
            return START_FAILED
        except KeyboardInterrupt:
            sys.stderr.write("execwire: interrupted while the gateway started\n")
            return INTERRUPTED
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            reply = self._wait_reply()
            if reply is None or reply[0] != "ready":
                return self._gone_status()
            if self.interactive:
                self._banner(reply[1])
                self._setup_readline()
            return self._loop()
        finally:
            signal.signal(signal.SIGINT, previous)
            self._save_history()

    def _banner(self, facts: dict[str, Any]) -> None:
        version = str(facts.get("version", "")).replace("\n", " ")
        sys.stderr.write(
            f"execwire shell on {self.gateway_id} ({self.spec_text}): Python {version} on {facts.get('platform')}\n"
            f"pid {facts.get('pid')}, cwd {facts.get('cwd')}. Tab completes far names, Ctrl-C interrupts the "
            f"statement that runs, Ctrl-D leaves.\n")
        if not facts.get("interrupts"):
            sys.stderr.write("(this far Python cannot be interrupted: Ctrl-C waits for the statement to end)\n")
        sys.stderr.flush()

    def _gone_status(self) -> int:
        return self.exit_status if self.exit_status is not None else CODE_RAISED

    # -- the prompt -----------------------------------------------------------
    def _loop(self) -> int:
        lines: list[str] = []
        while True:
            prompt = ("... " if lines else ">>> ") if self.interactive else ""
            try:
                line = input(prompt)
            except EOFError:
                if self.interactive:
                    sys.stdout.write("\n")
                return 0
            except KeyboardInterrupt:
                sys.stdout.write("\nKeyboardInterrupt\n")
                lines = []
                continue
            lines.append(line)
            reply = self._request(("source", "\n".join(lines)))
            if reply is None:
                return self._gone_status()
            if reply[0] != "more":
                lines = []

    def _request(self, message: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Send a request and wait for its answer, showing what comes before it; None if the far side left."""
        assert self.channel is not None
        try:
            self.channel.send(message)
        except Error:
            self._say_gone("the far side is gone")
            return None
        return self._wait_reply()

    def _wait_reply(self) -> tuple[Any, ...] | None:
        """Show what the far job says until its answer comes; pass Ctrl-C on and feed its reads."""
        assert self.channel is not None
        self._waiting = True
        read_wanted = False
        try:
            while True:
                if self._interrupts:
                    self._interrupts = 0
                    self.channel.send(("interrupt",))
                if read_wanted and self._stdin_ready():
                    read_wanted = False
                    self.channel.send(("stdin", self._read_line()))
                try:
                    message = self.channel.receive(timeout=0.02 if read_wanted else 0.05)
                except ExecwireTimeout:
                    continue
                except EOFError:
                    self._say_gone("the far side ended")
                    return None
                kind = message[0]
                if kind == "out":
                    _write(sys.stdout, message[1])
                elif kind == "err":
                    _write(sys.stderr, message[1])
                elif kind == "item":
                    sys.stdout.write(repr(message[1]) + "\n")
                    sys.stdout.flush()
                elif kind == "read":
                    read_wanted = True  # answered once a line is typed, unless the statement ends first
                elif kind == "exit":
                    self.exit_status = int(message[1]) & 0xFF
                else:
                    return tuple(message)
        except Error as exc:
            self._say_gone(str(exc))
            return None
        finally:
            self._waiting = False

    def _stdin_ready(self) -> bool:
        """A line can be read now (a terminal in canonical mode says so only for a whole line)."""
        if not self.interactive:
            return True  # a pipe or file: read it, nobody is typing
        try:
            ready, _, _ = select.select([sys.stdin], [], [], 0.03)
        except (OSError, ValueError):
            return True
        return bool(ready)

    def _read_line(self) -> bytes:
        text = sys.stdin.readline()
        return text.encode(getattr(sys.stdin, "encoding", None) or "utf-8", "surrogateescape")

    def _say_gone(self, why: str) -> None:
        if self.exit_status is None:
            sys.stderr.write(f"execwire: the gateway {self.gateway_id} is gone: {why}\n")
            sys.stderr.flush()

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if debugger.interrupt():
            return  # Ctrl-C while far code runs under pdb: pdb stops it, as a local pdb would
        if self._waiting:
            self._interrupts += 1  # the loop waiting for the far side passes it on
            return
        raise KeyboardInterrupt

    # -- readline -------------------------------------------------------------
    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:
            return
        self._readline = readline
        readline.set_completer(self._complete)
        if "libedit" in (readline.__doc__ or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(self._history_file)
        except OSError:
            pass

    def _save_history(self) -> None:
        if self._readline is not None:
            try:
                self._readline.write_history_file(self._history_file)
            except OSError:
                pass

    def _complete(self, text: str, state: int) -> str | None:
        """readline's completer: the far namespace's names that start with ``text``."""
        if state == 0:
            reply = self._request(("complete", text))
            self._matches = list(reply[1]) if reply is not None and reply[0] == "completions" else []
        return self._matches[state] if state < len(self._matches) else None

    _matches: list[str] = []


def _write(stream: Any, data: bytes) -> None:
    buffer = getattr(stream, "buffer", None)
    stream.flush()
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()
