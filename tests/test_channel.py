"""Channels through a real popen gateway: every operation of the channel API, both directions."""

from __future__ import annotations

import builtins
import collections
import enum
import gc
import threading
import time

import pytest

import execwire

pytestmark = pytest.mark.timeout(60)

ECHO = """
for item in channel:
    channel.send(item)
"""


class Color(enum.IntEnum):
    RED = 1


class Mode(str, enum.Enum):
    FAST = "fast"


class Text(str):
    pass


Point = collections.namedtuple("Point", "x y")

# (value sent, what must come back): the exact value and its exact type
ROUND_TRIP = [
    (None, None),
    (True, True),
    (False, False),
    (0, 0),
    (-1, -1),
    (127, 127),
    (-129, -129),
    (2**31, 2**31),
    (2**63, 2**63),
    (-(2**200) + 7, -(2**200) + 7),
    (1.5, 1.5),
    (-0.0, -0.0),
    (float("inf"), float("inf")),
    (complex(1, -2.5), complex(1, -2.5)),
    ("", ""),
    ("héllo wörld ✓", "héllo wörld ✓"),
    ("x" * 70000, "x" * 70000),
    (b"", b""),
    (b"\x00\xff" * 5, b"\x00\xff" * 5),
    (bytes(range(256)) * 4096, bytes(range(256)) * 4096),  # 1 MiB
    (bytearray(b"abc"), bytearray(b"abc")),
    ([], []),
    ([1, [2, [3, "four"]]], [1, [2, [3, "four"]]]),
    ((), ()),
    ((1, (2, 3)), (1, (2, 3))),
    ({}, {}),
    ({"a": 1, 2: (3,), (4, 5): None, b"k": [1]}, {"a": 1, 2: (3,), (4, 5): None, b"k": [1]}),
    (set(), set()),
    ({1, "two", (3,)}, {1, "two", (3,)}),
    (frozenset(), frozenset()),
    (frozenset({1, 2}), frozenset({1, 2})),
    (list(range(1000)), list(range(1000))),
    # subclasses travel as their base type
    (Color.RED, 1),
    (Mode.FAST, "fast"),
    (Text("plain"), "plain"),
    (Point(1, 2), (1, 2)),
    (collections.OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
]


def _same(got: object, expected: object) -> bool:
    """Equal and of exactly the same type, all the way down."""
    if type(got) is not type(expected):
        return False
    if isinstance(expected, (list, tuple)):
        return len(got) == len(expected) and all(map(_same, got, expected))  # type: ignore[arg-type]
    if isinstance(expected, dict):
        return got == expected and all(_same(got[key], value) for key, value in expected.items())  # type: ignore[index]
    if isinstance(expected, float) and expected == 0.0:
        return repr(got) == repr(expected)
    return got == expected


def test_shipped_code_sees_channel_and_channelexec_name(gw):
    channel = gw.remote_exec("channel.send((__name__, type(channel).__name__))")
    assert channel.receive(timeout=10) == ("__channelexec__", "Channel")
    channel.waitclose(10)


def test_every_serializer_type_survives_a_round_trip_through_the_far_side(gw):
    channel = gw.remote_exec(ECHO)
    for sent, _ in ROUND_TRIP:
        channel.send(sent)
    for sent, expected in ROUND_TRIP:
        got = channel.receive(timeout=10)
        assert _same(got, expected), f"sent {type(sent).__name__} {sent!r:.60}, got {type(got).__name__} {got!r:.60}"
    channel.close()


def test_far_side_builds_values_of_every_type_and_sends_them(gw):
    channel = gw.remote_exec("""
        channel.send([None, True, 2**100, 1.25, 3j, "s", b"b", bytearray(b"ba"), (1,), {"k": {2}},
                      frozenset([3])])
    """)
    assert channel.receive(timeout=10) == [None, True, 2**100, 1.25, 3j, "s", b"b", bytearray(b"ba"), (1,),
                                           {"k": {2}}, frozenset([3])]


def test_sending_an_unserializable_object_names_its_type_and_place(gw):
    channel = gw.remote_exec(ECHO)
    with pytest.raises(execwire.DumpError) as info:
        channel.send([1, 2, {"key": object()}])
    assert "object" in str(info.value)
    assert "[2]['key']" in str(info.value)
    channel.send("still usable")
    assert channel.receive(timeout=10) == "still usable"
    channel.close()


def test_far_side_sending_an_unserializable_object_raises_there(gw):
    channel = gw.remote_exec("channel.send({'f': open})")
    with pytest.raises(execwire.RemoteError) as info:
        channel.receive(timeout=10)
    assert "DumpError" in info.value.formatted
    assert "builtin_function_or_method" in info.value.formatted


def test_receive_timeout_raises_timeout_error_and_channel_stays_usable(gw):
    channel = gw.remote_exec(ECHO)
    started = time.monotonic()
    with pytest.raises(execwire.TimeoutError) as info:
        channel.receive(timeout=0.2)
    assert time.monotonic() - started < 5
    assert isinstance(info.value, builtins.TimeoutError)
    assert isinstance(info.value, channel.TimeoutError)
    channel.send("after the timeout")
    assert channel.receive(timeout=10) == "after the timeout"
    channel.close()


def test_iteration_yields_every_item_and_stops_at_the_end(gw):
    channel = gw.remote_exec("for i in range(50): channel.send(i)")
    assert list(channel) == list(range(50))


def test_waitclose_timeout_then_success(gw):
    channel = gw.remote_exec("channel.receive()")
    with pytest.raises(execwire.TimeoutError):
        channel.waitclose(timeout=0.2)
    assert not channel.isclosed()
    channel.send("go")
    channel.waitclose(timeout=10)
    assert channel.isclosed()


def test_isclosed_after_local_close(gw):
    channel = gw.remote_exec("channel.receive()")
    assert not channel.isclosed()
    channel.close()
    assert channel.isclosed()
    channel.close()  # twice is fine
    with pytest.raises(execwire.ChannelClosedError):
        channel.send(1)


def test_close_wakes_a_far_receive_with_eoferror(gw):
    report = gw.newchannel()
    channel = gw.remote_exec("""
        report = channel.receive()
        report.send("waiting")
        try:
            channel.receive()
        except Exception as exc:
            report.send(type(exc).__name__)
    """)
    channel.send(report)
    assert report.receive(timeout=10) == "waiting"
    channel.close()
    assert report.receive(timeout=10) == "EOFError"


def test_close_with_error_gives_remote_error_on_the_far_side(gw):
    report = gw.newchannel()
    channel = gw.remote_exec("""
        report = channel.receive()
        report.send("waiting")
        try:
            channel.receive()
        except channel.RemoteError as exc:
            report.send(("RemoteError", str(exc)))
        except Exception as exc:
            report.send((type(exc).__name__, str(exc)))
    """)
    channel.send(report)
    assert report.receive(timeout=10) == "waiting"
    channel.close(error="the near side gave up: disk full")
    kind, text = report.receive(timeout=10)
    assert kind == "RemoteError"
    assert "disk full" in text


def test_items_sent_before_the_far_code_raises_arrive_before_the_remote_error(gw):
    channel = gw.remote_exec("""
        for i in range(2000):
            channel.send(i)
        raise ValueError("boom after 2000 items")
    """)
    received = [channel.receive(timeout=10) for _ in range(2000)]
    assert received == list(range(2000))
    with pytest.raises(execwire.RemoteError) as info:
        channel.receive(timeout=10)
    assert "ValueError: boom after 2000 items" in info.value.formatted
    assert info.value.type_name == "ValueError"
    with pytest.raises(execwire.RemoteError):
        channel.waitclose(10)


def test_items_sent_before_the_far_code_ends_arrive_before_eoferror(gw):
    channel = gw.remote_exec("""
        for i in range(2000):
            channel.send(i)
    """)
    channel.waitclose(10)  # the items are queued even though the channel is closed
    received = [channel.receive(timeout=10) for _ in range(2000)]
    assert received == list(range(2000))
    with pytest.raises(EOFError):
        channel.receive(timeout=10)
    with pytest.raises(EOFError):
        channel.receive(timeout=10)  # and again: the end stays the end


def test_remote_error_carries_the_far_traceback(gw):
    channel = gw.remote_exec("""
        def inner():
            raise KeyError("missing-key")
        inner()
    """)
    with pytest.raises(execwire.RemoteError) as info:
        channel.waitclose(10)
    text = info.value.formatted
    assert "Traceback" in text
    assert "in inner" in text
    assert 'raise KeyError("missing-key")' in text
    assert "KeyError: 'missing-key'" in text
    assert info.value.type_name == "KeyError"
    assert info.value.gateway_id == gw.id
    assert isinstance(info.value, execwire.Error)


def test_setcallback_without_endmarker_gets_every_item_in_order(gw):
    got: list[object] = []
    done = threading.Event()

    def callback(item: object) -> None:
        got.append(item)
        if item == 99:
            done.set()

    channel = gw.remote_exec("for i in range(100): channel.send(i)")
    channel.setcallback(callback)
    assert done.wait(10)
    channel.waitclose(10)
    assert got == list(range(100))
    with pytest.raises(RuntimeError):
        channel.receive(timeout=1)


def test_setcallback_with_endmarker_delivers_queued_items_first_in_order(gw):
    marker = gw.newchannel()
    channel = gw.remote_exec("""
        marker = channel.receive()
        for i in range(50):
            channel.send(i)
        marker.send("first batch sent")
        channel.receive()
        for i in range(50, 100):
            channel.send(i)
    """)
    channel.send(marker)
    # frames arrive in order on one pipe: once this arrives, the first 50 items are queued on channel
    assert marker.receive(timeout=10) == "first batch sent"
    got: list[object] = []
    ended = threading.Event()

    def callback(item: object) -> None:
        got.append(item)
        if item == "END":
            ended.set()

    channel.setcallback(callback, endmarker="END")
    channel.send("go on")
    assert ended.wait(10)
    assert got == [*range(100), "END"]


def test_setcallback_after_the_channel_ended_still_gets_items_and_endmarker(gw):
    channel = gw.remote_exec("channel.send(1); channel.send(2)")
    channel.waitclose(10)
    got: list[object] = []
    ended = threading.Event()

    def callback(item: object) -> None:
        got.append(item)
        if item is None:
            ended.set()

    channel.setcallback(callback, endmarker=None)
    assert ended.wait(10)
    assert got == [1, 2, None]


def test_exception_in_a_near_callback_closes_the_channel_with_the_error_to_the_far_side(gw):
    report = gw.newchannel()
    channel = gw.remote_exec("""
        report = channel.receive()
        channel.send("trigger")
        try:
            channel.receive()
        except channel.RemoteError as exc:
            report.send(str(exc))
    """)

    def callback(item: object) -> None:
        raise ZeroDivisionError(f"callback failed on {item}")

    channel.setcallback(callback)
    channel.send(report)
    text = report.receive(timeout=10)
    assert "ZeroDivisionError: callback failed on trigger" in text
    # the callback thread survives: other channels' callbacks still run
    other_got = threading.Event()
    other = gw.remote_exec("channel.send(1)")
    other.setcallback(lambda item: other_got.set())
    assert other_got.wait(10)


def test_exception_in_a_far_callback_reaches_the_near_side_as_remote_error(gw):
    channel = gw.remote_exec("""
        def callback(item):
            raise ValueError("far callback got %r" % (item,))
        channel.setcallback(callback)
        channel.waitclose(10)  # the failing callback closes the channel
    """)
    channel.send(41)
    with pytest.raises(execwire.RemoteError) as info:
        channel.waitclose(10)
    assert "ValueError: far callback got 41" in info.value.formatted


def test_makefile_write_sends_what_is_written(gw):
    channel = gw.remote_exec("channel.send([channel.receive(), channel.receive()])")
    writer = channel.makefile("w")
    writer.write("first line\n")
    writer.write(b"raw bytes")
    writer.flush()
    assert channel.receive(timeout=10) == ["first line\n", b"raw bytes"]
    assert not writer.isatty()


def test_makefile_read_reads_lines_and_the_rest(gw):
    channel = gw.remote_exec("""
        for chunk in ["al", "pha\\nbe", "ta\\n", "gamma"]:
            channel.send(chunk)
    """)
    reader = channel.makefile("r")
    assert reader.readline() == "alpha\n"
    assert reader.readline() == "beta\n"
    assert reader.read() == "gamma"
    assert reader.read() == ""


def test_far_print_into_a_channel_file(gw):
    channel = gw.remote_exec("""
        out = channel.makefile("w")
        print("printed", 42, file=out)
    """)
    assert "".join(channel) == "printed 42\n"


def test_makefile_rejects_unknown_mode(gw):
    channel = gw.remote_exec("pass")
    with pytest.raises(ValueError, match="'x'"):
        channel.makefile("x")


def test_channel_sent_from_near_to_far_inside_a_message(gw):
    side = gw.newchannel()
    channel = gw.remote_exec("""
        message = channel.receive()
        side = message["reply_on"]
        side.send(("via side channel", message["n"] * 2))
        side.send(side.receive() + "!")
    """)
    channel.send({"reply_on": side, "n": 21})
    assert side.receive(timeout=10) == ("via side channel", 42)
    side.send("hello")
    assert side.receive(timeout=10) == "hello!"
    channel.waitclose(10)


def test_channel_sent_from_far_to_near_inside_a_message(gw):
    channel = gw.remote_exec("""
        side = channel.gateway.newchannel()
        channel.send([1, side])
        for item in side:
            side.send(item * 3)
    """)
    first, side = channel.receive(timeout=10)
    assert first == 1
    assert isinstance(side, execwire.Channel)
    side.send(5)
    assert side.receive(timeout=10) == 15
    side.send("ab")
    assert side.receive(timeout=10) == "ababab"
    side.close()
    channel.waitclose(10)


def test_many_channels_in_parallel_keep_their_items_apart(gw):
    channels = [gw.remote_exec("n = channel.receive()\nfor i in range(200): channel.send((n, i))") for _ in range(8)]
    for n, channel in enumerate(channels):
        channel.send(n)
    for n, channel in enumerate(channels):
        assert list(channel) == [(n, i) for i in range(200)]


def test_an_item_larger_than_the_flow_control_window_follows_small_ones(gw):
    from execwire._far.channel import WINDOW

    ch = gw.remote_exec("for x in channel: channel.send(len(x))")
    ch.send(b"small")
    assert ch.receive(10) == 5
    big = b"x" * (WINDOW + 1_000_000)
    ch.send(big)
    ch.send(big)
    assert ch.receive(20) == len(big)
    assert ch.receive(20) == len(big)
    ch.close()


def test_an_item_over_the_size_limit_is_refused_and_the_channel_stays_usable(gw):
    from execwire._far import frames

    ch = gw.remote_exec("channel.send(channel.receive())")
    with pytest.raises(execwire.DumpError, match="limit"):
        ch.send(b"x" * (frames.MAX_PAYLOAD + 1))
    ch.send(1)
    assert ch.receive(10) == 1


# -- channels that become garbage are closed (as execnet does) ------------------------------------------------------
def test_a_channel_the_controller_drops_is_closed_for_the_far_code(gw):
    watcher = gw.remote_exec("""
        sub = channel.receive()
        got = [item for item in sub]  # ends once the controller's side of sub is gone
        channel.send(got)
    """)
    sub = gw.newchannel()
    watcher.send(sub)
    sub.send(1)
    del sub
    gc.collect()
    assert watcher.receive(timeout=10) == [1]


def test_a_channel_with_a_callback_gets_its_items_without_being_referenced(gw):
    got: list[object] = []
    ended = threading.Event()
    end = object()

    def callback(item: object) -> None:
        if item is end:
            ended.set()
        else:
            got.append(item)

    channel = gw.remote_exec("for i in range(3): channel.send(i)")
    channel.setcallback(callback, endmarker=end)
    del channel
    gc.collect()
    assert ended.wait(10)
    assert got == [0, 1, 2]


def test_channels_dropped_on_both_sides_leave_both_tables(gw):
    from conftest import wait_until

    baseline = gw.remote_status().numchannels
    drain = gw.remote_exec("for sub in channel: sub.send('hi')")  # keeps none of them
    for _ in range(300):
        sub = gw.newchannel()
        drain.send(sub)
        assert sub.receive(timeout=10) == "hi"
    del sub
    gc.collect()
    assert wait_until(lambda: gw.remote_status().numchannels <= baseline + 1, 10), gw.remote_status().numchannels
    assert len(gw._protocol.live_channels()) <= 3  # drain, and the status channel


def test_far_code_that_the_controller_ends_by_dropping_its_channel_reports_nothing(gw):
    from conftest import wait_until

    seen: list[bytes] = []
    gw.output_handler = lambda gateway, fd, data: seen.append(data)
    first = gw.remote_exec("channel.send('started')\nfirst_marker = channel.receive()")
    assert first.receive(timeout=10) == "started"
    del first
    second = gw.remote_exec("channel.send('started')\ntry:\n    channel.receive()\n"
                            "except EOFError:\n    raise ValueError('failed after the close')")
    assert second.receive(timeout=10) == "started"
    del second
    gc.collect()
    assert wait_until(lambda: b"failed after the close" in b"".join(seen), 10)  # a real error is still shown
    assert b"first_marker" not in b"".join(seen)  # the EOFError that the drop caused is not


def test_a_channel_object_made_by_hand_and_dropped_leaves_the_gateway_alone(gw):
    far = gw.remote_exec("""
        import gc
        Channel = type(channel)
        stray = Channel(channel.gateway, channel.gateway._protocol, 10001)  # an id of the near side's, never made
        del stray
        gc.collect()
        channel.send("dropped")
    """)
    assert far.receive(timeout=10) == "dropped"
    far.waitclose(10)
    assert gw.remote_exec("channel.send(42)").receive(timeout=10) == 42
