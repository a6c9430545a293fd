"""Concurrency of the core: the reader baton, receive(timeout), close/exit races, flow control.

Two kinds of tests:

- guarantees, checked end to end through real popen gateways (also with a far side on Python 3.6 and
  PyPy when those interpreters exist): many threads on one gateway, timeouts racing delivery, close and
  exit waking blocked threads, no credit leak, frame order across coalesced and direct writes;
- known problems, each marked ``xfail(strict=True, raises=AssertionError)`` with the smallest
  reproduction found. Most races are forced deterministically: ``Pause`` stops one thread at a chosen
  line (with a trace function on that thread only) while the test makes the other thread do its part.
  Those run on a pair of in-process gateways joined by real OS pipes (``Pair``), the same transport
  code a popen gateway uses, so the interleaving can be controlled. When a problem is fixed its test
  passes, strict xfail turns that into a failure, and the marker must go.

Every wait is bounded; nothing relies on a bare sleep for synchronisation.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import pid_gone, wait_until

import execwire
from execwire._far import frames, protocol, wire
from execwire._far.channel import WINDOW, Channel
from execwire._far.gateway import BaseGateway, Tracer
from execwire._far.streams import FrameWriter, PipeStream, memory_pair
from execwire.gateway import Gateway

pytestmark = pytest.mark.timeout(60)

ECHO = "for item in channel: channel.send(item)"
FAR_PYTHONS = [
    pytest.param(None, id="far-same"),
    pytest.param("/root/.pyenv/versions/3.6.15/bin/python", id="far-py36"),
    pytest.param("/usr/bin/pypy3", id="far-pypy3"),
]


def known_problem(reason: str) -> pytest.MarkDecorator:
    """A test that fails until the problem it describes is fixed (and must then lose this marker)."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


# -- tools ----------------------------------------------------------------------------------------------------
def line_of(func: Callable[..., Any], snippet: str, nth: int = 0) -> int:
    """The line number of the ``nth`` line of ``func`` that contains ``snippet``."""
    lines, start = inspect.getsourcelines(func)
    hits = [start + index for index, line in enumerate(lines) if snippet in line]
    if len(hits) <= nth:
        raise LookupError(f"{func.__qualname__} has no line with {snippet!r}: update this test")
    return hits[nth]


class Pause:
    """Stop the first thread that reaches a point of ``func`` until ``go`` is set.

    The point is the line holding ``snippet`` (its ``nth`` occurrence), or the call itself when
    ``snippet`` is None. ``when(frame)`` narrows it further. Only threads running ``tracer`` (via
    sys.settrace or threading.settrace) are watched.
    """

    def __init__(self, func: Callable[..., Any], snippet: str | None = None, nth: int = 0,
                 when: Callable[[FrameType], bool] | None = None) -> None:
        self.code = func.__code__
        self.lineno = None if snippet is None else line_of(func, snippet, nth)
        self.when = when
        self.reached = threading.Event()
        self.go = threading.Event()
        self._armed = True
        self._lock = threading.Lock()

    def _hit(self, frame: FrameType) -> None:
        with self._lock:
            if not self._armed or (self.when is not None and not self.when(frame)):
                return
            self._armed = False
        self.reached.set()
        self.go.wait(20)

    def tracer(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code is not self.code:
            return None
        if self.lineno is None:
            self._hit(frame)
            return None
        return self._local

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == self.lineno:
            self._hit(frame)
        return self._local


class LineHook:
    """Call ``action(frame, event, arg)`` each time a traced thread reaches the line of ``func`` with ``snippet``."""

    def __init__(self, func: Callable[..., Any], snippet: str, action: Callable[..., Any]) -> None:
        self.code, self.lineno, self.action = func.__code__, line_of(func, snippet), action

    def tracer(self, frame: FrameType, event: str, arg: object) -> Any:
        return self._local if frame.f_code is self.code else None

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == self.lineno:
            self.action(frame, event, arg)
        return self._local


def in_call(thread: threading.Thread, name: str) -> bool:
    """True if ``thread`` is currently inside a function called ``name``."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


class Outcome:
    """Runs ``function`` in a daemon thread and keeps what it returned or raised."""

    def __init__(self, function: Callable[[], Any], tracer: Callable[..., Any] | None = None) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def run() -> None:
            if tracer is not None:
                sys.settrace(tracer)
            try:
                self.value = function()
            except BaseException as exc:  # noqa: B036 - the test looks at whatever it was
                self.error = exc
            finally:
                sys.settrace(None)
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


class _Near(BaseGateway):
    """The near end of a Pair: it takes the far end's HELLO."""

    def _special_event(self, event: tuple[Any, ...]) -> None:
        if event[0] != protocol.HELLO:
            super()._special_event(event)


class _Peer(BaseGateway):
    """The far end of a Pair (even channel ids): it takes the near end's CONFIG."""

    _side = protocol.FAR

    def _special_event(self, event: tuple[Any, ...]) -> None:
        if event[0] != protocol.CONFIG:
            super()._special_event(event)


class Pair:
    """Two gateways in this process joined by two OS pipes, each with a reader thread on request."""

    def __init__(self, memory: bool = False) -> None:
        if memory:  # streams that cannot be polled: only the reader threads read
            self.ta, self.tb = memory_pair()
        else:
            b_reads, a_writes = os.pipe()
            a_reads, b_writes = os.pipe()
            self.ta = PipeStream(a_reads, a_writes)
            self.tb = PipeStream(b_reads, b_writes)
        self.a = _Near(self.ta, "a", Tracer("a"))
        self.b = _Peer(self.tb, "b", Tracer("b"))
        self.threads: list[threading.Thread] = []
        self.a._send(frames.CONFIG, 0, wire.encode({}))
        self.b._send(frames.HELLO, 0, wire.encode({"protocol": frames.PROTOCOL_VERSION, "rinfo": {}}))

    def start_reader(self, gateway: BaseGateway, tracer: Callable[..., Any] | None = None) -> None:
        def run() -> None:
            if tracer is not None:
                sys.settrace(tracer)
            gateway._receive_loop()

        thread = threading.Thread(target=run, daemon=True, name=f"reader-{gateway.id}")
        thread.start()
        self.threads.append(thread)

    def channel(self) -> tuple[Channel, Channel]:
        ours = self.a.newchannel()
        return ours, self.b._protocol.channel_for(ours.id)

    def close(self) -> None:
        self.ta.close_write()
        self.tb.close_write()
        for thread in self.threads:
            thread.join(5)
        self.ta.close()
        self.tb.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    made = Pair()
    try:
        yield made
    finally:
        made.close()


def far_python_or_skip(python: str | None) -> str:
    if python is None:
        return "popen"
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} is not installed here")
    return f"popen//python={python}"


# == guarantees ==================================================================================================
def test_baton_rule_1_one_thread_at_a_time_reads_and_parses(pair):
    """Eight receivers on their own channels and the reader thread: never two in the reading part at once."""
    inside = [0]
    most = [0]
    lock = threading.Lock()
    read_and_dispatch = pair.b._read_and_dispatch

    def counted(buffered: bool | None = None) -> None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            read_and_dispatch(buffered)
        finally:
            with lock:
                inside[0] -= 1

    pair.b._read_and_dispatch = counted  # type: ignore[method-assign]
    pair.start_reader(pair.a)
    pair.start_reader(pair.b)
    pairs = [pair.channel() for _ in range(8)]

    def receive_all(theirs: Channel) -> list[Any]:
        return [theirs.receive(timeout=20) for _ in range(200)]

    receivers = [Outcome(lambda theirs=theirs: receive_all(theirs)) for _, theirs in pairs]
    for number in range(200):
        for ours, _ in pairs:
            ours.send(number)
    for receiver in receivers:
        assert receiver.done.wait(30) and receiver.value == list(range(200)), repr(receiver.error)
    assert most[0] == 1, f"{most[0]} threads were reading at once"


def test_baton_rule_2_the_reader_thread_waits_for_a_holder_without_blocking_on_the_lock(pair):
    pair.start_reader(pair.a)
    ours, theirs = pair.channel()
    baton = pair.b._baton
    assert baton.lock.acquire(timeout=5)  # this test thread holds it, as a receiver waiting long would
    baton.took()
    baton.taken_at -= 1.0  # a long hold: the reader thread dozes until the holder leaves
    pair.start_reader(pair.b)
    reader = pair.threads[-1]
    assert wait_until(lambda: in_call(reader, "wait_for_holder"), 5), "the reader thread is not waiting its turn"
    ours.send("while held")
    baton.leave(True)  # the holder leaves: the dozing reader is woken and reads
    assert theirs.receive(timeout=5) == "while held"


def test_two_gateways_over_in_memory_streams_talk_as_over_pipes():
    made = Pair(memory=True)
    try:
        made.start_reader(made.a)
        made.start_reader(made.b)
        ours, theirs = made.channel()
        for number in range(100):
            ours.send(("x", number))
        assert [theirs.receive(timeout=5) for _ in range(100)] == [("x", number) for number in range(100)]
        theirs.send(b"y" * 1_000_000)  # larger than the read buffer
        assert ours.receive(timeout=5) == b"y" * 1_000_000
        ours.close()
        with pytest.raises(EOFError):
            theirs.receive(timeout=5)
        tables = (made.a._protocol.channels, made.b._protocol.channels)
        assert wait_until(lambda: all(ours.id not in table for table in tables), 5)
    finally:
        made.close()


@pytest.mark.parametrize("python", FAR_PYTHONS)
def test_many_threads_receive_on_their_own_channels_while_another_thread_sends(group, python):
    gw = group.makegateway(far_python_or_skip(python))
    channels = [gw.remote_exec(ECHO) for _ in range(8)]
    count = 150
    received: dict[int, list[Any]] = {index: [] for index in range(len(channels))}

    def receiver(index: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                received[index].append(channels[index].receive(timeout=20))
        return run

    def sender() -> None:
        for number in range(count):
            for index, channel in enumerate(channels):
                channel.send((index, number, b"x" * (number % 7) * 100))

    workers = [Outcome(receiver(index)) for index in range(len(channels))] + [Outcome(sender)]
    for worker in workers:
        assert worker.done.wait(30), "a receiver or the sender is stuck"
        assert worker.error is None, repr(worker.error)
    for index, items in received.items():
        assert items == [(index, number, b"x" * (number % 7) * 100) for number in range(count)]


@pytest.mark.parametrize("python", FAR_PYTHONS)
def test_receive_with_short_timeouts_racing_delivery_loses_and_duplicates_nothing(group, python):
    gw = group.makegateway(far_python_or_skip(python))
    count = 300
    channel = gw.remote_exec("""
        import time
        for number in range(channel.receive()):
            channel.send(number)
            if number % 17 == 0:
                time.sleep(0.002)
    """)
    channel.send(count)
    got: list[int] = []
    timeouts = 0
    deadline = time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(channel.receive(timeout=0.0005 * (len(got) % 4)))
        except execwire.TimeoutError:
            timeouts += 1
    assert got == list(range(count))
    with pytest.raises(EOFError):
        channel.receive(timeout=10)
    assert timeouts > 0  # the race was really run: some receives timed out between items


def test_receive_timeouts_in_several_threads_while_others_stream_do_not_hang(gw):
    """Threads polling with receive(timeout) while another channel streams: every item arrives, no hang."""
    streamer = gw.remote_exec("""
        for number in range(channel.receive()):
            channel.send(number)
    """)
    quiet = [gw.remote_exec(ECHO) for _ in range(3)]
    stop = threading.Event()

    def poll(channel: Channel) -> Callable[[], int]:
        def run() -> int:
            answered = 0
            while not stop.is_set():
                try:
                    channel.receive(timeout=0.01)
                    answered += 1
                except execwire.TimeoutError:
                    channel.send("ping")
            return answered
        return run

    pollers = [Outcome(poll(channel)) for channel in quiet]
    count = 20000
    streamer.send(count)
    assert [streamer.receive(timeout=20) for _ in range(count)] == list(range(count))
    stop.set()
    for poller in pollers:
        assert poller.done.wait(10), "a thread polling with receive(timeout) is stuck"
        assert poller.error is None, repr(poller.error)
        assert poller.value > 0


@pytest.mark.parametrize("python", FAR_PYTHONS)
def test_a_waiting_receiver_gets_its_item_promptly_after_the_reading_thread_left(group, python):
    """Thread B reads (holding the baton) for a long while, gets its item and goes off to work; thread A
    was waiting meanwhile. A's item, sent after B left, must reach A at once, on both ends."""
    gw = group.makegateway(far_python_or_skip(python))
    far = gw.remote_exec("""
        import threading, time
        a, b = channel.receive(), channel.receive()
        def take_b():
            b.receive()       # blocks, reading, for a while
            time.sleep(3)     # then goes off to work, holding nothing
        threading.Thread(target=take_b).start()
        time.sleep(0.2)       # B is the one reading now
        channel.send("ready")
        item = a.receive()
        channel.send(("far got", item))
        b_near = channel.receive()
        b_near.send("for the near thread B")
        a_near = channel.receive()
        time.sleep(0.5)       # near thread B has left by now
        a_near.send("for the near thread A")
    """)
    a, b = gw.newchannel(), gw.newchannel()
    far.send(a)
    far.send(b)
    assert far.receive(timeout=10) == "ready"
    time.sleep(0.1)  # far thread B holds the baton longer than the reader thread's patience
    b.send("for the far thread B")
    time.sleep(0.1)  # far thread B got it and left; far thread A still waits
    started = time.monotonic()
    a.send("for the far thread A")
    assert far.receive(timeout=10) == ("far got", "for the far thread A")
    assert time.monotonic() - started < 0.5, "the far thread A waited for its item after the reader left"

    b_near, a_near = gw.newchannel(), gw.newchannel()
    waiting_b = Outcome(lambda: b_near.receive(timeout=10))
    waiting_a = Outcome(lambda: a_near.receive(timeout=10))
    far.send(b_near)
    assert waiting_b.done.wait(10) and waiting_b.value == "for the near thread B"
    far.send(a_near)
    sent_at = time.monotonic() + 0.5  # when the far side sends A's item
    assert waiting_a.done.wait(10) and waiting_a.value == "for the near thread A", repr(waiting_a.error)
    assert time.monotonic() - sent_at < 0.4, "the near thread A waited for its item after the reader left"


def test_close_from_another_thread_wakes_a_blocked_receive_with_eoferror(gw):
    channel = gw.remote_exec("channel.receive()")
    gw._rinfo()
    receiver = Outcome(channel.receive)
    assert wait_until(lambda: in_call(receiver.thread, "_wait_item"), 5)
    channel.close()
    assert receiver.done.wait(5), "receive() still blocked after another thread closed the channel"
    assert isinstance(receiver.error, EOFError), repr(receiver.error)


def test_exit_wakes_threads_blocked_in_receive_with_eoferror(group):
    """One of them reads for all (it holds the baton), the others wait on their queues: all wake."""
    gw = group.makegateway("popen")
    channels = [gw.remote_exec("channel.receive()") for _ in range(3)]
    pid = gw._rinfo().pid
    receivers = [Outcome(channel.receive) for channel in channels]
    for receiver in receivers:
        assert wait_until(lambda receiver=receiver: in_call(receiver.thread, "_wait_item"), 5)
    started = time.monotonic()
    gw.exit(timeout=2.0)
    for receiver in receivers:
        assert receiver.done.wait(5), "receive() still blocked after exit()"
        assert isinstance(receiver.error, EOFError), repr(receiver.error)
    assert time.monotonic() - started < 5
    assert wait_until(lambda: pid_gone(pid), 5)


@pytest.mark.parametrize("python", FAR_PYTHONS)
def test_flow_control_returns_all_credit_with_receive_timeouts_and_callbacks(group, python):
    """3 windows' worth of items each way: a credit leak would block the sender for good."""
    gw = group.makegateway(far_python_or_skip(python))
    item = b"y" * (256 * 1024)
    per_window = WINDOW // len(item)
    count = 3 * per_window
    sink = gw.remote_exec("""
        import time
        got = 0
        while got < %d:
            try:
                channel.receive(timeout=0.001)
                got += 1
            except channel.TimeoutError:
                pass
        channel.send(got)
    """ % count)
    sender = Outcome(lambda: [sink.send(item) for _ in range(count)])
    assert sender.done.wait(30), "sender blocked for good: credit was not returned"
    assert sink.receive(timeout=20) == count

    source = gw.remote_exec("""
        data = b"z" * (256 * 1024)
        for _ in range(channel.receive()):
            channel.send(data)
    """)
    seen: list[int] = []
    ended = threading.Event()
    source.setcallback(lambda got: ended.set() if got is None else seen.append(len(got)), endmarker=None)
    source.send(count)
    assert ended.wait(30), "the far sender blocked for good: the callback consumer did not return credit"
    assert seen == [len(item)] * count


@pytest.mark.parametrize("python", FAR_PYTHONS)
def test_order_is_kept_across_coalesced_small_and_direct_large_frames_from_several_threads(group, python):
    gw = group.makegateway(far_python_or_skip(python))
    channel = gw.remote_exec("""
        seen = []
        for item in iter(channel.receive, None):
            seen.append((item[0], item[1], len(item[2])))
        channel.send(seen)
    """)
    other = gw.remote_exec("for item in channel: pass")
    per_thread = 300

    def send(tag: int) -> Callable[[], None]:
        def run() -> None:
            for number in range(per_thread):
                size = 70000 if number % 25 == 0 else number % 50  # > 64 KiB skips the coalescing
                channel.send((tag, number, b"a" * size))
                other.send(b"noise")
        return run

    senders = [Outcome(send(tag)) for tag in range(3)]
    for sender in senders:
        assert sender.done.wait(30)
        assert sender.error is None, repr(sender.error)
    channel.send(None)
    seen = channel.receive(timeout=20)
    for tag in range(3):
        mine = [(number, size) for item_tag, number, size in seen if item_tag == tag]
        assert mine == [(number, 70000 if number % 25 == 0 else number % 50) for number in range(per_thread)]


@pytest.mark.parametrize("python", FAR_PYTHONS)
def test_burst_of_small_items_sent_just_before_the_far_code_ends_all_arrive(group, python):
    gw = group.makegateway(far_python_or_skip(python))
    channel = gw.remote_exec("""
        for number in range(5000):
            channel.send(number)
    """)
    assert [channel.receive(timeout=20) for _ in range(5000)] == list(range(5000))
    with pytest.raises(EOFError):
        channel.receive(timeout=10)


def test_items_queued_before_setcallback_and_after_all_reach_the_callback(gw):
    channel = gw.remote_exec("""
        for number in range(2000):
            channel.send(number)
    """)
    assert channel.receive(timeout=10) == 0
    got: list[Any] = []
    ended = threading.Event()
    channel.setcallback(lambda item: ended.set() if item == "end" else got.append(item), endmarker="end")
    assert ended.wait(20)
    assert got == list(range(1, 2000))


# == known problems ==============================================================================================
def test_setcallback_racing_a_delivery_loses_the_item(pair):
    paused = Pause(BaseGateway._dispatch, "items.put((event[2], event[3]))")
    pair.start_reader(pair.a)
    pair.start_reader(pair.b, paused.tracer)
    ours, theirs = pair.channel()
    ours.send("item")
    assert paused.reached.wait(5)  # the reader took the queue and is about to put the item in it
    got: list[Any] = []
    theirs.setcallback(got.append)
    paused.go.set()
    assert wait_until(lambda: got == ["item"], 2), "the item delivered during setcallback() never reached it"


def test_ctrl_c_during_a_blocked_receive_raises_keyboard_interrupt_and_keeps_the_gateway(gw):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    channel = gw.remote_exec(ECHO)
    channel.send(1)
    assert channel.receive(timeout=10) == 1
    main = threading.main_thread()

    def interrupt() -> None:
        if wait_until(lambda: in_call(main, "readinto") or in_call(main, "readable") or in_call(main, "wait"), 5):
            signal.pthread_kill(main.ident or 0, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    outcome: BaseException | None = None
    try:
        helper = threading.Thread(target=interrupt, daemon=True)
        helper.start()
        try:
            channel.receive(timeout=10)
        except BaseException as exc:  # noqa: B036 - KeyboardInterrupt is what we hope for
            outcome = exc
        helper.join(5)
    except KeyboardInterrupt as exc:  # arrived somewhere else: still contained here
        outcome = exc
    finally:
        signal.signal(signal.SIGINT, previous)
    assert isinstance(outcome, KeyboardInterrupt), f"receive() raised {outcome!r} instead of KeyboardInterrupt"
    channel.send(2)
    assert channel.receive(timeout=10) == 2, "the gateway did not survive the interrupt"


def test_receive_timeout_is_kept_while_other_channels_have_traffic(pair):
    pair.start_reader(pair.a)  # b gets no reader thread: the receiver reads for everyone
    quiet_ours, quiet = pair.channel()
    busy_ours, busy = pair.channel()
    busy.setcallback(lambda item: None)
    feeds = []

    def traffic_before_each_check(frame: FrameType, event: str, arg: object) -> None:
        """Before every wait for data, another channel's item arrives 20 ms later (for 0.6 s in all, more than 0.45)."""
        if len(feeds) < 30:
            time.sleep(0.02)
            busy_ours.send(len(feeds))
            feeds.append(pair.b._waiter.readable(5))

    hook = LineHook(BaseGateway._read_for, "waiter.wait(", traffic_before_each_check)
    started = time.monotonic()
    outcome = Outcome(lambda: quiet.receive(timeout=0.05), hook.tracer)
    assert outcome.done.wait(10)
    elapsed = time.monotonic() - started
    assert isinstance(outcome.error, execwire.TimeoutError), repr(outcome.error)
    assert elapsed < 0.45, f"receive(timeout=0.05) took {elapsed:.2f} s while another channel had traffic"


def test_slow_output_handler_does_not_stretch_receive_timeout(group):
    gw = group.makegateway("popen")
    gw.output_handler = lambda gateway, stream, data: time.sleep(0.002)
    quiet = gw.remote_exec("channel.receive()")
    printer = gw.remote_exec("""
        import sys, time
        channel.receive()
        end = time.time() + 0.5
        while time.time() < end:
            sys.stdout.write("x\\n")
            sys.stdout.flush()
            time.sleep(0.0002)
        channel.send("done")
    """)
    gw._rinfo()
    main = threading.current_thread()

    def start_printing() -> None:
        wait_until(lambda: in_call(main, "readable"), 5)  # the test thread reads for everyone
        printer.send("go")

    threading.Thread(target=start_printing, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(execwire.TimeoutError):
        quiet.receive(timeout=0.2)
    elapsed = time.monotonic() - started
    assert printer.receive(timeout=30) == "done"
    quiet.send(None)
    assert elapsed < 0.8, f"receive(timeout=0.2) took {elapsed:.2f} s because of a slow output handler"


def test_output_handler_that_raises_does_not_kill_the_gateway(gw):
    called = threading.Event()

    def broken(gateway: Gateway, stream: int, data: bytes) -> None:
        called.set()
        raise ValueError("bug in the output handler")

    gw.output_handler = broken
    channel = gw.remote_exec("import sys; print('hello'); sys.stdout.flush()\n" + ECHO)
    assert called.wait(10)
    try:
        channel.send(1)
        answer = channel.receive(timeout=10)
    except execwire.Error as exc:
        answer = exc
    assert answer == 1, f"the gateway died of the output handler's exception: {answer!r}"


def test_exit_is_bounded_when_the_far_side_stops_reading(group):
    gw = group.makegateway("popen")
    channel = gw.remote_exec("channel.receive()")
    pid = gw._rinfo().pid
    os.kill(pid, signal.SIGSTOP)
    try:
        def burst() -> None:
            for _ in range(600):  # more than the pipe holds (up to 256 KiB): the sender blocks in its write
                channel.send(b"x" * 1000)

        sending = Outcome(burst)
        assert not sending.done.wait(0.5), "600 kB went into a pipe whose reader is stopped"
        exiting = Outcome(lambda: gw.exit(timeout=0.5))
        returned = exiting.done.wait(4)
    finally:
        with contextlib.suppress(ProcessLookupError):  # exit() may have killed and reaped it already
            os.kill(pid, signal.SIGKILL)
    assert exiting.done.wait(10)
    assert returned, "exit(timeout=0.5) still blocked after 4 s"
    assert sending.done.wait(10), "the blocked sender never woke after exit()"
    assert isinstance(sending.error, execwire.GatewayLostError), repr(sending.error)


def test_gateway_whose_hello_was_read_by_a_receiver_is_not_declared_failed(group):
    paused = Pause(Gateway._wait_first_bytes)  # the reader thread, before it first polls
    threading.settrace(paused.tracer)
    try:
        gw = group._start_gateway("popen//timeout=1")  # without waiting (as the command starts them)
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    assert paused.reached.wait(5)
    channel = gw.remote_exec("channel.send(1)\n" + ECHO)
    assert channel.receive(timeout=10) == 1  # this thread read HELLO and the item itself
    assert gw.state == "up"
    paused.go.set()
    assert not wait_until(lambda: gw.state != "up", 3.0), f"the gateway went {gw.state!r} while it was up"
    try:
        channel.send(2)
        answer = channel.receive(timeout=5)
    except execwire.Error as exc:
        answer = exc
    assert answer == 2, f"the gateway died: {answer!r}"


def test_setcallback_after_the_gateway_ended_still_gets_items_and_endmarker(gw):
    first = gw.remote_exec("channel.send(1)")
    first.waitclose(10)
    seen: list[Any] = []
    before = set(threading.enumerate())
    first.setcallback(seen.append)  # schedules the queued item: starts the callback thread
    callback_threads = [thread for thread in threading.enumerate() if thread not in before]
    assert len(callback_threads) == 1
    late = gw.remote_exec("channel.send(2)")
    late.waitclose(10)
    assert wait_until(lambda: seen == [1], 5)
    gw.exit()
    callback_threads[0].join(5)  # it saw the end of the connection with nothing queued
    assert not callback_threads[0].is_alive()
    got: list[Any] = []
    late.setcallback(got.append, endmarker="end")
    assert wait_until(lambda: got == [2, "end"], 2), f"the late callback got {got!r}"


def test_send_racing_close_either_raises_or_delivers(pair):
    pair.start_reader(pair.a)
    pair.start_reader(pair.b)
    ours, theirs = pair.channel()
    paused = Pause(FrameWriter.write_frame, when=lambda frame: frame.f_locals["frame"][2] == frames.DATA)
    sending = Outcome(lambda: ours.send("item"), paused.tracer)
    assert paused.reached.wait(5)  # send() passed its closed check and is about to write
    closing = Outcome(ours.close)
    closing.done.wait(1)
    paused.go.set()
    assert sending.done.wait(5) and closing.done.wait(5)
    got: list[Any] = []
    try:
        while True:
            got.append(theirs.receive(timeout=5))
    except EOFError:
        pass
    assert sending.error is not None or got == ["item"], (
        f"send() returned normally but the peer received {got!r} before EOF")


def test_close_wakes_a_sender_blocked_on_flow_control_promptly(pair):
    pair.start_reader(pair.a)
    pair.start_reader(pair.b)
    ours, _theirs = pair.channel()  # nobody receives: no credit comes back
    chunk = b"c" * (1 << 20)
    paused = Pause(Channel._wait_for_credit, "self._credit_waiters.wait(")

    def flood() -> None:
        while True:
            ours.send(chunk)

    sender = Outcome(flood, paused.tracer)
    assert paused.reached.wait(10)  # out of credit, about to wait (holding the channel's lock)
    closing = Outcome(ours.close)  # blocks on that lock until the sender waits
    started = time.monotonic()
    paused.go.set()
    assert closing.done.wait(5) and sender.done.wait(5)
    elapsed = time.monotonic() - started
    assert isinstance(sender.error, execwire.ChannelClosedError), repr(sender.error)
    assert elapsed < 0.5, f"the blocked sender noticed the close after {elapsed:.2f} s"


@pytest.fixture
def socket_server(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    from test_server import make_token_file, module_server_argv, start_server

    token_file = make_token_file(tmp_path)
    running = start_server(module_server_argv(token_file), tmp_path / "server.log")
    try:
        yield running, token_file
    finally:
        running.stop()


def test_exit_wakes_a_receiver_even_when_a_socket_gateways_far_side_hangs(group, socket_server):
    running, token_file = socket_server
    gw = group.makegateway(f"socket={running.spec_address}//token_file={token_file}")
    channel = gw.remote_exec("channel.receive()")
    pid = gw._rinfo().pid
    receiver = Outcome(channel.receive)
    assert wait_until(lambda: in_call(receiver.thread, "_wait_item"), 5)
    os.kill(pid, signal.SIGSTOP)
    try:
        gw.exit(timeout=0.5)
        woke = receiver.done.wait(3)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert receiver.done.wait(10)
    assert woke, "receive() still blocked 3 s after exit() returned"


# == the queue used where _queue.SimpleQueue is missing (Python 3.6, PyPy) ==========================================
def test_deque_queue_keeps_order_and_times_out():
    from execwire._far.sync import DequeQueue, Empty

    items = DequeQueue()
    assert items.empty() and items.qsize() == 0
    for number in range(5):
        items.put(number)
    assert not items.empty() and items.qsize() == 5
    assert [items.get(False) for _ in range(5)] == list(range(5))
    with pytest.raises(Empty):
        items.get(False)
    started = time.monotonic()
    with pytest.raises(Empty):
        items.get(True, 0.05)
    assert 0.04 <= time.monotonic() - started < 2
    items.put("late")
    assert items.get(True, 0.05) == "late"  # a timed-out getter left nothing behind that eats items


def test_deque_queue_between_many_threads_loses_and_duplicates_nothing():
    from execwire._far.sync import DequeQueue, Empty

    items = DequeQueue()
    producers, consumers, each = 4, 4, 2000
    got: list[list[int]] = [[] for _ in range(consumers)]

    def consume(index: int) -> Callable[[], None]:
        def run() -> None:
            while True:
                try:
                    item = items.get(True, 0.0005 * (index % 3)) if index % 2 else items.get()
                except Empty:
                    continue  # short timeouts racing the producers
                if item is None:
                    return
                got[index].append(item)
        return run

    readers = [Outcome(consume(index)) for index in range(consumers)]
    writers = [Outcome(lambda base=base: [items.put(base * each + n) for n in range(each)])
               for base in range(producers)]
    for writer in writers:
        assert writer.done.wait(20) and writer.error is None, repr(writer.error)
    for _ in range(consumers):
        items.put(None)
    for reader in readers:
        assert reader.done.wait(20), "a getter is stuck"
        assert reader.error is None, repr(reader.error)
    assert sorted(item for taken in got for item in taken) == list(range(producers * each))
