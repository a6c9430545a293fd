"""The core's promises, tried the way users break them: a sender that dies, Ctrl-C, a peer that lies.

- every item whose send() returned reaches the other side, even if the sender dies right after;
- Ctrl-C interrupts receive(), waitclose() or send() and nothing else: no frame half read or written;
- a peer that claims a huge frame, floods output or sends illegal frames costs bounded memory and ends
  only its own gateway, with an error that names what it did;
- a callback that raises closes its channel with the error on both sides; none can stop the others;
- after the peer died, every call says GatewayLostError.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from conftest import wait_until

import execwire
from execwire._far import frames

pytest_plugins = ["sshd"]

pytestmark = pytest.mark.timeout(90)
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError("no VmRSS")


# -- delivery when the sender dies ---------------------------------------------------------------------------
DEATHS = {
    "os._exit": "os._exit(3)",
    "SIGKILL": "os.kill(os.getpid(), signal.SIGKILL)",
    "segfault": "import ctypes; ctypes.string_at(0)",
}


@pytest.mark.parametrize("death", sorted(DEATHS))
@pytest.mark.parametrize("route", ["popen", "via"])
def test_items_sent_before_the_far_side_dies_all_arrive(group, death, route):
    if route == "via":
        group.makegateway("popen//id=middle")
        gw = group.makegateway("popen//via=middle")
    else:
        gw = group.makegateway("popen")
    channel = gw.remote_exec(f"""
        import os, signal
        for number in range(50):
            channel.send(("item", number, "x" * (number * 37 % 500)))
        {DEATHS[death]}
    """)
    got = []
    with pytest.raises(execwire.GatewayLostError):
        while True:
            got.append(channel.receive(timeout=30))
    assert got == [("item", number, "x" * (number * 37 % 500)) for number in range(50)]


def test_items_sent_before_the_controller_dies_all_reach_the_far_side(tmp_path):
    """A controller that sends 2000 small items and then calls os._exit: the far side gets every one."""
    out = tmp_path / "received.txt"
    script = textwrap.dedent(f"""
        import os, execwire
        gw = execwire.makegateway("popen")
        channel = gw.remote_exec('''
            with open({str(out)!r}, "w") as out:
                for item in channel:
                    out.write("%d\\\\n" % item)
                    out.flush()
        ''')
        for number in range(2000):
            channel.send(number)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env={**os.environ, "PYTHONPATH": SRC})
    assert wait_until(lambda: out.exists() and out.read_text().count("\n") == 2000, 20), (
        f"the far side got {out.read_text().count(chr(10)) if out.exists() else 0} of 2000 items")
    assert out.read_text().split() == [str(number) for number in range(2000)]


def test_ssh_items_sent_before_the_far_side_dies_all_arrive(group, sshd):
    gw = group.makegateway(sshd.spec())
    channel = gw.remote_exec("""
        import os
        for number in range(50):
            channel.send(number)
        os._exit(0)
    """)
    got = []
    with pytest.raises(execwire.GatewayLostError):
        while True:
            got.append(channel.receive(timeout=30))
    assert got == list(range(50))


# -- Ctrl-C ------------------------------------------------------------------------------------------------
INTERRUPTED = """
import random, signal, sys, threading, time
import execwire

what = sys.argv[1]
wanted = int(sys.argv[2])
gw = execwire.makegateway("popen")
main = threading.main_thread()
stop = threading.Event()
caught = threading.Event()
begin = threading.Event()

def interrupter():
    # one interrupt at a time: the next comes only once the main thread caught the last one, so none
    # lands in the test's own bookkeeping (which no library could protect); exactly ``wanted`` of them,
    # so none comes after the loop either (one that never surfaced as KeyboardInterrupt fails the test)
    rng = random.Random(7)
    begin.wait()  # not before the main thread is in its loop (it may still be in Thread.start())
    for _ in range(wanted):
        if stop.is_set():
            break
        time.sleep(rng.uniform(0.0005, 0.004))
        caught.clear()
        signal.pthread_kill(main.ident, signal.SIGINT)
        while not caught.wait(0.5) and not stop.is_set():
            pass

interrupts = 0
BLOB = b"x" * 200_000
if what == "receive":
    channel = gw.remote_exec('''
        number = 0
        while True:
            channel.send((number, b"x" * 200_000))
            number += 1
    ''')
else:
    # a send() that Ctrl-C interrupted while its item was being written has sent it: the item may come twice
    channel = gw.remote_exec('''
        last = -1
        for item in channel:
            if item is None:
                break
            number, blob = item
            if number not in (last, last + 1) or blob != b"x" * 200_000:
                channel.send(("wrong", number, last, len(blob)))
                break
            last = number
        channel.send(("got", last))
    ''')
threading.Thread(target=interrupter, daemon=True).start()
deadline = time.monotonic() + 40
got = []
expected = 0
begin.set()
while interrupts < wanted and time.monotonic() < deadline:
    try:
        if what == "receive":
            got.append(channel.receive())  # the append stores it before Ctrl-C can strike again
        else:
            channel.send((expected, BLOB))
            expected += 1
    except KeyboardInterrupt:
        interrupts += 1
        caught.set()
stop.set()
if what == "send":
    channel.send(None)
    verdict = channel.receive(timeout=30)
    assert verdict in (("got", expected - 1), ("got", expected)), (verdict, expected)
else:
    numbers = [number for number, _ in got]
    wrong = [(i, n) for i, n in enumerate(numbers) if n != i]
    assert not wrong, ("items lost or repeated", wrong[:5], numbers[wrong[0][0] - 3:wrong[0][0] + 3])
    assert all(blob == BLOB for _, blob in got), "an item was corrupted"
    expected = len(got)
    check = gw.remote_exec("channel.send(channel.receive() * 2)")
    check.send(21)
    assert check.receive(timeout=30) == 42
print("interrupts", interrupts, "items", expected)
gw.exit()
"""


@pytest.mark.parametrize("what", ["receive", "send"])
def test_ctrl_c_while_200kb_items_stream_loses_and_corrupts_nothing(what):
    result = subprocess.run([sys.executable, "-c", INTERRUPTED, what, "300"], capture_output=True, text=True,
                            timeout=80, env={**os.environ, "PYTHONPATH": SRC})
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    assert int(words[1]) >= 300 and int(words[3]) > 0, result.stdout


def test_ctrl_c_in_waitclose_leaves_the_channel_and_gateway_usable(gw):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    channel = gw.remote_exec("channel.receive(); channel.send('bye')")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            channel.waitclose(timeout=20)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    channel.send("go")
    assert channel.receive(timeout=10) == "bye"
    channel.waitclose(10)


# -- a peer that lies ----------------------------------------------------------------------------------------
LIAR = """
import os, struct
fd = channel.gateway._stream.write_fd
os.write(fd, struct.pack("!2sBII", {magic!r}, {msgtype}, {channel_id}, {length}) + {payload!r})
{after}
"""


def liar(msgtype: int, channel_id: int, payload: bytes, length: int | None = None, after: str = "") -> str:
    return LIAR.format(magic=frames.MAGIC, msgtype=msgtype, channel_id=channel_id,
                       length=len(payload) if length is None else length, payload=payload, after=after)


def test_a_header_claiming_a_gib_does_not_make_the_controller_allocate_it(group):
    gw = group.makegateway("popen")
    bystander = group.makegateway("popen")
    before = rss_kb()
    channel = gw.remote_exec(liar(frames.DATA, 1, b"N" * 100, frames.MAX_PAYLOAD,
                                  "import time; time.sleep(1); os._exit(0)"))
    with pytest.raises(execwire.GatewayLostError, match="ended after 100 of 1073741824 payload bytes"):
        channel.receive(timeout=30)
    grown_mb = (rss_kb() - before) / 1024
    assert grown_mb < 100, f"the controller grew by {grown_mb:.0f} MB for a 111-byte lie"
    assert bystander.remote_exec("channel.send(1)").receive(timeout=30) == 1  # other gateways untouched


@pytest.mark.parametrize(("msgtype", "payload", "words"), [
    (frames.CLOSE_ERROR, b"b\x05", "CLOSE_ERROR for channel 1 whose payload is int"),
    (frames.CREDIT, b"\x01", "CREDIT frame of 1 bytes"),
    (frames.HELLO, b"N", "HELLO"),
])
def test_illegal_frames_end_only_their_gateway_with_an_error_naming_them(group, msgtype, payload, words):
    gw = group.makegateway("popen")
    bystander = group.makegateway("popen")
    channel = gw.remote_exec(liar(msgtype, 1, payload, after="channel.receive()"))
    with pytest.raises(execwire.GatewayLostError, match=words) as caught:
        channel.receive(timeout=30)
    assert isinstance(caught.value.__cause__, execwire.ProtocolError)
    assert bystander.remote_exec("channel.send(1)").receive(timeout=30) == 1


def test_data_after_last_is_refused_not_delivered(group):
    gw = group.makegateway("popen")
    channel = gw.remote_exec(liar(frames.LAST, 1, b"", after=textwrap.dedent("""
        channel.send("late")
        channel.receive()
    """)))
    with pytest.raises(EOFError):
        channel.receive(timeout=30)  # the far side said LAST: nothing more comes on this channel
    with pytest.raises(execwire.GatewayLostError, match="DATA for channel 1 in state") as caught:
        assert wait_until(lambda: gw.state == "closed", 30)
        gw.remote_exec("pass")
    assert "LAST received" in str(caught.value)


def test_far_output_is_held_back_by_a_slow_output_handler(group):
    gw = group.makegateway("popen")
    handled: list[int] = []
    sizes: list[int] = []

    def slow(gateway: Any, stream: int, data: bytes) -> None:
        handled.append(len(data))
        sizes.append(rss_kb())
        time.sleep(0.002)

    gw.output_handler = slow
    before = rss_kb()
    gw.remote_exec("""
        import sys
        line = "y" * 1023 + "\\n"
        for _ in range(60 * 1024):  # 60 MB
            sys.stdout.write(line)
        sys.stdout.flush()
    """).waitclose(60)
    assert wait_until(lambda: sum(handled) >= 60 * 1024 * 1024, 60)
    grown_mb = (max(sizes) - before) / 1024
    assert grown_mb < 30, f"the controller held {grown_mb:.0f} MB of far output at once"


# -- callbacks -----------------------------------------------------------------------------------------------
def test_a_callback_that_raises_closes_its_channel_on_both_sides(gw, caplog):
    far = gw.remote_exec("""
        sub = channel.gateway.newchannel()
        channel.send(sub)
        sub.send(1)
        try:
            sub.receive()
        except Exception as exc:
            channel.send((type(exc).__name__, "ValueError: bad item 1" in str(exc)))
    """)
    sub = far.receive(timeout=10)

    def broken(item: Any) -> None:
        raise ValueError(f"bad item {item}")

    with caplog.at_level("ERROR", logger="execwire"):
        sub.setcallback(broken)
        with pytest.raises(execwire.CallbackError, match="ValueError: bad item 1"):
            sub.waitclose(10)
    assert far.receive(timeout=10) == ("RemoteError", True)
    assert any("bad item 1" in record.getMessage() for record in caplog.records)


def test_a_callback_that_calls_sys_exit_does_not_stop_later_callbacks_or_output(gw):
    first = gw.remote_exec("channel.send(1)")

    def leave(item: Any) -> None:
        sys.exit(5)

    first.setcallback(leave)
    with pytest.raises(execwire.CallbackError, match="SystemExit"):
        first.waitclose(10)
    got: list[Any] = []
    printed: list[bytes] = []
    gw.output_handler = lambda gateway, stream, data: printed.append(data)
    second = gw.remote_exec("print('still here', flush=True); channel.send(2)")
    second.setcallback(got.append)
    second.waitclose(10)
    assert wait_until(lambda: got == [2] and b"still here\n" in b"".join(printed), 10), (got, printed)


# -- the peer's death reads as GatewayLostError ------------------------------------------------------------
def test_after_the_far_process_died_every_call_says_gateway_lost(group):
    gw = group.makegateway("popen")
    channel = gw.remote_exec("channel.receive()")
    blocked_channel = gw.remote_exec("import time; channel.receive(); time.sleep(60)")
    pid = gw._rinfo().pid
    blocked = threading.Thread(target=lambda: _send_until_error(blocked_channel, errors), daemon=True)
    errors: list[BaseException] = []
    blocked.start()
    assert wait_until(lambda: blocked_channel._credit_waiters is not None, 20), "the sender never blocked"
    os.kill(pid, signal.SIGKILL)
    blocked.join(20)
    assert errors and isinstance(errors[0], execwire.GatewayLostError), errors
    calls = {"send": lambda: channel.send(1), "receive": channel.receive, "waitclose": channel.waitclose,
             "remote_exec": lambda: gw.remote_exec("pass")}
    for name, call in calls.items():
        with pytest.raises(execwire.GatewayLostError):
            call()
            raise AssertionError(f"{name} did not raise")


def _send_until_error(channel: execwire.Channel, errors: list[BaseException]) -> None:
    try:
        while True:
            channel.send(b"z" * 1_000_000)  # nobody receives: flow control blocks it after 8 MB
    except BaseException as exc:  # noqa: B036 - the test looks at what it was
        errors.append(exc)


def test_channel_references_beyond_the_gateways_bound_end_it_with_an_error_naming_the_bound(group):
    gw = group.makegateway("popen//max_channels=100")
    ok = gw.remote_exec("channel.send([channel.gateway.newchannel() for _ in range(50)])").receive(timeout=30)
    assert len(ok) == 50
    flood = gw.remote_exec("""
        channel.gateway._protocol.max_channels = 10 ** 6  # a far side that ignores the bound
        channel.send([channel.gateway.newchannel() for _ in range(200)])
    """)
    with pytest.raises(execwire.GatewayLostError, match="more than 100 channels"):
        flood.receive(timeout=30)


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_channels_must_be_a_positive_whole_number(value):
    with pytest.raises(ValueError, match="key 'max_channels' needs a whole number above 0"):
        execwire.XSpec(f"popen//max_channels={value}")
