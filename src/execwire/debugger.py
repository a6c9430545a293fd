"""The controller's terminal as the console of far pdb sessions (see ``_far/debugger.py``).

A far breakpoint() sends a channel up; a thread of its own serves it here, so the
gateway's callbacks, and every other gateway, go on meanwhile. One session has the
terminal at a time (across all gateways of this process); the others wait for it.
Lines are read with input(), so readline's editing and history apply when it is
there. Without a terminal on stdin and stdout the session is refused at once, and
the far code gets DebuggerUnavailable saying why.

Ctrl-C behaves as in a local pdb. While we read a line, the terminal's interrupt
key is switched off and readline binds it to end the line as a lone ^C, which goes
to the far pdb as ("interrupt",): KeyboardInterrupt there, and a new prompt. While
the far code runs, Ctrl-C goes on the session's interrupts channel, and the far pdb
stops at the next line. How it gets there depends on who has SIGINT here:
- Python's default handler (a program of the user's that set none; the one of
  ``_far/interrupts.py`` that a receive() in the main thread puts in acts as it): the interrupt
  key stays off for the whole session and also ends a line (VEOL), and a thread
  (KeyWatcher) reads the lines typed while the far code runs: one ending in ^C is
  the interrupt, the others are typed ahead, answers to the next prompts, as the
  terminal would have kept them for a local pdb.
- a handler of the program's own (the execwire command's, its shell's): Ctrl-C
  there is SIGINT, and the handler asks interrupt() first.
"""

from __future__ import annotations

import atexit
import os
import queue
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._far import interrupts
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
_console: Console | None = None  # the session that has the terminal
INTERRUPT = "\x03"  # the line the interrupt key ends a line with, while a session reads
# readline: Ctrl-C clears the line, puts a lone ^C in it and ends it (keys of our own, so that the user's
# bindings of C-a, C-k, C-v or Return do not matter)
_KEYS = ('"\\e[9901~": kill-whole-line', '"\\e[9902~": quoted-insert', '"\\e[9903~": accept-line',
         '"\\C-c": "\\e[9901~\\e[9902~\\C-c\\e[9903~"')
_keys_bound = False


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
    _leave_sigint_to_others()
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
            global _console
            console = _console = Console(gateway, channel, facts.get("interrupts"))
            try:
                console.run()
            finally:
                _console = None
                _restore_terminal()
                console.close()
            if console.end_asked:
                channel.send(("ended",))  # the far code goes on now, with the terminal as it was
    except Error:
        pass  # the gateway is gone: its session with it


def _leave_sigint_to_others() -> None:
    """Block SIGINT in this thread of ours: the kernel then gives Ctrl-C to another, best the main one."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):
        pass


def interrupt() -> bool:
    """Pass Ctrl-C on to the far code a pdb session runs; False if no session has the terminal.

    For a SIGINT handler of the controller (the main thread's: the terminal's
    Ctrl-C comes there while the far code runs). At the prompt the interrupt key
    does not send SIGINT: the console reads it as a key.
    """
    console = _console
    if console is None:
        return False
    console.interrupt()
    return True


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

    def __init__(self, gateway: Gateway, channel: Channel, interrupts: Any = None) -> None:
        self.gateway = gateway
        self.channel = channel
        self.interrupts = interrupts if isinstance(interrupts, Channel) else None
        self.watcher = KeyWatcher.for_session(self.interrupt) if self.interrupts is not None else None
        self.end_asked = False
        # interrupt() may be called by a SIGINT handler, in the middle of any code of the main thread: it
        # only puts in this queue (SimpleQueue.put is safe there), and a thread of the session sends
        self._interrupt_requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._interrupter: threading.Thread | None = None
        if self.interrupts is not None:
            self._interrupter = threading.Thread(target=self._send_interrupts, name="execwire-pdb-interrupts",
                                                 daemon=True)
            self._interrupter.start()
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
        watcher = self.watcher
        try:
            while True:
                if watcher is not None:
                    watcher.start()  # the far code runs: keys typed now are read by the watcher
                try:
                    message = self.channel.receive()
                except EOFError:
                    break
                kind = message[0] if isinstance(message, tuple) and message else None
                if kind == "out":
                    self.write(str(message[1]))
                elif kind == "end":
                    self.end_asked = True
                    break
                elif kind == "read":
                    if watcher is not None:
                        watcher.stop()
                    typed = watcher.typed.pop(0) if watcher is not None and watcher.typed else None
                    line = self.typed_line(typed) if typed is not None else self.read_line()
                    self.channel.send(("interrupt",) if line == INTERRUPT else ("line", line))
        finally:
            if watcher is not None:
                watcher.close()
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

    def interrupt(self) -> None:
        """Ctrl-C while the far code runs: the far pdb stops at its next line (safe in a signal handler)."""
        self._interrupt_requests.put(True)

    def _send_interrupts(self) -> None:
        _leave_sigint_to_others()
        while self._interrupt_requests.get():
            try:
                if self.interrupts is not None:
                    self.interrupts.send(("interrupt",))
            except Error:
                pass  # the session just ended

    def close(self) -> None:
        if self._interrupter is not None:
            self._interrupt_requests.put(False)
            self._interrupter.join()
            self._interrupter = None

    def typed_line(self, line: str) -> str:
        """A line typed while the far code ran: shown after the prompt, as if typed there."""
        self.gateway._wait_callbacks(CALLBACKS_WAIT)
        prompt, self.partial = self.partial, ""
        sys.stdout.write(prompt + (line if line else "\n"))
        sys.stdout.flush()
        if self.readline is not None and line.strip():
            self.readline.add_history(line.rstrip("\n"))
        return line

    def read_line(self) -> str:
        """A line from the terminal, as pdb reads it ("" at Ctrl-D: pdb's EOF, which quits; INTERRUPT at Ctrl-C)."""
        self.gateway._wait_callbacks(CALLBACKS_WAIT)  # far output that came before the prompt comes first
        prompt, self.partial = self.partial, ""
        readline = self.readline
        completer = readline.get_completer() if readline is not None else None
        if readline is not None:  # Tab asks the far pdb (another completer, as execwire shell's, waits)
            readline.set_completer(self.complete)
            readline.parse_and_bind("bind ^I rl_complete" if "libedit" in (readline.__doc__ or "")
                                    else "tab: complete")
        key = _InterruptKey(readline)
        try:
            line = input(prompt)
        except EOFError:
            sys.stdout.write("\n")
            return ""
        finally:
            key.restore()
            if readline is not None:
                readline.set_completer(completer)
        if INTERRUPT in line and key.taken:
            _forget_last_line(readline, line)
            return INTERRUPT
        return line + "\n"

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


class _InterruptKey:
    """While input() reads: the terminal's interrupt key (Ctrl-C) is a key, not SIGINT; restore() undoes it.

    With GNU readline the key ends the line as a lone ^C at once; with input()'s
    plain line reading, a line holding ^C is one too, once Return ends it. With
    libedit (whose bindings differ) the key is left as it was.
    """

    def __init__(self, readline: Any) -> None:
        self.taken = False
        self._before: bytes | None = None
        if readline is not None and "libedit" in (readline.__doc__ or ""):
            return
        try:
            import termios
        except ImportError:
            return
        try:
            fd = sys.stdin.fileno()
            settings = termios.tcgetattr(fd)
            disabled = os.fpathconf(fd, "PC_VDISABLE")
            if disabled < 0:
                return
            if readline is not None:
                _bind_keys(readline)
            before = settings[6][termios.VINTR]
            settings[6][termios.VINTR] = bytes([disabled])
            termios.tcsetattr(fd, termios.TCSANOW, settings)
        except (OSError, ValueError, AttributeError, termios.error):
            return
        self._before = before
        self.taken = True

    def restore(self) -> None:
        if self._before is None:
            return
        import termios

        try:
            fd = sys.stdin.fileno()
            settings = termios.tcgetattr(fd)
            settings[6][termios.VINTR] = self._before
            termios.tcsetattr(fd, termios.TCSANOW, settings)
        except (OSError, ValueError, termios.error):
            pass
        self._before = None


def _bind_keys(readline: Any) -> None:
    global _keys_bound
    if _keys_bound:
        return
    _keys_bound = True
    for keymap in ("vi-command", "vi-insert", "emacs"):  # emacs last: readline puts vi users back in vi-insert
        readline.parse_and_bind(f"set keymap {keymap}")
        for binding in _KEYS:
            readline.parse_and_bind(binding)


def _forget_last_line(readline: Any, line: str) -> None:
    """Take the ^C line out of readline's history (input() put it there)."""
    if readline is None:
        return
    try:
        length = readline.get_current_history_length()
        if length and readline.get_history_item(length) == line:
            readline.remove_history_item(length - 1)
    except (AttributeError, ValueError):
        pass


class KeyWatcher:
    """Reads the terminal while the far code of a session runs: Ctrl-C there interrupts it.

    Only for a program that left SIGINT to Python's default handler (see the module's
    docstring). The terminal stays in line mode, with the interrupt key off and ^C as
    a second end of line: what is typed is echoed and edited as usual, and each line
    is read whole. Lines that do not end with ^C wait in ``typed`` for the next prompts.
    """

    def __init__(self, fd: int, on_interrupt: Callable[[], object]) -> None:
        self.fd = fd
        self.typed: list[str] = []  # lines typed ahead ("" for Ctrl-D at a line's start: end of input)
        self._on_interrupt = on_interrupt
        self._wake_read, self._wake_write = os.pipe()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_session(cls, on_interrupt: Callable[[], object]) -> KeyWatcher | None:
        """A watcher for this session's terminal, or None if SIGINT is the program's or there is no termios."""
        handler = signal.getsignal(signal.SIGINT)
        if handler is not signal.default_int_handler and handler is not interrupts._handler:
            return None  # the program's own (the default one, or execwire's that acts as it, is not)
        try:
            import termios
        except ImportError:
            return None
        try:
            fd = sys.stdin.fileno()
            settings = termios.tcgetattr(fd)
            disabled = os.fpathconf(fd, "PC_VDISABLE")
            if disabled < 0:
                return None
            settings[6][termios.VINTR] = bytes([disabled])
            settings[6][termios.VEOL] = INTERRUPT.encode()
            termios.tcsetattr(fd, termios.TCSANOW, settings)  # _restore_terminal puts it back
        except (OSError, ValueError, AttributeError, termios.error):
            return None
        return cls(fd, on_interrupt)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="execwire-pdb-keys", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop reading (before the console reads a line itself)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._wake_write, b"x")
            thread.join()
            try:
                os.read(self._wake_read, 64)
            except OSError:
                pass

    def close(self) -> None:
        self.stop()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)

    def _watch(self) -> None:
        _leave_sigint_to_others()
        encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
        while True:
            try:
                ready, _, _ = select.select([self.fd, self._wake_read], [], [])
                if self._wake_read in ready:
                    return
                data = os.read(self.fd, 4096)
            except (OSError, ValueError):
                return
            line = data.decode(encoding, "replace")
            if line.endswith(INTERRUPT):
                del self.typed[:]  # as the terminal's Ctrl-C drops what was typed ahead
                self._on_interrupt()
            else:
                self.typed.append(line if not line or line.endswith("\n") else line + "\n")
                if not line:
                    return  # end of input: nothing more to read
