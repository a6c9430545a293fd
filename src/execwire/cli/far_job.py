"""What ``execwire run`` and ``execwire shell`` ship to each gateway: a script's world on the far side.

Far-side code: stdlib only, Python >= 3.6. It is shipped as this module's source with
remote_exec and runs as ``__channelexec__``; the controller's first item is a dict of settings.

Everything the job says travels on its one channel as tagged tuples, in the order it happened:
("out", bytes) and ("err", bytes) for what it printed, ("item", value) for what the code sent,
("read", size) when the code reads standard input, ("exit", status, raised) at the end, and for the
shell ("ready", facts), ("more",), ("done",) and ("completions", names). sys.stdout and sys.stderr are
replaced by writers that gather text for a few milliseconds and send it on that channel, and
``channel.send`` sends what they gathered first, so a print() followed by a send arrives in that order.
What subprocesses write to file descriptors 1 and 2 still goes the gateway's own way (OUTPUT frames)
and may overtake.

The controller answers with ("stdin", bytes) (b"" at the end of its input), and the shell sends
("source", text), ("complete", text) and ("interrupt",).
"""

import builtins
import codeop
import io
import linecache
import os
import signal
import sys
import threading
import time
import traceback
import types

try:
    import queue
except ImportError:  # pragma: no cover
    import Queue as queue  # noqa: N813

FLUSH_EVERY = (0.01, 0.05)  # printed text waits at most this long: 10 ms while output flows, 50 ms when idle
BUFFER_SIZE = 8 * 1024
READ_SIZE = 64 * 1024

_OWN_FILE = (lambda: None).__code__.co_filename


# -- what the job says, in order ---------------------------------------------------------------


class Outbox(object):
    """The job's one way to the controller: printed text and items, in the order they happened.

    sys.stdout and sys.stderr are ordinary TextIOWrappers (print() stays as fast as
    python's own) whose raw files send what they are given. Before anything else is
    sent, both are flushed; a thread flushes them every few milliseconds too. stderr
    is line buffered and flushes stdout before it writes, so the two keep their order.
    """

    def __init__(self, channel, encoding):
        self.channel = channel
        self._lock = threading.Lock()
        self.depth = 0  # > 0 while the main thread sends: a Ctrl-C must not cut a frame in half
        self._main = threading.main_thread()
        self._written = 0
        self._closed = threading.Event()
        self.stdout = io.TextIOWrapper(io.BufferedWriter(Sink(self, "out", 1), BUFFER_SIZE),
                                       encoding=encoding, errors="strict", write_through=True)
        self.stderr = io.TextIOWrapper(io.BufferedWriter(Sink(self, "err", 2, before=self.stdout.flush),
                                                         BUFFER_SIZE),
                                       encoding=encoding, errors="backslashreplace", line_buffering=True,
                                       write_through=True)
        self._flusher = threading.Thread(target=self._flush_loop, name="execwire-job-output")
        self._flusher.daemon = True
        self._flusher.start()

    def write(self, tag, data):
        self._send((tag, data))

    def send(self, *message):
        """Send what was printed so far, then ``message``."""
        self.flush()
        self._send(message)

    def flush(self):
        self.stdout.flush()
        self.stderr.flush()

    def close(self):
        """No more flushing by the thread (the job's last message flushed what was left)."""
        self._closed.set()

    def _send(self, message):
        main = threading.current_thread() is self._main
        if main:
            self.depth += 1
        try:
            with self._lock:
                self.channel.send(message)
                self._written += 1
        finally:
            if main:
                self.depth -= 1

    def _flush_loop(self):
        wait = FLUSH_EVERY[0]
        while not self._closed.wait(wait):
            written = self._written
            try:
                self.flush()
            except Exception:
                return  # the controller is gone: nobody to tell
            wait = FLUSH_EVERY[0] if self._written != written else min(wait * 2, FLUSH_EVERY[1])


class Sink(io.RawIOBase):
    """The raw file under the job's sys.stdout or sys.stderr: what it is given goes to the outbox."""

    def __init__(self, outbox, tag, fd, before=None):
        io.RawIOBase.__init__(self)
        self._outbox = outbox
        self._tag = tag
        self._fd = fd
        self._before = before
        self.name = "<stdout>" if tag == "out" else "<stderr>"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd  # subprocesses given sys.stdout write there: the gateway's OUTPUT way

    def write(self, data):
        if self._before is not None:
            self._before()
        data = bytes(data)
        self._outbox.write(self._tag, data)
        return len(data)


class Input(io.RawIOBase):
    """The job's standard input: asks the controller for data only when the code reads.

    The reader waits on a bare lock that feed() releases (not a Condition): a Ctrl-C that
    interrupts the wait then shows no frames of threading.py in the traceback.
    """

    def __init__(self, outbox):
        io.RawIOBase.__init__(self)
        self._outbox = outbox
        self._lock = threading.Lock()
        self._news = threading.Lock()  # held while there is nothing new; feed() releases it
        self._news.acquire()
        self._data = bytearray()
        self._eof = False
        self._asked = False

    def readable(self):
        return True

    def readinto(self, buffer):
        while True:
            with self._lock:
                if self._data or self._eof:
                    size = min(len(buffer), len(self._data))
                    buffer[:size] = self._data[:size]
                    del self._data[:size]
                    return size
                ask = not self._asked
                self._asked = True
            try:
                if ask:
                    self._outbox.send("read", len(buffer))  # also sends a prompt printed just before
                self._news.acquire()
            except BaseException:  # Ctrl-C in the shell: the answer, if it comes, is for the next read
                with self._lock:
                    self._asked = False
                raise

    def feed(self, data):
        """Data from the controller; b"" means its input ended."""
        with self._lock:
            self._asked = False
            if data:
                self._data += data
            else:
                self._eof = True
            if self._news.locked():
                self._news.release()


# -- the code's view: channel, __main__, argv ---------------------------------------------------


class ScriptChannel(object):
    """The ``channel`` the code sees: send() prints an item, after what was printed before it."""

    def __init__(self, channel, outbox):
        self._channel = channel
        self._outbox = outbox
        self.gateway = channel.gateway
        self.id = channel.id

    def __repr__(self):
        return "<execwire job channel %d>" % self.id

    def send(self, item):
        self._outbox.send("item", item)

    def isclosed(self):
        return self._channel.isclosed()

    def close(self, error=None):
        """Nothing to do: the channel ends with the code."""

    def receive(self, timeout=None):
        raise RuntimeError("the execwire command sends nothing on channel; read sys.stdin for its input")

    def __iter__(self):
        return self.receive()


class Job(object):
    """Runs one job on its channel: settings first, then the code (run) or statements (shell)."""

    def __init__(self, channel):
        self.channel = channel
        settings = channel.receive()
        self.settings = settings
        self.outbox = Outbox(channel, settings.get("encoding") or "utf-8")
        self.input = Input(self.outbox) if settings.get("stdin") else None
        self.requests = queue.Queue()  # shell requests from the controller; None at the end
        self.interrupter = None
        self.skip_files = _execwire_files(channel) | {_OWN_FILE}

    # -- the whole life of the job
    def main(self):
        saved = sys.stdout, sys.stderr, sys.stdin, sys.argv, sys.modules.get("__main__"), list(sys.path)
        encoding = self.settings.get("encoding") or "utf-8"
        sys.stdout, sys.stderr = self.outbox.stdout, self.outbox.stderr
        if self.input is not None:
            sys.stdin = io.TextIOWrapper(io.BufferedReader(self.input, READ_SIZE), encoding=encoding,
                                         errors="strict")
        inbox = threading.Thread(target=self._inbox, name="execwire-job-input")
        inbox.daemon = True
        inbox.start()
        link = self._upstream()
        if link is not None:  # log records and pdb prompts go after what the code printed before them
            link.flush_hooks.append(self.outbox.flush)
            link.own_files.add(_OWN_FILE)  # pdb never stops in this file
        try:
            module = self._main_module()
            if self.settings.get("mode") == "shell":
                status, raised = self._shell(module)
            else:
                status, raised = self._run(module)
            self.outbox.send("exit", status, raised)
        except BaseException:
            if not self.channel.isclosed():
                raise
            # the controller has gone (or ended us): nobody is left to tell
        finally:
            if link is not None and self.outbox.flush in link.flush_hooks:
                link.flush_hooks.remove(self.outbox.flush)
            self.outbox.close()
            sys.stdout, sys.stderr, sys.stdin, sys.argv, main_module, sys.path[:] = saved
            if main_module is not None:
                sys.modules["__main__"] = main_module

    def _far_module(self, name):
        """The far side's execwire module ``name`` (None if this far side has none of that name)."""
        package = type(self.channel).__module__.rpartition(".")[0]
        return sys.modules.get(package + "." + name)

    def _upstream(self):
        module = self._far_module("upstream")
        return module.current() if module is not None else None

    def _main_module(self):
        settings = self.settings
        module = types.ModuleType("__main__")
        namespace = module.__dict__
        namespace["__builtins__"] = builtins
        namespace["channel"] = ScriptChannel(self.channel, self.outbox)
        path = settings.get("file")
        if path:
            namespace["__file__"] = path
            folder = os.path.dirname(path)
            if os.path.isdir(folder):
                sys.path.insert(0, folder)  # as python does for a script: its neighbours are importable
        sys.argv = list(settings.get("argv") or [""])
        sys.modules["__main__"] = module  # pickle, dataclasses and friends look the module up
        return module

    def _inbox(self):
        """Take what the controller sends: input data, shell requests, interrupts."""
        while True:
            try:
                message = self.channel.receive()
            except Exception:
                break
            kind = message[0]
            if kind == "stdin" and self.input is not None:
                self.input.feed(message[1])
            elif kind == "interrupt":
                statement = self.interrupter.statement() if self.interrupter is not None else None
                if statement is not None:
                    interrupting = threading.Thread(target=self.interrupter.interrupt, args=(statement,),
                                                    name="execwire-interrupt")
                    interrupting.daemon = True
                    interrupting.start()
            else:
                self.requests.put(message)
        if self.input is not None:
            self.input.feed(b"")
        self.requests.put(None)

    # -- execwire run
    def _run(self, module):
        settings = self.settings
        filename = settings.get("filename") or "<string>"
        source = settings["source"]
        _remember_source(filename, source)
        before = set(threading.enumerate())
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except SystemExit as exc:
            status, raised = self._exit_status(exc), None
        except BaseException as exc:
            sys.stderr.write(self.format_error(exc))
            status, raised = (130 if isinstance(exc, KeyboardInterrupt) else 1), exc.__class__.__name__
            if settings.get("pdb") and not isinstance(exc, KeyboardInterrupt):
                self._post_mortem(exc)
        else:
            status, raised = 0, None
        self._join_threads(before)
        return status, raised

    def _post_mortem(self, exc):
        """``execwire run --pdb``: pdb in the frames of the uncaught exception, on the controller's terminal."""
        debugger = self._far_module("debugger")
        if debugger is None:
            sys.stderr.write("execwire: --pdb: this far side has no debugger\n")
            return
        try:
            debugger.post_mortem(exc.__traceback__)
        except debugger.DebuggerUnavailable as unavailable:
            sys.stderr.write("execwire: --pdb: %s\n" % (unavailable,))

    def _join_threads(self, before):
        """Wait for the threads the code started and left running, as python does at its end."""
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread not in before and thread is not current and not thread.daemon:
                thread.join()

    def _exit_status(self, exc):
        """The exit status python gives ``sys.exit(code)``: None is 0, a number itself, else 1 and the text."""
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return int(code)
        sys.stderr.write("%s\n" % (code,))
        return 1

    def format_error(self, exc):
        """The traceback of ``exc`` as python prints it, without execwire's own frames."""
        formatted = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        seen = set()
        pending = [formatted]
        while pending:
            part = pending.pop()
            if part is None or id(part) in seen:
                continue
            seen.add(id(part))
            frames = [frame for frame in part.stack if frame.filename not in self.skip_files]
            part.stack = traceback.StackSummary.from_list(frames)
            if not frames:
                part.exc_traceback = None  # no "Traceback (most recent call last):" over nothing
            pending.extend((part.__cause__, part.__context__))
        return "".join(formatted.format())

    # -- execwire shell
    def _shell(self, module):
        namespace = module.__dict__
        self.interrupter = Interrupter(self.outbox)
        compiler = codeop.CommandCompiler()
        facts = {"version": sys.version, "platform": sys.platform, "executable": sys.executable,
                 "pid": os.getpid(), "cwd": os.getcwd(), "interrupts": self.interrupter.works}
        self.outbox.send("ready", facts)
        try:
            while True:
                try:
                    request = self.requests.get()
                    if request is None:
                        return 0, None
                    if request[0] == "complete":
                        self.outbox.send("completions", _completions(request[1], namespace))
                        continue
                    self._statement(compiler, request[1], namespace)
                except SystemExit as exc:
                    return self._exit_status(exc), None
                except KeyboardInterrupt:  # a Ctrl-C that came late: the statement had ended
                    self.outbox.send("done")
        finally:
            self.interrupter.close()

    def _statement(self, compiler, source, namespace):
        try:
            code = compiler(source, "<stdin>", "single")
        except (OverflowError, SyntaxError, ValueError) as exc:
            sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
            self.outbox.send("done")
            return
        if code is None:
            self.outbox.send("more")
            return
        interrupter = self.interrupter
        try:
            interrupter.begin()
            try:
                exec(code, namespace)
            finally:
                interrupter.end()
        except SystemExit:
            raise
        except BaseException as exc:
            interrupter.end()
            sys.stderr.write(self.format_error(exc))
        self.outbox.send("done")


class Interrupter(object):
    """Ctrl-C of the shell: KeyboardInterrupt in the statement that runs, never in execwire's code.

    The statement runs in the far main thread; the controller's ("interrupt",) arrives on
    another thread, which sends SIGINT to the main thread with pthread_kill. That also cuts a
    blocking call short (time.sleep, a read), which an exception set from another thread
    (PyThreadState_SetAsyncExc) could not do. Our SIGINT handler raises KeyboardInterrupt only
    while a statement runs and the main thread is not inside the outbox (where it would cut a
    frame in half); until it has raised, the signal is sent again every few milliseconds.
    """

    def __init__(self, outbox):
        self._outbox = outbox
        self._lock = threading.Lock()
        self._running = False
        self._delivered = False
        self._statement = 0  # which statement runs: an interrupt is for that one only
        self._thread = threading.current_thread()
        self.works = hasattr(signal, "pthread_kill") and self._thread is threading.main_thread()
        self._previous = signal.signal(signal.SIGINT, self._on_sigint) if self.works else None

    def close(self):
        if self.works:
            signal.signal(signal.SIGINT, self._previous)

    def begin(self):
        with self._lock:
            self._running = True
            self._delivered = False
            self._statement += 1

    def end(self):
        with self._lock:
            self._running = False

    def statement(self):
        """The statement an interrupt that arrives now is for (None if none runs)."""
        with self._lock:
            return self._statement if self._running and self.works else None

    def interrupt(self, statement):
        """Interrupt ``statement`` (from statement()), again and again until it raised or ended."""
        deadline = time.time() + 10.0
        while time.time() < deadline:
            with self._lock:
                if self._statement != statement or not self._running or self._delivered:
                    return
                signal.pthread_kill(self._thread.ident, signal.SIGINT)
            time.sleep(0.005)

    def _on_sigint(self, signum, frame):
        if not self._running or self._delivered or self._outbox.depth:
            return
        self._delivered = True
        raise KeyboardInterrupt


def _completions(text, namespace):
    import rlcompleter

    completer = rlcompleter.Completer(namespace)
    found = []
    for state in range(1000):
        try:
            match = completer.complete(text, state)
        except Exception:
            break
        if match is None:
            break
        found.append(match)
    return found


def _execwire_files(channel):
    """The source files of the far side's execwire modules: their frames are left out of tracebacks."""
    package = type(channel).__module__.rpartition(".")[0]
    files = set()
    for name, module in list(sys.modules.items()):
        if module is not None and (name == package or name.startswith(package + ".")):
            filename = getattr(module, "__file__", None)
            if filename:
                files.add(filename)
    return files


def _remember_source(filename, source):
    """The code's lines for tracebacks and inspect (the file may not exist on this side)."""
    lines = source.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)


if __name__ == "__channelexec__":
    Job(channel).main()  # noqa: F821 - the channel execwire gives shipped code
