"""The far end: runs shipped code (EXEC frames), answers STATUS, obeys TERMINATE.

Far-side module: stdlib only, Python >= 3.6.

Shipped code runs in a pool of reused worker threads (exec model "thread") or
in the main thread ("main_thread_only"). An idle worker reads frames while it
waits for work, so the EXEC it reads is its own and needs no thread woken.
"""

import os
import sys
import threading
import time

from . import asyncrun, frames, protocol
from .errors import ChannelClosedError, GatewayLostError, ProtocolError
from .gateway import BaseGateway, _Queue, format_exception


class FarGateway(BaseGateway):
    """The far end: runs shipped code, answers status requests, obeys TERMINATE."""

    _side = protocol.FAR

    def __init__(self, stream, id, trace, execmodel="thread"):
        BaseGateway.__init__(self, stream, id, trace)
        self.execmodel = execmodel
        self._output_cond = threading.Condition(threading.Lock())  # output credit; see send_output()
        self._main_jobs = _Queue()  # run by the main thread; None means stop
        self._running = 0
        self._running_lock = threading.Lock()
        # worker threads are kept and reused: starting a thread costs more than a short job
        self._idle_workers = []  # the job queue of each idle worker
        self._worker_state = threading.local()  # .jobs: the queue the current worker waits on
        self._compiled = {}  # (source, filename) -> code, for code shipped again and again
        self._async_runner = None  # the event loop of async jobs, made by the first (asyncrun.py)
        self.service_channels = 0  # channels of execwire's own (upstream.py): not counted in the status

    def configure(self, config):
        """Apply the gateway settings of the CONFIG frame that concern this object."""
        execmodel = config.get("execmodel", "thread")
        if execmodel not in ("thread", "main_thread_only"):
            raise ValueError("execmodel=%s: unknown exec model; use thread or main_thread_only" % (execmodel,))
        self.execmodel = execmodel
        self.id = config.get("id")
        if config.get("max_channels"):
            self._protocol.max_channels = int(config["max_channels"])

    def read_config(self):
        """Read up to the CONFIG frame; return (config, the events that followed it in the same read)."""
        core = self._protocol
        while True:
            if not core.has_frame():
                view = core.read_buffer()
                count = self._stream.readinto(view)
                del view
                core.bytes_read(count)
            events = core.events()
            if events:
                first = events[0]
                if first[0] != protocol.CONFIG:  # the end of the stream: the controller left
                    return None, []
                return first[1], events[1:]

    def serve(self, events=()):
        """Run until the controller says stop or goes away. Call from the main thread.

        ``events`` are what arrived right behind the CONFIG frame.
        """
        if events:
            with self._baton.lock:
                try:
                    self._dispatch(events)
                except BaseException as exc:
                    self._reading_failed(exc)
        reader = threading.Thread(target=self._reader_main, name="execwire-reader")
        reader.daemon = True
        reader.start()
        while True:
            if self.execmodel == "main_thread_only":
                job = self._wait_item(self._main_jobs, None)  # the main thread runs the code: it reads too
            else:
                job = self._main_jobs.get()  # reading is left to idle workers, whose next job it is
            if job is None:
                self._let_running_code_finish()
                return
            self._finish(*self._execute(*job))

    def _let_running_code_finish(self):
        """The controller went away: shipped code still running gets up to FINISH_GRACE seconds.

        So items that arrived before the end are taken by it (and what it writes is
        written) before the process exits; a TERMINATE ends it at once.
        """
        if self._expect_end:
            return
        deadline = time.monotonic() + FINISH_GRACE
        while self._running and time.monotonic() < deadline:
            time.sleep(0.01)

    def _reader_main(self):
        self._receive_loop()

    def _connection_ended(self, error):
        BaseGateway._connection_ended(self, error)
        with self._output_cond:
            self._output_cond.notify_all()  # the output forwarder stops waiting for credit
        self._main_jobs.put(None)  # serve() returns and the process exits
        if self.execmodel == "main_thread_only" and self._running:
            import _thread

            _thread.interrupt_main()  # the main thread runs shipped code: stop it

    def _special_event(self, event):
        kind = event[0]
        if kind == protocol.EXEC:
            self._start_exec(event[1], event[2])
        elif kind == protocol.STATUS:
            self._send_status(event[1])
        elif kind == protocol.OUTPUT_CREDIT:
            with self._output_cond:
                self._protocol.output_credit += event[1]
                self._output_cond.notify_all()
        elif kind == protocol.TERMINATE:
            self._trace("terminate requested")
            self._expect_end = True
            raise GatewayLostError("terminate requested")
        else:
            raise ProtocolError("the near side sent a second CONFIG frame")

    def send_output(self, stream, data):
        """Send what the far process wrote to fd 1 or 2, waiting while the controller is behind.

        So a far side that prints faster than the controller's output handler
        takes it is held back, like a sender on a channel.
        """
        with self._output_cond:
            # once reading ended (TERMINATE, or the controller left), the last output still goes out
            # if it can: the write says whether anybody is left to take it
            while self._protocol.output_credit <= 0 and self._connection_error is None:
                self._output_cond.wait(1.0)
            self._protocol.output_sent(len(data))
        self._send(frames.OUTPUT, stream, [data])

    def _start_exec(self, channel, request):
        if asyncrun.may_be_async(request[0]):
            asyncrun.install_waking_queue(channel)  # before any item for it is dispatched
        job = (channel,) + tuple(request)
        if self.execmodel == "main_thread_only":
            with self._running_lock:
                busy = self._running > 0 or not self._main_jobs.empty()
                if not busy:
                    self._main_jobs.put(job)
                    self._running += 1  # counted now so a second EXEC sees it
            if busy:
                channel.close(error="execwire: the main_thread_only exec model runs one "
                                    "remote_exec at a time and another one is still running")
            return
        with self._running_lock:
            self._running += 1
            idle = self._idle_workers
            # the idle worker that read this EXEC takes it: no thread needs waking
            jobs = getattr(self._worker_state, "jobs", None)
            if jobs is not None and jobs in idle:
                idle.remove(jobs)
            else:
                jobs = idle.pop() if idle else None
        if jobs is not None:
            jobs.put(job)
            return
        thread = threading.Thread(target=self._worker, args=(job,), name="execwire-exec")
        thread.daemon = True
        thread.start()

    def _worker(self, job):
        """Run jobs; stay for the next one unless enough workers are idle already."""
        jobs = _Queue()
        while True:
            outcome = self._execute(*job)
            with self._running_lock:
                stay = len(self._idle_workers) < MAX_IDLE_WORKERS
                if stay:
                    self._idle_workers.append(jobs)  # before the close is seen: the next EXEC finds us idle
            self._finish(*outcome)
            if not stay:
                return
            self._worker_state.jobs = jobs
            try:
                job = self._wait_item(jobs, None)  # an idle worker reads: the next EXEC is its own
            finally:
                self._worker_state.jobs = None
            if job is None:
                return

    def _compile(self, source, filename):
        key = (source, filename)
        code = self._compiled.get(key)
        if code is None:
            code = compile(source, filename, "exec")
            if len(self._compiled) >= 64:
                self._compiled.clear()
            self._compiled[key] = code
        return code

    def _execute(self, channel, source, filename, funcname, kwargs):
        """Run shipped code with ``channel`` in its namespace; return (channel, error text or None)."""
        self._trace("exec on channel", channel.id, filename)
        error = exc_info = None
        try:
            namespace = {"channel": channel, "__name__": "__channelexec__"}
            code = self._compile(source, filename)
            exec(code, namespace)
            target = namespace[funcname] if funcname is not None else namespace.get("main")
            if asyncrun.is_async(target):
                self._start_async(channel, target, kwargs, source, filename)
                return channel, _RUNS_ON
            if funcname is not None:
                target(channel, **kwargs)
        except BaseException:
            exc_info = sys.exc_info()
            if _ended_by_close(exc_info[1], channel):
                self._trace("exec on channel", channel.id, "ended: the other side closed the channel")
                exc_info = None
        if exc_info is not None:
            with _traceback_lock:  # shipped sources share a file name: format one at a time
                _remember_source(filename, source)
                error = format_exception(exc_info, skip_frames=1)
                _forget_source(filename)
            self._trace("exec on channel", channel.id, "raised", exc_info[1].__class__.__name__)
            # KeyboardInterrupt and SystemExit too end only this remote_exec (as a RemoteError):
            # the gateway and its other channels go on
        # no longer running before the close is seen, so the next remote_exec finds us idle
        with self._running_lock:
            self._running -= 1
        return channel, error

    def _start_async(self, channel, function, kwargs, source, filename):
        """Run an ``async def`` job in the gateway's event loop (asyncrun.py); it finishes there."""
        if self._async_runner is None:
            with self._running_lock:
                if self._async_runner is None:
                    self._async_runner = asyncrun.AsyncRunner()

        def finished(exc_info):
            error = None
            if exc_info is not None and _ended_by_close(exc_info[1], channel):
                exc_info = None  # as for threaded jobs: the other side closed the channel, no error
            if exc_info is not None:
                with _traceback_lock:
                    _remember_source(filename, source)
                    error = format_exception(exc_info, skip_frames=1)
                    _forget_source(filename)
            with self._running_lock:
                self._running -= 1
            self._finish(channel, error)

        self._async_runner.start(function, channel, kwargs, finished)

    def _finish(self, channel, error):
        """Close the channel of a finished remote_exec, with its error if it failed."""
        if error is _RUNS_ON:
            return  # an async job: it finishes in the event loop
        if error is not None and channel.isclosed() and self._connection_error is None:
            sys.stderr.write(error)  # nobody left to receive it
        else:
            channel.close(error=error)

    def _send_status(self, channel):
        with self._running_lock:
            running = self._running
        status = {
            "rinfo": rinfo(),
            "numexecuting": running,
            # not counting the channel of this answer, nor execwire's own
            "numchannels": len(self._protocol.live_channels()) - 1 - self.service_channels,
            "execqsize": self._main_jobs.qsize() if hasattr(self._main_jobs, "qsize") else 0,
        }
        try:
            channel.send(status)
            channel.close()
        except GatewayLostError:
            pass


def rinfo():
    """What execwire tells the controller about this interpreter."""
    return {
        "executable": sys.executable,
        "version_info": tuple(sys.version_info),
        "platform": sys.platform,
        "implementation": sys.implementation.name,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
    }


MAX_IDLE_WORKERS = 16
_RUNS_ON = "async job: it runs on in the event loop"
FINISH_GRACE = 1.0
_traceback_lock = threading.Lock()


def _remember_source(filename, source):
    """Let the traceback of shipped code show its lines (done only when it failed)."""
    import linecache

    lines = source.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)


def _forget_source(filename):
    import linecache

    linecache.cache.pop(filename, None)


def _ended_by_close(exc, channel):
    """True if shipped code stopped only because the other side closed (or dropped) its channel.

    Then there is nobody to tell and nothing to report: the code's receive() or
    send() said so, as it should.
    """
    return isinstance(exc, (EOFError, ChannelClosedError)) and channel._remote == protocol.CLOSE_RECEIVED
