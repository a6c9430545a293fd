"""pdb on the far side, with the controller's terminal as its console.

Far-side module: stdlib only, Python >= 3.6; pdb is imported only when a session starts.

breakpoint() (through sys.breakpointhook, Python 3.7+), pdb.set_trace() and
pdb.post_mortem() in shipped code ask the controller for its terminal: a new
channel goes up the upstream channel, and the controller answers ("attached",)
once its terminal is free for this session (one session at a time) or
("refused", why), which raises DebuggerUnavailable in the far code at once. Then
a pdb.Pdb runs here with a file-like over that channel as its stdin and stdout:
("out", text) goes up, ("read",) asks for a line and ("line", text) is the
answer ("" at the end of input); while it waits, ("complete", text, line, begin,
end) asks what Tab offers, answered with ("completions", names), and ("interrupt",) is
Ctrl-C at the prompt: KeyboardInterrupt there, which pdb shows before a new prompt.
The session ends on continue without breakpoints, on quit, and once the code it
started in returns: ("end",) goes up, and the code goes on once the controller
answers ("ended",), its terminal as it was. execwire's own frames are never
stepped into, nor shown by where, up and down.

The facts sent up name a second channel, "interrupts": ("interrupt",) there is Ctrl-C
while the code runs under the session (after continue with breakpoints, next, step): pdb
stops at the next line the code runs, as a local pdb's Ctrl-C does. It is taken by a
callback, so it arrives while the debugged thread is busy.
"""

import os
import sys
import threading

from . import upstream

_PACKAGE = __name__.rpartition(".")[0]
END_WAIT = 10.0  # seconds the end of a session waits for the controller to put its terminal back
_classes = {}


class DebuggerUnavailable(RuntimeError):
    """No pdb session can be had: the controller has no terminal, or this far side no controller."""


def breakpointhook(*args, **kwargs):
    """sys.breakpointhook of the far side: pdb on the controller's terminal (PYTHONBREAKPOINT is honoured)."""
    wanted = os.environ.get("PYTHONBREAKPOINT")
    if wanted not in (None, "", "pdb.set_trace"):
        return sys.__breakpointhook__(*args, **kwargs)  # 0 (skip) or a hook of the user's own
    set_trace(sys._getframe(1), kwargs.get("header"))


def redirect_pdb(pdb):
    """Make pdb.set_trace() and pdb.post_mortem() of the shipped code use the controller's terminal."""

    def pdb_set_trace(header=None):
        set_trace(sys._getframe(1), header)

    pdb_set_trace.__doc__ = pdb.set_trace.__doc__
    pdb.set_trace = pdb_set_trace
    pdb.post_mortem = post_mortem


def set_trace(frame, header=None):
    """Stop in ``frame`` and start a session; it ends when that code returns (or on continue or quit)."""
    terminal = attach("breakpoint")
    debugger = _debugger_class()(terminal, _outermost_user_frame(frame))
    debugger.debugged_thread = threading.current_thread().ident
    debugger.show_shipped_source(frame)
    if header is not None:
        debugger.message(header)
    debugger.set_trace(frame)  # the last call: tracing starts as it returns into ``frame``


def post_mortem(traceback=None):
    """Inspect the frames of ``traceback`` (default: of the exception being handled) on the controller's terminal."""
    if traceback is None:
        traceback = sys.exc_info()[2]
    if traceback is None:
        raise ValueError("post_mortem() needs a traceback, or an exception being handled")
    terminal = attach("post-mortem")
    debugger = _debugger_class()(terminal, None)
    last = traceback
    while last.tb_next is not None:
        last = last.tb_next
    debugger.show_shipped_source(last.tb_frame)
    try:
        debugger.reset()
        debugger.interaction(None, traceback)
    finally:
        debugger.end_session()


def attach(reason):
    """Ask the controller for its terminal; a ChannelTerminal once it is ours."""
    link = upstream.current()
    if link is None:
        raise DebuggerUnavailable("pdb cannot start: this far side has no controller to debug on")
    channel = link.gateway.newchannel()
    interrupts = link.gateway.newchannel()
    terminal = ChannelTerminal(channel, link, interrupts)
    interrupts.setcallback(terminal.interrupted)
    link.send(("debug", channel, {"reason": reason, "pid": os.getpid(),
                                  "thread": threading.current_thread().name, "interrupts": interrupts}))
    try:
        reply = channel.receive()
    except EOFError:
        reply = ("refused", "the controller closed the session")
    if reply[0] != "attached":
        terminal.closed = True
        channel.close()
        interrupts.close()
        raise DebuggerUnavailable("pdb cannot start on gateway %s: %s" % (link.gateway.id, reply[1]))
    return terminal


class ChannelTerminal(object):
    """pdb's stdin and stdout: what it writes goes to the controller, what it reads comes from there."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, channel, link, interrupts):
        self.channel = channel
        self.interrupts = interrupts
        self._link = link
        self._pending = []
        self.closed = False
        self.debugger = None  # the pdb.Pdb that reads here: it completes what is typed

    def write(self, text):
        self._pending.append(text)
        return len(text)

    def flush(self):
        if self._pending and not self.closed:
            text, self._pending = "".join(self._pending), []
            self.channel.send(("out", text))

    def readline(self, size=-1):
        """One line typed on the controller's terminal ("" once its input ended)."""
        if self.closed:
            return ""
        self.flush()
        for stream in (sys.stdout, sys.stderr):  # what the code printed comes before the prompt
            try:
                stream.flush()
            except Exception:
                pass
        self._link.flush()
        self.channel.send(("read",))
        while True:
            try:
                reply = self.channel.receive()
            except EOFError:
                return ""
            if reply[0] == "interrupt":
                raise KeyboardInterrupt  # pdb's prompt loop says --KeyboardInterrupt-- and prompts again
            if reply[0] != "complete":
                return reply[1]
            self.channel.send(("completions", completions(self.debugger, *reply[1:])))

    def interrupted(self, message):
        """Ctrl-C on the controller while the debugged code runs (on the callback thread)."""
        debugger = self.debugger
        if debugger is not None and not self.closed:
            debugger.break_in()

    def isatty(self):
        return True

    def fileno(self):
        raise OSError("the debugger's terminal is the controller's; it has no file descriptor here")

    def close(self):
        """End the session; the far code goes on once the controller has its terminal back as it was."""
        if not self.closed:
            try:
                self.flush()
                self.channel.send(("end",))
                while self.channel.receive(END_WAIT)[0] != "ended":  # EOFError or a timeout also end it
                    pass
            except Exception:
                pass  # the controller went, or did not answer in time: end anyway
            finally:
                self.closed = True
                self.channel.close()
                self.interrupts.close()


def completions(debugger, text, line, begidx, endidx):
    """What Tab offers for ``text`` in ``line`` (Cmd.complete's choice of method, without readline here)."""
    if debugger is None:
        return []
    try:
        stripped = len(line) - len(line.lstrip())
        begidx, endidx = begidx - stripped, endidx - stripped
        if begidx > 0:
            command = debugger.parseline(line.lstrip())[0]
            method = debugger.completedefault if not command else getattr(
                debugger, "complete_" + command, debugger.completedefault)
        else:
            method = debugger.completenames
        return [str(match) for match in method(text, line.lstrip(), begidx, endidx)][:1000]
    except Exception:
        return []


def _is_ours(frame, link):
    """A frame of execwire's far code, or of a file the execwire command's job registered."""
    name = frame.f_globals.get("__name__") or ""
    return name == _PACKAGE or name.startswith(_PACKAGE + ".") or (
        link is not None and frame.f_code.co_filename in link.own_files)


def user_stack(stack, index, link):
    """The part of pdb's ``stack`` (and ``index`` in it) that where, up and down show: the shipped code's.

    Frames below the execwire frame the code was entered from (threading's, execwire's)
    are left out, and so are execwire frames the code called into.
    """
    ours = [_is_ours(frame, link) for frame, _ in stack]
    current = index
    while current >= 0 and ours[current]:  # post-mortem: the exception may have come out of our code
        current -= 1
    if current < 0:
        return stack, index
    start = current
    while start > 0 and not ours[start - 1]:
        start -= 1
    if start == 0:
        return stack, index  # not entered from execwire's code: a stack of the user's own
    kept = [position for position in range(start, len(stack)) if not ours[position]]
    return [stack[position] for position in kept], kept.index(current)


def _outermost_user_frame(frame):
    """The frame the shipped code was entered by: the session ends when it returns."""
    link = upstream.current()
    outermost = frame
    while frame is not None and not _is_ours(frame, link):
        outermost = frame
        frame = frame.f_back
    return outermost


def _debugger_class():
    """FarPdb, made once pdb is imported (only when a session starts)."""
    if "FarPdb" in _classes:
        return _classes["FarPdb"]
    import linecache  # only with a session: it costs an idle far side memory
    import pdb

    class FarPdb(pdb.Pdb):
        """pdb.Pdb on a ChannelTerminal, which never stops in execwire's frames and ends its session."""

        def __init__(self, terminal, base):
            pdb.Pdb.__init__(self, stdin=terminal, stdout=terminal, nosigint=True, readrc=False)
            self.terminal = terminal
            terminal.debugger = self
            self._base = base
            self._tracing = base is not None
            self._shown = None  # (file name, its linecache entry before) while shipped source is shown
            self._link = upstream.current()
            self.debugged_thread = None  # the thread that runs the code under the session (set_trace)
            self._interacting = False
            self._interrupted = False
            self._break_frames = []  # Ctrl-C came while these frames ran: the next line in one of them stops

        def interaction(self, *args, **kwargs):
            self._interacting = True
            self._break_frames = []
            try:
                if self._interrupted:
                    self._interrupted = False
                    self.message("\nProgram interrupted. (Use 'cont' to resume).")
                return pdb.Pdb.interaction(self, *args, **kwargs)
            finally:
                self._interacting = False

        def break_in(self):
            """Stop at the next line the debugged thread runs (Ctrl-C while it runs; another thread calls).

            In the frames it is in now only, not in what they call next: a callback
            the runtime runs in the thread (a weakref's, the garbage collector's) is
            no place to stop, since quitting there would be swallowed.
            """
            if self._interacting or not self._tracing or self.debugged_thread is None:
                return
            frame = getattr(sys, "_current_frames", dict)().get(self.debugged_thread)
            frames = []
            while frame is not None:
                if not _is_ours(frame, self._link):
                    frames.append(frame)
                frame = frame.f_back
            if not frames:
                return
            self._interrupted = True
            self._break_frames = frames
            for frame in frames:  # frames that were not traced (no breakpoint in them) are now
                frame.f_trace = self.trace_dispatch

        def stop_here(self, frame):
            if _is_ours(frame, self._link):
                return False
            for interrupted in self._break_frames:
                if frame is interrupted:
                    return True
            return pdb.Pdb.stop_here(self, frame)

        def get_stack(self, frame, traceback):
            stack, index = pdb.Pdb.get_stack(self, frame, traceback)
            return user_stack(stack, index, self._link)

        def dispatch_return(self, frame, arg):
            try:
                return pdb.Pdb.dispatch_return(self, frame, arg)
            finally:
                if frame is self._base:  # the code the session started in is done
                    self.end_session()

        def set_continue(self):
            pdb.Pdb.set_continue(self)
            if not self.breaks:
                self.end_session()

        def set_quit(self):
            pdb.Pdb.set_quit(self)
            self.end_session()

        def show_shipped_source(self, frame):
            """Let pdb list the lines of code shipped as a string (remote_exec keeps no file of it)."""
            while frame is not None:
                code = frame.f_code
                if code.co_name == "_execute" and frame.f_globals.get("__name__") == _PACKAGE + ".execution":
                    source, filename = frame.f_locals.get("source"), frame.f_locals.get("filename")
                    if isinstance(source, str) and isinstance(filename, str) and filename.startswith("<"):
                        self._shown = (filename, linecache.cache.get(filename))
                        lines = source.splitlines(True)
                        linecache.cache[filename] = (len(source), None, lines, filename)
                    return
                frame = frame.f_back

        def end_session(self):
            if self._tracing:
                self._tracing = False
                sys.settrace(None)
            self._base = None
            self._break_frames = []
            if self._shown is not None:
                filename, before = self._shown
                self._shown = None
                if before is None:
                    linecache.cache.pop(filename, None)
                else:
                    linecache.cache[filename] = before
            self.terminal.close()

    _classes["FarPdb"] = FarPdb
    return FarPdb
