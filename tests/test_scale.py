"""Scale and memory targets of issue 5, with real processes.

200 popen gateways in one group; 1000 channels on one gateway; 100k messages to a receiver that is not
receiving (flow control must hold the sender back instead of buffering without limit); a slow callback;
and the RSS of an idle far side against a bare interpreter. Every count and wait is bounded, memory is
read from /proc, and the fixtures of conftest.py end every process a failing test leaves behind.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import pid_gone, wait_until

import execwire
from execwire._far.channel import MIN_COST, WINDOW

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024
# How much a process may grow while 100k items of 2 KiB (200 MB in all) are in flight. While the sender is
# held back: a few credit windows (WINDOW is 16 MiB; measured here: at most 28 MB). At full speed the far
# side also keeps up to a window of coalesced frames in its write batch, and malloc does not hand that
# churn back at once (measured here: 40-59 MB), so that phase gets a wider bound, still below 200 MB.
GROWTH_LIMIT = 64 * MB
FULL_SPEED_LIMIT = 128 * MB
FAR_PROGRESS = "import sys\nchannel.send(getattr(sys, '_execwire_scale_progress', 0))"


# -- reading /proc ---------------------------------------------------------------------------------------------
def status_field(pid: int | str, key: str) -> int:
    """The number on the ``key:`` line of /proc/PID/status (kB for memory lines)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} line in /proc/{pid}/status")


def rss(pid: int | str) -> int:
    """Resident set size of ``pid`` in bytes."""
    return status_field(pid, "VmRSS") * 1024


def settled_rss(pid: int, timeout: float = 5.0) -> int:
    """The RSS of ``pid`` once three readings in a row agree (start-up has finished)."""
    readings = [rss(pid)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (len(readings) >= 3 and len(set(readings[-3:])) == 1):
        time.sleep(0.05)
        readings.append(rss(pid))
    return readings[-1]


class MemoryWatch:
    """How far one process's RSS rose above its level when the watch began.

    The peak is the kernel's high-water mark (VmHWM, reset by writing 5 to /proc/PID/clear_refs), so a
    spike between two readings is not missed; where that reset is refused, the largest sample counts.
    """

    def __init__(self, pid: int | str, name: str) -> None:
        self.pid = pid
        self.name = name
        self.baseline = rss(pid)
        self.peak = self.baseline
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self.kernel_peak = True
        except OSError:
            self.kernel_peak = False

    def sample(self) -> None:
        self.peak = max(self.peak, rss(self.pid))
        if self.kernel_peak:
            self.peak = max(self.peak, status_field(self.pid, "VmHWM") * 1024)

    def check(self, while_what: str, limit: int = GROWTH_LIMIT) -> None:
        self.sample()
        growth = self.peak - self.baseline
        assert growth < limit, (
            f"{self.name} RSS grew by {growth / MB:.1f} MB (from {self.baseline / MB:.1f} MB) {while_what}; "
            f"limit {limit / MB:.0f} MB: something buffers items beyond the credit window")


def wait_for_plateau(read: Callable[[], int], on_poll: Callable[[], None], quiet: float = 0.5,
                     timeout: float = 30.0) -> int:
    """Poll ``read()`` until its value has stayed the same for ``quiet`` seconds; return that value."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while True:
        on_poll()
        time.sleep(0.02)
        value, now = read(), time.monotonic()
        if value != last:
            last, since = value, now
        elif now - since >= quiet:
            return value
        if now > deadline:
            raise AssertionError(f"progress still changing after {timeout} s (last value {value})")


def far_progress(gateway: execwire.Gateway) -> int:
    """How many items far_send_items has sent so far (asked through a channel of its own)."""
    count: int = gateway.remote_exec(FAR_PROGRESS).receive(timeout=10)
    return count


def window_items(size: int) -> int:
    """At most how many items of ``size`` payload bytes fit into one credit window."""
    return WINDOW // (size + MIN_COST)


# -- shipped to the far side -----------------------------------------------------------------------------------
def far_send_items(channel, count, size):  # type: ignore[no-untyped-def]
    """Send (number, blob) items as fast as possible, recording progress where FAR_PROGRESS reads it."""
    import sys

    blob = b"x" * size
    for number in range(count):
        channel.send((number, blob))
        sys._execwire_scale_progress = number + 1


def far_receive_items(channel, count, size):  # type: ignore[no-untyped-def]
    """Wait for "go" on a second channel, then receive ``count`` items and say how many came in order."""
    go = channel.receive()
    go.receive()
    in_order = 0
    for number in range(count):
        got, blob = channel.receive()
        if got == number and len(blob) == size:
            in_order += 1
    channel.send(in_order)


def far_make_channels(channel, count):  # type: ignore[no-untyped-def]
    """Make ``count`` channels, send them in one message, talk on each, close each."""
    made = [channel.gateway.newchannel() for _ in range(count)]
    channel.send(made)
    for number, each in enumerate(made):
        each.send(number)
    total = 0
    for each in made:
        total += each.receive()
        each.close()
    channel.send(total)


# -- 200 gateways ----------------------------------------------------------------------------------------------
@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """Raise the soft limit on open files for the duration of a test that holds hundreds of pipes.

    Each popen gateway keeps two pipe ends open here (and a start briefly needs a few more); the common
    default of 1024 would leave little room for 200 gateways plus pytest, so it goes up to 4096 where the
    hard limit allows, and back afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    raised = soft != resource.RLIM_INFINITY and soft < wanted
    if raised:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        if raised:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_200_popen_gateways_start_answer_and_terminate_without_leftovers(group, enough_file_descriptors):
    count = 200
    started = time.monotonic()
    gateways = [group.makegateway() for _ in range(count)]
    channels = [gateway.remote_exec("import os; channel.send(os.getpid())") for gateway in gateways]
    deadline = time.monotonic() + 120
    answers = [channel.receive(timeout=max(deadline - time.monotonic(), 0.1)) for channel in channels]
    answered = time.monotonic()
    launched = [gateway._process.pid for gateway in gateways if gateway._process is not None]
    assert answers == launched, "each gateway must answer from its own far process"
    assert len(set(answers)) == count
    assert len(group) == count and len({gateway.id for gateway in group}) == count
    assert not [pid for pid in answers if pid_gone(pid)], "far processes died before terminate"

    group.terminate(timeout=10)
    terminated = time.monotonic()
    assert len(group) == 0
    wait_until(lambda: all(map(pid_gone, answers)), 10)
    leftover = [pid for pid in answers if not pid_gone(pid)]
    assert not leftover, f"{len(leftover)} far processes still running after terminate: {leftover[:10]}"
    assert terminated - answered < 15, f"terminate(timeout=10) of {count} gateways took {terminated - answered:.1f} s"
    print(f"\n{count} gateways: started and answered in {answered - started:.1f} s, "
          f"terminated in {terminated - answered:.2f} s")


# -- 1000 channels ---------------------------------------------------------------------------------------------
def test_1000_remote_execs_wait_at_once_then_each_gets_an_item_and_ends(gw):
    count = 1000
    channels = [gw.remote_exec("channel.send(channel.receive() * 2)") for _ in range(count)]
    executing = [0]

    def all_executing() -> bool:
        executing[0] = gw.remote_status().numexecuting
        return executing[0] >= count

    assert wait_until(all_executing, 60, interval=0.05), (
        f"only {executing[0]} of {count} remote_execs run at once on the far side")
    far_pid = gw._rinfo().pid
    assert status_field(far_pid, "Threads") > count, "each waiting remote_exec should hold a far thread"

    for number, channel in enumerate(channels):
        channel.send(number)
    answers = [channel.receive(timeout=30) for channel in channels]
    assert answers == [2 * number for number in range(count)]
    for channel in channels:
        channel.waitclose(timeout=30)
    assert wait_until(lambda: gw.remote_status().numchannels == 0, 10), gw.remote_status()
    assert gw.remote_status().numexecuting == 0
    # finished workers do not stay around by the thousand
    assert wait_until(lambda: status_field(far_pid, "Threads") < 100, 20), status_field(far_pid, "Threads")


def test_1000_channels_made_on_the_far_side_travel_in_one_message(gw):
    count = 1000
    channel = gw.remote_exec(far_make_channels, count=count)
    made = channel.receive(timeout=30)
    assert len(made) == count
    assert all(isinstance(each, execwire.Channel) for each in made)
    assert len({each.id for each in made}) == count
    assert [each.receive(timeout=30) for each in made] == list(range(count))
    for each in made:
        each.send(-2)
    assert channel.receive(timeout=30) == -2 * count
    for each in made:
        each.waitclose(timeout=30)
    channel.waitclose(timeout=30)
    assert wait_until(lambda: gw.remote_status().numchannels == 0, 10), gw.remote_status()


# -- 100k messages in flight -----------------------------------------------------------------------------------
def test_100k_items_to_a_near_side_that_does_not_receive_hold_the_sender_back(gw):
    count, size = 100_000, 2048
    gw.wait_ready(30)
    far = MemoryWatch(gw._rinfo().pid, "far side")
    near = MemoryWatch("self", "near side")
    channel = gw.remote_exec(far_send_items, count=count, size=size)

    def sample() -> None:
        far.sample()
        near.sample()

    held = wait_for_plateau(lambda: far_progress(gw), sample)
    assert held < count, f"the far side sent all {count} items while nobody received: no back-pressure"
    assert held <= window_items(size) + 1, (
        f"the far sender got {held} items of {size} bytes ahead; the credit window allows {window_items(size)}")
    far.check(f"while its sender was held back after {held} items")
    near.check(f"while holding {held} unreceived items")

    started = time.monotonic()
    for number in range(count):
        got, blob = channel.receive(timeout=30)
        if got != number or len(blob) != size:
            pytest.fail(f"item {number} arrived as ({got!r}, {len(blob)} bytes)")
    channel.waitclose(timeout=30)
    elapsed = time.monotonic() - started
    far.check(f"while sending {count} items", FULL_SPEED_LIMIT)
    near.check(f"while receiving {count} items", FULL_SPEED_LIMIT)
    print(f"\nheld back after {held} items; {count} items received in {elapsed:.2f} s; peak growth "
          f"far {(far.peak - far.baseline) / MB:.1f} MB, near {(near.peak - near.baseline) / MB:.1f} MB")


def test_100k_items_to_a_far_side_that_does_not_receive_block_near_send(gw):
    count, size = 100_000, 2048
    gw.wait_ready(30)
    far = MemoryWatch(gw._rinfo().pid, "far side")
    near = MemoryWatch("self", "near side")
    channel = gw.remote_exec(far_receive_items, count=count, size=size)
    go = gw.newchannel()
    channel.send(go)
    sent = [0]
    errors: list[BaseException] = []

    def send_all() -> None:
        blob = b"y" * size
        try:
            for number in range(count):
                channel.send((number, blob))
                sent[0] = number + 1
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    sender = threading.Thread(target=send_all, name="scale-sender", daemon=True)
    sender.start()

    def sample() -> None:
        far.sample()
        near.sample()

    held = wait_for_plateau(lambda: sent[0], sample)
    assert not errors, errors
    assert held < count and sender.is_alive(), f"near send() returned for all {count} items: no back-pressure"
    assert held <= window_items(size) + 1, (
        f"near send() let {held} items of {size} bytes go ahead; the credit window allows {window_items(size)}")
    far.check(f"while holding {held} unreceived items")
    near.check(f"while its send() was blocked after {held} items")

    started = time.monotonic()
    go.send("go")
    sender.join(timeout=60)
    assert not sender.is_alive(), f"near send() still blocked after the far side received ({sent[0]} sent)"
    assert not errors, errors
    assert channel.receive(timeout=60) == count, "the far side did not get every item in order"
    channel.waitclose(timeout=30)
    elapsed = time.monotonic() - started
    far.check(f"while receiving {count} items", FULL_SPEED_LIMIT)
    near.check(f"while sending {count} items", FULL_SPEED_LIMIT)
    print(f"\nsend() blocked after {held} items; unblocked, all {count} received in {elapsed:.2f} s")


def test_slow_callback_holds_the_sender_back_and_other_channels_keep_working(gw):
    count, size, pause = 1500, 64 * 1024, 0.001  # 96 MiB in all: far more than one window
    end = "END"
    gate = threading.Event()  # the callback first waits here: as slow as it gets
    finished = threading.Event()
    handled: list[int] = []
    damaged: list[int] = []

    def slow(item: object) -> None:
        if item == end:
            finished.set()
            return
        gate.wait(60)
        number, blob = item  # type: ignore[misc]
        handled.append(number)
        if len(blob) != size:
            damaged.append(number)
        time.sleep(pause)

    gw.wait_ready(30)
    near = MemoryWatch("self", "near side")
    channel = gw.remote_exec(far_send_items, count=count, size=size)
    channel.setcallback(slow, endmarker=end)
    try:
        held = wait_for_plateau(lambda: far_progress(gw), near.sample)
        assert held < count, f"the far side sent all {count} items while the callback was stuck"
        assert held <= window_items(size) + 1, (
            f"the far sender got {held} items ahead of a stuck callback; the window allows {window_items(size)}")
        # the stuck callback stalls neither the reader nor other channels of the same gateway
        echo = gw.remote_exec("for item in channel:\n    channel.send(item * 2)")
        for number in range(200):
            echo.send(number)
            assert echo.receive(timeout=10) == 2 * number
        echo.close()
        assert handled == []
        near.check(f"while a stuck callback held back {held} items")

        gate.set()
        ahead = []
        deadline = time.monotonic() + 60
        while not finished.is_set() and time.monotonic() < deadline:
            far_sent = far_progress(gw)  # read before the count handled: never overstates the lead
            ahead.append(far_sent - len(handled))
            near.sample()
            time.sleep(0.01)
        assert finished.wait(max(deadline - time.monotonic(), 0.1)), f"callback got {len(handled)} of {count}"
    finally:
        gate.set()
    assert handled == list(range(count)), "items reached the callback out of order or not at all"
    assert not damaged
    assert ahead and max(ahead) <= window_items(size) + 1, (
        f"the far sender ran up to {max(ahead)} items ahead of a slow callback; the window allows "
        f"{window_items(size)}")
    near.check(f"while a slow callback took {count} items of {size} bytes")
    channel.waitclose(timeout=10)
    print(f"\nstuck callback held the sender after {held} items; slow callback: sender at most {max(ahead)} "
          f"items ahead; near peak growth {(near.peak - near.baseline) / MB:.1f} MB")


# -- memory of an idle far side --------------------------------------------------------------------------------
def test_idle_far_side_costs_at_most_1_3_times_a_bare_interpreter(gw):
    # the bare interpreter prints one line (through the sys.stdout it already has: no import) so that
    # we know it has reached its sleep
    with subprocess.Popen([sys.executable, "-c", "import time; print('sleeping', flush=True); time.sleep(30)"],
                          stdout=subprocess.PIPE) as bare:
        try:
            assert bare.stdout is not None and bare.stdout.readline() == b"sleeping\n"
            bare_rss = settled_rss(bare.pid)
        finally:
            bare.kill()
    gw.wait_ready(30)
    far_rss = settled_rss(gw._rinfo().pid)
    ratio = far_rss / bare_rss
    print(f"\nidle far side {far_rss / MB:.1f} MB, bare interpreter {bare_rss / MB:.1f} MB: {ratio:.2f}x")
    if ratio > 1.3:
        listing = "import sys; channel.send(sorted(sys.modules))"
        far_modules = set(gw.remote_exec(listing).receive(timeout=10))
        bare_modules = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sorted(sys.modules)))"],
                                      capture_output=True, text=True, timeout=30, check=True).stdout.split()
        extra = sorted(far_modules - set(bare_modules))
        pytest.fail(f"idle far side {far_rss / MB:.1f} MB is {ratio:.2f}x a bare interpreter "
                    f"({bare_rss / MB:.1f} MB); limit 1.3x; modules only the far side has: {extra}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid: int) -> int:
    """How often the threads of process ``pid`` have gone to sleep and been woken, so far."""
    return sum(status_field(f"{pid}/task/{task}", "voluntary_ctxt_switches")
               for task in os.listdir(f"/proc/{pid}/task"))


def test_an_idle_gateway_costs_no_cpu_after_busy_round_trips(group: execwire.Group) -> None:
    """Receivers poll briefly for fast answers; once answers stop coming, nobody may keep polling."""
    gw = group.makegateway("popen")
    far_pid = gw.remote_exec("import os; channel.send(os.getpid())").receive(timeout=10)
    echo = gw.remote_exec("for item in channel:\n    channel.send(item)\n")
    for i in range(2000):  # fast answers: both ends poll for them
        echo.send(i)
        assert echo.receive(timeout=10) == i
    def wait_in_vain() -> None:
        with pytest.raises(execwire.TimeoutError):
            echo.receive(timeout=1.5)

    waiting = threading.Thread(target=wait_in_vain, daemon=True)
    waiting.start()  # a receiver left waiting for an answer that does not come
    time.sleep(0.1)  # let the threads settle into waiting
    far_before, near_before = cpu_seconds(far_pid), cpu_seconds(os.getpid())
    far_woken, near_woken = wakeups(far_pid), wakeups(os.getpid())
    time.sleep(1.0)  # the idle period being measured, not a synchronisation
    far_used, near_used = cpu_seconds(far_pid) - far_before, cpu_seconds(os.getpid()) - near_before
    far_woken, near_woken = wakeups(far_pid) - far_woken, wakeups(os.getpid()) - near_woken
    assert far_used < 0.1, f"the idle far side used {far_used:.2f} s of CPU in 1 s"
    assert near_used < 0.1, f"this side used {near_used:.2f} s of CPU in 1 s while idle"
    # a thread that looks for work every few milliseconds would show here, long before it shows as CPU
    assert far_woken < 50, f"the idle far side's threads woke up {far_woken} times in 1 s"
    assert near_woken < 50, f"this side's threads woke up {near_woken} times in 1 s while idle"
    waiting.join(5)
    echo.close()
