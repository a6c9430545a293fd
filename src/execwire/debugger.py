"""The controller's terminal as the console of far pdb sessions (see ``_far/debugger.py``).

A far breakpoint() sends a channel up; a thread of its own serves it here, so the
gateway's callbacks, and every other gateway, go on meanwhile. One session has the
terminal at a time (across all gateways of this process); the others wait for it.
Lines are read with input(), so readline's editing and history apply when it is
there. Without a terminal on stdin and stdout the session is refused at once, and
the far code gets DebuggerUnavailable saying why.
"""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._far.channel import Channel
from ._far.errors import Error

if TYPE_CHECKING:
    from .gateway import Gateway

TERMINAL = threading.Lock()  # one pdb session on the terminal at a time
CALLBACKS_WAIT = 2.0  # seconds the prompt waits for output of the far code that came before it
COMPLETE_WAIT = 10.0  # seconds Tab waits for the far pdb's completions
# called before a session writes to the terminal (the execwire command ends its status block there)
before_session: list[Callable[[], object]] = []
_saved_terminal: list[Any] = []  # the terminal's settings while a session has it, for _restore_terminal
_restorer_registered = False


def start_session(gateway: Gateway, channel: Any, facts: Any) -> None:
    """Serve the far pdb session on ``channel`` (called on the gateway's callback thread: must not block)."""
    if not isinstance(channel, Channel):
        return
    info = facts if isinstance(facts, dict) else {}
    threading.Thread(target=_serve, args=(gateway, channel, info), name=f"execwire-pdb-{gateway.id}",
                     daemon=True).start()


def no_terminal_reason() -> str | None:
    """Why pdb cannot run on this process's terminal, or None if it can."""
    for name, what in (("stdin", "input"), ("stdout", "output")):
        stream = getattr(sys, name)
        try:
            tty = stream is not None and stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        if not tty:
            return (f"the controller's standard {what} is not a terminal, "
                    "and a pdb session needs one; run the controller on a terminal, or skip breakpoint() "
                    "calls with PYTHONBREAKPOINT=0 in the far environment (the spec key env:PYTHONBREAKPOINT=0)")
    return None


def _serve(gateway: Gateway, channel: Channel, facts: dict[str, Any]) -> None:
    why = no_terminal_reason()
    try:
        if why is not None:
            channel.send(("refused", why))
            channel.close()
            return
        with TERMINAL:
            channel.send(("attached",))
            for hook in list(before_session):
                hook()
            _header(gateway, facts)
            _save_terminal()
            try:
                Console(gateway, channel).run()
            finally:
                _restore_terminal()
    except Error:
        pass  # the gateway is gone: its session with it


def _save_terminal() -> None:
    """Keep the terminal's settings: readline changes them while it reads, and an interrupted read
    (Ctrl-C ends the program, in another thread) would leave them changed, echo off."""
    global _restorer_registered
    try:
        import termios

        _saved_terminal[:] = [sys.stdin.fileno(), termios.tcgetattr(sys.stdin.fileno())]
    except (ImportError, OSError, ValueError, AttributeError):
        return
    if not _restorer_registered:
        _restorer_registered = True
        atexit.register(_restore_terminal)


def _restore_terminal() -> None:
    if _saved_terminal:
        fd, settings = _saved_terminal
        del _saved_terminal[:]
        try:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, settings)
        except (ImportError, OSError, ValueError):
            pass


def _header(gateway: Gateway, facts: dict[str, Any]) -> None:
    parts = [str(facts["reason"])] if "reason" in facts else []
    parts += [f"{key} {facts[key]}" for key in ("pid", "thread") if key in facts]
    where = ", ".join(parts)
    sys.stderr.write(f"execwire: pdb on gateway {gateway.id}" + (f" ({where})" if where else "") + "\n")
    sys.stderr.flush()


class Console:
    """One session: far output to our stdout, our lines to the far pdb, until the far side closes it."""

    def __init__(self, gateway: Gateway, channel: Channel) -> None:
        self.gateway = gateway
        self.channel = channel
        self.partial = ""  # the last line written without its newline: the prompt input() shows
        self.readline: Any = None
        self.matches: list[str] = []
        try:
            import readline  # input() edits lines and keeps history once it is loaded
        except ImportError:
            pass
        else:
            self.readline = readline

    def run(self) -> None:
        while True:
            try:
                message = self.channel.receive()
            except EOFError:
                break
            kind = message[0] if isinstance(message, tuple) and message else None
            if kind == "out":
                self.write(str(message[1]))
            elif kind == "read":
                self.channel.send(("line", self.read_line()))
        self.write("")
        if self.partial:
            sys.stdout.write(self.partial + "\n")
            self.partial = ""
        sys.stdout.flush()

    def write(self, text: str) -> None:
        """Write whole lines now; a last line without a newline waits to be input()'s prompt."""
        text = self.partial + text
        complete, newline, self.partial = text.rpartition("\n")
        if newline:
            sys.stdout.write(complete + "\n")
            sys.stdout.flush()

    def read_line(self) -> str:
        """A line from the terminal, as pdb reads it ("" at Ctrl-D: pdb's EOF, which quits)."""
        self.gateway._wait_callbacks(CALLBACKS_WAIT)  # far output that came before the prompt comes first
        prompt, self.partial = self.partial, ""
        readline = self.readline
        completer = readline.get_completer() if readline is not None else None
        if readline is not None:  # Tab asks the far pdb (another completer, as execwire shell's, waits)
            readline.set_completer(self.complete)
            readline.parse_and_bind("bind ^I rl_complete" if "libedit" in (readline.__doc__ or "")
                                    else "tab: complete")
        try:
            return input(prompt) + "\n"
        except EOFError:
            sys.stdout.write("\n")
            return ""
        finally:
            if readline is not None:
                readline.set_completer(completer)

    def complete(self, text: str, state: int) -> str | None:
        """readline's completer: the far pdb's completions of ``text`` (its commands, the frame's names)."""
        if state == 0:
            readline = self.readline
            self.matches = []
            try:
                self.channel.send(("complete", text, readline.get_line_buffer(), readline.get_begidx(),
                                   readline.get_endidx()))
                reply = self.channel.receive(timeout=COMPLETE_WAIT)
            except (Error, EOFError):
                return None
            if isinstance(reply, tuple) and reply[:1] == ("completions",) and isinstance(reply[1], list):
                self.matches = [str(match) for match in reply[1]]
        return self.matches[state] if state < len(self.matches) else None
