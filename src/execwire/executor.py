"""Executor: a concurrent.futures.Executor whose workers are gateways.

Work waits in one queue; each gateway has a number of slots (``max_workers`` spread evenly over
the gateways), and a thread per slot takes the next call, runs it on its gateway by reference
(execwire.calls) and settles its future. A gateway that is lost is replaced from its spec; the calls
it was running go back to the front of the queue, to be run elsewhere, up to ``retries`` times each.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import calls
from ._far.errors import GatewayLostError, GatewayStartError
from .gateway import Gateway
from .group import Group
from .spec import XSpec

Progress = Callable[[int, int], object]
logger = logging.getLogger("execwire")
START_ATTEMPTS = 3  # a lost gateway is started again from its spec at most this many times in a row
FAST_CALL = 0.002  # seconds: calls quicker than this are sent FAST_PREFETCH ahead (with prefetch=None)
FAST_PREFETCH = 4


class _Work:
    """One submitted call (or a chunk of map's calls) and its future."""

    __slots__ = ("future", "func", "args", "kwargs", "batch", "attempts", "count", "started")

    def __init__(self, future: concurrent.futures.Future[Any], func: Callable[..., Any], args: Any,
                 kwargs: dict[str, Any], batch: bool, count: int) -> None:
        self.future = future
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.batch = batch
        self.attempts = 0  # runs that a lost gateway cut short
        self.started = False  # its future is running (it may be back in the queue for a retry)
        self.count = count  # calls it holds: 1, or a chunk's length


class _Pace:
    """How many calls a slot sends ahead: fixed, or by how fast its answers come."""

    def __init__(self, fixed: int | None) -> None:
        self.fixed = fixed
        self.ahead = 1 if fixed is None else fixed
        self._last = time.monotonic()
        self._interval = 1.0  # seconds between answers, smoothed

    def answered(self) -> None:
        if self.fixed is not None:
            return
        now = time.monotonic()
        self._interval = 0.8 * self._interval + 0.2 * (now - self._last)
        self._last = now
        self.ahead = FAST_PREFETCH if self._interval < FAST_CALL else 1


class _Lane:
    """A gateway and the spec it is replaced from; its slots share it."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.spec: XSpec = gateway.spec
        self.generation = 0
        self.failures = 0  # start-ups in a row that failed
        self.closed = False
        self.lock = threading.Lock()


class Executor(concurrent.futures.Executor):
    """Run importable functions on gateways: ``Executor(["popen"] * 4).map(func, items)``.

    ``gateways``: gateway specs (the executor starts and ends them) or a Group (its
    gateways at this moment; the group stays yours). ``max_workers``: calls running at
    once in all, spread evenly over the gateways (default: one per gateway).
    ``retries``: how often a call whose gateway was lost is run again on another one
    (default 1: calls must be idempotent to be retried; 0 turns it off). An exception
    the function raises is never retried. ``progress(done, submitted)`` is called after
    each call ends, from a worker thread. ``replace``: start a lost gateway again from
    its spec (default True). ``prefetch``: calls sent to a slot ahead of the one it
    runs, so tiny calls do not wait a round trip each (they count as lost with the
    gateway, like the running one). The default, None, sends one ahead, and up to
    FAST_PREFETCH while calls take less than FAST_CALL seconds each: more would
    leave calls waiting behind a long one while other slots are idle.
    """

    def __init__(self, gateways: Group | Iterable[str | XSpec], max_workers: int | None = None,
                 retries: int = 1, progress: Progress | None = None, replace: bool = True,
                 prefetch: int | None = None) -> None:
        if isinstance(gateways, Group):
            self.group = gateways
            self._own_group = False
        else:
            self.group = Group()
            self._own_group = True
            try:
                for spec in gateways:  # started side by side; a start that fails is a lane's failure, later
                    self.group._start_gateway(spec)
            except BaseException:
                self.group.terminate(timeout=1.0)
                raise
        lanes = [_Lane(gateway) for gateway in self.group]
        if not lanes:
            raise ValueError("an Executor needs at least one gateway")
        if max_workers is None:
            max_workers = len(lanes)
        if max_workers < 1:
            raise ValueError(f"max_workers must be 1 or more, not {max_workers}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        self.max_workers = max_workers
        self.retries = retries
        self.replace = replace
        if prefetch is not None and prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, not {prefetch}")
        self.prefetch = prefetch
        self._progress = progress
        self._lanes = lanes
        self._queue: collections.deque[_Work] = collections.deque()
        self._cond = threading.Condition()
        self._shutdown = False
        self._submitted = 0
        self._done = 0
        self._last_error: BaseException | None = None
        self._threads = [threading.Thread(target=self._slot, args=(lanes[number % len(lanes)],), daemon=True,
                                          name=f"execwire-executor-{number}") for number in range(max_workers)]
        for thread in self._threads:
            thread.start()

    @property
    def gateways(self) -> list[Gateway]:
        """The gateways the work runs on now (replacements included)."""
        return [lane.gateway for lane in self._lanes if not lane.closed]

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` on some gateway; ``fn`` must be importable (see Gateway.call)."""
        calls.reference(fn)  # a lambda or a closure fails here, not in the future
        return self._put(fn, args, kwargs, batch=False, count=1)

    def _put(self, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any], batch: bool,
             count: int) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not any(not lane.closed for lane in self._lanes):
                raise RuntimeError(f"every gateway of this Executor was lost: {self._last_error}")
            self._queue.append(_Work(future, fn, args, kwargs, batch, count))
            self._submitted += count
            self._cond.notify()
        return future

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """Like the builtin map, run here and there: results in order, each call by reference.

        ``chunksize`` > 1 sends that many calls as one job (fewer round trips for small
        calls); ``timeout`` bounds the whole iteration (TimeoutError).
        """
        if chunksize < 1:
            raise ValueError(f"chunksize must be 1 or more, not {chunksize}")
        calls.reference(fn)
        deadline = None if timeout is None else time.monotonic() + timeout
        argument_tuples = zip(*iterables, strict=False)  # as map(): up to the shortest
        if chunksize == 1:
            futures = [self._put(fn, args, {}, batch=False, count=1) for args in argument_tuples]
        else:
            futures = []
            while True:
                chunk: list[tuple[Any, dict[str, Any]]] = [
                    (args, {}) for args in itertools.islice(argument_tuples, chunksize)]
                if not chunk:
                    break
                futures.append(self._put(fn, chunk, {}, batch=True, count=len(chunk)))
        return self._results(futures, deadline, chunksize > 1)

    @staticmethod
    def _results(futures: list[concurrent.futures.Future[Any]], deadline: float | None,
                 chunked: bool) -> Iterator[Any]:
        futures.reverse()
        try:
            while futures:
                future = futures[-1]
                if deadline is None:
                    result = future.result()
                else:
                    result = future.result(max(deadline - time.monotonic(), 0.0))
                futures.pop()
                if chunked:
                    yield from result
                else:
                    yield result
        finally:
            for future in futures:
                future.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; ``cancel_futures`` cancels what has not started; ``wait`` waits for the rest.

        Gateways the executor started from specs are ended once the work is done.
        """
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft().future.cancel()
            self._cond.notify_all()
        if wait:
            self._finish()
        else:
            threading.Thread(target=self._finish, daemon=True, name="execwire-executor-shutdown").start()

    def _finish(self) -> None:
        for thread in self._threads:
            thread.join()
        if self._own_group:
            self.group.terminate(timeout=5.0)

    # -- the slots ------------------------------------------------------------------------------
    def _next(self, block: bool = True) -> _Work | None:
        """The next work to start (its future marked running); None once shut down, or if none waits."""
        with self._cond:
            while True:
                while self._queue:
                    work = self._queue.popleft()
                    if work.started:
                        return work
                    if work.future.set_running_or_notify_cancel():
                        work.started = True
                        return work
                if self._shutdown or not block:
                    return None
                self._cond.wait()

    def _slot(self, lane: _Lane) -> None:
        """Run work on the lane's gateway, a call ahead: the next one waits there while this one runs."""
        stream: calls.CallStream | None = None
        generation = -1
        inflight: collections.deque[_Work] = collections.deque()
        pace = _Pace(self.prefetch)
        while True:
            work = self._next()
            if work is None:
                if stream is not None:
                    stream.close()
                return
            inflight.append(work)
            try:
                with lane.lock:
                    closed = lane.closed
                    if stream is None or generation != lane.generation:
                        gateway, generation = lane.gateway, lane.generation
                        stream = None
                if closed:
                    self._requeue(inflight.popleft(), None)
                    return
                if stream is None:
                    stream = calls.CallStream(gateway)
                self._send(stream, inflight, inflight[0])
                while inflight:
                    while len(inflight) <= pace.ahead:
                        extra = self._next(block=False)
                        if extra is None:
                            break
                        inflight.append(extra)
                        self._send(stream, inflight, extra)
                    if not inflight:
                        break
                    oldest = inflight[0]
                    try:
                        result = stream.receive(oldest.func)
                    except (GatewayLostError, GatewayStartError):
                        raise
                    except BaseException as exc:
                        inflight.popleft()
                        self._settle(oldest, exc)
                        continue
                    inflight.popleft()
                    lane.failures = 0
                    pace.answered()
                    self._settle(oldest, None, result)
                if stream.channel.isclosed():  # the far loop ended (it should not): a new one next time
                    stream = None
            except (GatewayLostError, GatewayStartError) as exc:
                self._lost(inflight, exc)
                inflight.clear()
                stream = None
                self._replace(lane, generation, exc)

    def _send(self, stream: calls.CallStream, inflight: collections.deque[_Work], work: _Work) -> None:
        """Send ``work`` (last of ``inflight``); arguments that cannot travel fail it at once."""
        try:
            stream.send(work.func, work.args, work.kwargs, work.batch)
        except (GatewayLostError, GatewayStartError):
            raise
        except BaseException as exc:
            inflight.pop()
            self._settle(work, exc)

    def _lost(self, inflight: collections.deque[_Work], error: BaseException) -> None:
        """The gateway went away with these calls sent: run them elsewhere, or fail them."""
        for work in reversed(inflight):  # requeued at the front: the oldest ends up first
            if isinstance(error, GatewayStartError):
                self._requeue(work, error)  # it never ran: no retry is used up
                continue
            work.attempts += 1
            if work.attempts > self.retries:
                self._settle(work, error)
            else:
                self._requeue(work, error)

    def _settle(self, work: _Work, error: BaseException | None, result: Any = None) -> None:
        if error is not None:
            work.future.set_exception(error)
        else:
            work.future.set_result(result)
        with self._cond:
            self._done += work.count
            done, submitted = self._done, self._submitted
        if self._progress is not None:
            try:
                self._progress(done, submitted)
            except Exception:  # the work goes on; the error is told where errors of callbacks go
                logger.exception("the progress callback of an execwire Executor failed")

    def _requeue(self, work: _Work, error: BaseException | None) -> None:
        """Back to the front of the queue, unless no gateway is left to run it."""
        with self._cond:
            if error is not None:
                self._last_error = error
            if any(not lane.closed for lane in self._lanes):
                self._queue.appendleft(work)
                self._cond.notify()
                return
        self._settle(work, self._last_error or GatewayLostError("every gateway of this Executor was lost"))

    def _replace(self, lane: _Lane, generation: int, error: BaseException) -> None:
        """Start the lane's gateway again from its spec (once, whichever slot sees the loss first)."""
        with lane.lock:
            if lane.generation != generation or lane.closed:
                return
            old = lane.gateway
            old.exit(timeout=1.0)
            lane.failures = lane.failures + 1 if isinstance(error, GatewayStartError) else 1
            if not self.replace or lane.failures > START_ATTEMPTS or self._shutdown:
                lane.closed = True
            else:
                try:
                    lane.gateway = self.group._start_gateway(lane.spec)  # not waited for, under the lane lock
                except (GatewayStartError, ValueError) as exc:
                    self._last_error = exc
                    lane.closed = True
            lane.generation += 1
            if not lane.closed:
                return
        self._fail_if_no_gateway_left()

    def _fail_if_no_gateway_left(self) -> None:
        with self._cond:
            if any(not lane.closed for lane in self._lanes):
                return
            self._cond.notify_all()
            stranded = list(self._queue)
            self._queue.clear()
        for work in stranded:
            self._settle(work, self._last_error or GatewayLostError("every gateway of this Executor was lost"))
