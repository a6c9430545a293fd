"""The protocol core on its own: two cores back to back in memory, hostile frames, and stateful runs.

No processes and no threads here: bytes go from one core's commands into the other's read buffer, the
way the drivers do it, and the tests look at the events that come out.
"""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from execwire._far import frames, protocol, wire
from execwire._far.errors import ProtocolError
from execwire._far.protocol import FAR, NEAR, ChannelState, Protocol

pytestmark = pytest.mark.timeout(120)
HEADER = frames.HEADER
CREDIT = struct.Struct("!Q")


def frame(msgtype: int, channel_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(frames.MAGIC, msgtype, channel_id, len(payload)) + payload


def item_frame(channel_id: int, value: Any) -> bytes:
    return frame(frames.DATA, channel_id, b"".join(bytes(part) for part in wire.encode(value)))


def hello(**info: Any) -> bytes:
    body = {"protocol": frames.PROTOCOL_VERSION, "rinfo": {"pid": 1}}
    body.update(info)
    return frame(frames.HELLO, 0, wire.dumps(body)[7:])


CONFIG = frame(frames.CONFIG, 0, wire.dumps({"id": "gw0"})[7:])


def feed(core: Protocol, data: bytes, chunk: int | None = None) -> list[tuple[Any, ...]]:
    """Give ``data`` to ``core`` the way a driver does (in reads of ``chunk`` bytes); return the events."""
    events: list[tuple[Any, ...]] = []
    view = memoryview(data)
    while view:
        events += core.events()
        target = core.read_buffer()
        count = min(len(target), len(view), chunk or len(view))
        target[:count] = view[:count]
        del target
        core.bytes_read(count)
        view = view[count:]
    events += core.events()
    return events


def near_core(**kwargs: Any) -> Protocol:
    core = Protocol(NEAR, ChannelState, **kwargs)
    assert [event[0] for event in feed(core, hello())] == [protocol.HELLO]
    return core


def far_core(**kwargs: Any) -> Protocol:
    core = Protocol(FAR, ChannelState, **kwargs)
    assert [event[0] for event in feed(core, CONFIG)] == [protocol.CONFIG]
    return core


def far_channel(core: Protocol, channel_id: int = 1) -> ChannelState:
    """A channel the near side made, as the far core knows it after an EXEC."""
    request = b"".join(bytes(part) for part in wire.encode(("pass", "<x>", None, {})))
    (event,) = feed(core, frame(frames.EXEC, channel_id, request))
    assert event[0] == protocol.EXEC
    return event[1]


# -- handshake --------------------------------------------------------------------------------------------------
def test_the_near_core_reports_hello_with_the_far_facts():
    core = Protocol(NEAR, ChannelState)
    (event,) = feed(core, hello())
    assert event[0] == protocol.HELLO and event[1]["rinfo"] == {"pid": 1}


@pytest.mark.parametrize(("payload", "words"), [
    (wire.dumps({"rinfo": {}})[7:], "protocol version None"),
    (wire.dumps({"protocol": 99, "rinfo": {}})[7:], "protocol version 99"),
    (wire.dumps({"protocol": frames.PROTOCOL_VERSION})[7:], "rinfo"),
    (wire.dumps([1, 2])[7:], "list, not a dict"),
    (b"\xff\xff", "does not decode"),
    (wire.dumps({"error": 5})[7:], "error is not a text"),
])
def test_a_malformed_hello_is_a_protocol_error_that_says_what_is_wrong(payload, words):
    core = Protocol(NEAR, ChannelState)
    with pytest.raises(ProtocolError, match=words):
        feed(core, frame(frames.HELLO, 0, payload))


def test_a_first_frame_other_than_config_is_refused_by_the_far_core():
    core = Protocol(FAR, ChannelState)
    with pytest.raises(ProtocolError, match="sent DATA before CONFIG"):
        feed(core, item_frame(1, 1))


def test_garbage_before_the_first_frame_is_quoted():
    core = Protocol(NEAR, ChannelState)
    with pytest.raises(ProtocolError, match=r"b'Welcome to host\\n"):
        feed(core, b"Welcome to host\n" + hello())


# -- items and channel states ---------------------------------------------------------------------------------
@given(st.lists(st.one_of(st.integers(), st.text(max_size=20), st.binary(max_size=5000),
                          st.tuples(st.integers(), st.floats(allow_nan=False))), max_size=30),
       st.integers(1, 300))
@settings(max_examples=60, deadline=None)
def test_items_arrive_whole_and_in_order_however_the_bytes_are_cut(values, chunk):
    core = far_core()
    channel = far_channel(core)
    data = b"".join(item_frame(channel.id, value) for value in values)
    events = feed(core, data, chunk)
    assert [(event[0], event[1], event[2]) for event in events] == [(protocol.ITEM, channel, v) for v in values]


def test_data_after_last_is_a_protocol_error_naming_frame_side_and_state():
    core = far_core()
    channel = far_channel(core)
    feed(core, frame(frames.LAST, channel.id))
    with pytest.raises(ProtocolError) as caught:
        feed(core, item_frame(channel.id, "late"))
    message = str(caught.value)
    assert "near side sent DATA for channel 1" in message and "LAST received" in message


@pytest.mark.parametrize(("first", "second", "words"), [
    (frame(frames.CLOSE, 1), frame(frames.CLOSE, 1), "CLOSE for channel 1"),
    (frame(frames.CLOSE, 1), frame(frames.CREDIT, 1, CREDIT.pack(5)), "CREDIT for channel 1"),
    (frame(frames.LAST, 1), frame(frames.LAST, 1), "LAST for channel 1"),
])
def test_frames_that_the_state_does_not_allow_end_the_connection(first, second, words):
    core = far_core()
    channel = far_channel(core)  # the table holds weak references: the driver (here the test) keeps its channels
    feed(core, first)
    channel._local = protocol.LAST_SENT  # keep the channel in the table after the peer's CLOSE
    with pytest.raises(ProtocolError, match=words):
        feed(core, second)


@pytest.mark.parametrize(("data", "words"), [
    (frame(frames.CLOSE_ERROR, 1, wire.dumps(42)[7:]), "CLOSE_ERROR for channel 1 whose payload is int"),
    (frame(frames.CREDIT, 1, b"\x00\x01"), "CREDIT frame of 2 bytes"),
    (frame(frames.CLOSE, 1, b"x"), "CLOSE frame with 1 bytes of payload"),
    (frame(frames.OUTPUT, 1, b"hi"), "only the far side may send"),
    (frame(frames.HELLO, 0, b""), "only the far side may send"),
    (frame(frames.EXEC, 2, b""), "not a near side id"),
    (frame(frames.EXEC, 3, wire.dumps((1, 2))[7:]), "EXEC frame whose payload is not"),
    (frame(frames.DATA, 0, b"N"), "channel 0"),
    (frame(frames.DATA, 8, b"N"), "channel 8, which the far side never made"),
])
def test_malformed_control_frames_are_protocol_errors_not_crashes(data, words):
    core = far_core()
    _kept = far_channel(core)  # the table holds weak references: the driver keeps its channels
    with pytest.raises(ProtocolError, match=words):
        feed(core, data)


def test_a_second_exec_on_a_channel_in_use_is_refused():
    core = far_core()
    _kept = far_channel(core)  # the table holds weak references: the driver keeps its channels
    with pytest.raises(ProtocolError, match="is in use"):
        far_channel(core)


def test_items_that_were_on_their_way_when_this_side_closed_are_dropped():
    core = far_core()
    channel = far_channel(core)
    assert channel._close_frame() is not None
    assert feed(core, item_frame(1, "in flight")) == []
    (event,) = feed(core, frame(frames.CLOSE, 1))
    assert event[0] == protocol.ENDED
    assert 1 not in core.channels  # both CLOSEs crossed: forgotten


def test_a_channel_is_forgotten_once_both_sides_sent_close():
    core = far_core()
    channel = far_channel(core)
    (event,) = feed(core, frame(frames.CLOSE, 1))
    assert event[:4] == (protocol.ENDED, channel, None, False)
    assert 1 in core.channels  # we owe our CLOSE
    assert channel._close_frame() == frame(frames.CLOSE, 1)
    assert 1 not in core.channels
    assert channel._close_frame() is None  # only once


def test_close_error_carries_the_traceback_text():
    core = far_core()
    channel = far_channel(core)
    (event,) = feed(core, frame(frames.CLOSE_ERROR, 1, wire.dumps("Traceback: boom")[7:]))
    assert event == (protocol.ENDED, channel, "Traceback: boom", False)


def test_credit_returns_in_batches_and_the_sender_waits_beyond_the_window():
    sender = far_core()
    channel = far_channel(sender)
    cost = protocol.CREDIT_BATCH
    assert channel._reserve(cost) and channel._reserve(cost) and channel._reserve(cost) and channel._reserve(cost)
    assert not channel._reserve(cost)  # the window is used up: wait for CREDIT
    (event,) = feed(sender, frame(frames.CREDIT, 1, CREDIT.pack(cost)))
    assert event == (protocol.CREDIT, channel, cost)
    receiver_side = ChannelState(near_core(), 1)
    assert receiver_side._took(cost - 1) is None
    assert receiver_side._took(1) == frame(frames.CREDIT, 1, CREDIT.pack(cost))


def test_references_to_channels_make_them_and_the_table_is_bounded():
    core = far_core(max_channels=5)
    _kept = far_channel(core)  # the table holds weak references: the driver keeps its channels
    refs = [_Ref(number) for number in (3, 5, 7)]
    (event,) = feed(core, frame(frames.DATA, 1, b"".join(bytes(p) for p in wire.encode(refs, _Ref))))
    assert [channel.id for channel in event[2]] == [3, 5, 7]
    assert sorted(core.channels) == [1, 3, 5, 7]
    too_many = [_Ref(number) for number in (9, 11)]
    with pytest.raises(ProtocolError, match="more than 5 channels"):
        feed(core, frame(frames.DATA, 1, b"".join(bytes(p) for p in wire.encode(too_many, _Ref))))


class _Ref:
    """Something the encoder sends as a channel reference (it has an id and is of the channel type)."""

    def __init__(self, id: int) -> None:
        self.id = id


# -- lengths and the end of the stream --------------------------------------------------------------------------
def test_a_header_claiming_a_gib_allocates_no_more_than_a_bounded_chunk():
    core = far_core()
    _kept = far_channel(core)  # the table holds weak references: the driver keeps its channels
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(core, HEADER.pack(frames.MAGIC, frames.DATA, 1, frames.MAX_PAYLOAD) + b"N" * 1000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown <= protocol.LARGE_CHUNK + 1024 * 1024, f"{grown} bytes allocated for 1,011 bytes received"


def test_receive_data_takes_bytes_as_an_event_loop_gives_them():
    core = far_core()
    channel = far_channel(core)
    blob = b"z" * 300_000  # larger than the read buffer: it goes through a frame's own memory
    for piece in (item_frame(1, "a") + item_frame(1, blob)[:1000], item_frame(1, blob)[1000:] + item_frame(1, "b")):
        core.receive_data(piece)
    assert [event[2] for event in core.events()] == ["a", blob, "b"] and channel.id == 1
    core.receive_data(b"")
    assert core.events() == [(protocol.EOF,)]


def test_a_large_frame_in_many_reads_arrives_whole():
    core = far_core()
    channel = far_channel(core)
    blob = bytes(range(256)) * 4096  # 1 MiB: larger than the read buffer
    events = feed(core, item_frame(1, blob) + item_frame(1, "after"), chunk=70000)
    assert [event[2] for event in events] == [blob, "after"] and events[0][1] is channel


def test_a_frame_longer_than_the_limit_is_refused():
    core = far_core()
    with pytest.raises(ProtocolError, match="more than the limit"):
        feed(core, HEADER.pack(frames.MAGIC, frames.DATA, 1, frames.MAX_PAYLOAD + 1))


def test_the_end_of_the_stream_between_frames_is_clean_and_in_a_frame_is_an_error():
    core = far_core()
    core.bytes_read(0)
    assert core.events() == [(protocol.EOF,)]
    cut = far_core()
    far_channel(cut)
    feed(cut, item_frame(1, "x" * 100)[:50])
    cut.bytes_read(0)
    with pytest.raises(ProtocolError, match="ended in the middle of a frame"):
        cut.events()


# -- hostile input ----------------------------------------------------------------------------------------------
_FRAME_TYPES = st.sampled_from(sorted(frames.NAMES) + [0, 12, 255])


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    msgtype = draw(_FRAME_TYPES)
    channel_id = draw(st.sampled_from([0, 1, 2, 3, 5, 0xFFFFFFFF]))
    payload = draw(st.one_of(st.binary(max_size=40), st.builds(lambda v: wire.dumps(v)[7:], st.integers()),
                             st.just(CREDIT.pack(10)), st.just(b"")))
    magic = draw(st.sampled_from([frames.MAGIC, frames.MAGIC, frames.MAGIC, b"xx"]))
    return HEADER.pack(magic, msgtype, channel_id, len(payload)) + payload


@given(st.lists(hostile_frames(), max_size=12), st.integers(1, 64), st.sampled_from([NEAR, FAR]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_frame_sequences_give_events_or_a_protocol_error_never_anything_else(chunks, cut, side):
    core = near_core() if side == NEAR else far_core()
    try:
        if side == FAR:
            _kept = far_channel(core)  # the table holds weak references: the driver keeps its channels
        feed(core, b"".join(chunks), cut)
        core.bytes_read(0)
        core.events()
    except (ProtocolError, wire.LoadError):
        pass


@given(st.binary(max_size=200), st.sampled_from([NEAR, FAR]))
@settings(max_examples=300, deadline=None)
def test_random_bytes_give_events_or_a_protocol_error(data, side):
    core = Protocol(side, ChannelState)
    try:
        feed(core, data, 7)
        core.bytes_read(0)
        core.events()
    except (ProtocolError, wire.LoadError):
        pass


# -- two cores, stateful ----------------------------------------------------------------------------------------
class TwoCores(RuleBasedStateMachine):
    """A near and a far core joined in memory; random legal steps never raise and lose nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.near = near_core()
        self.far = far_core()
        self.to_far = bytearray()
        self.to_near = bytearray()
        self.pairs: list[tuple[ChannelState, ChannelState]] = []
        self.kept: list[ChannelState] = []
        self.sent: dict[tuple[str, int], list[Any]] = {}
        self.got: dict[tuple[str, int], list[Any]] = {}
        self.ended: set[tuple[str, int]] = set()

    def _deliver(self, side: str, cut: int) -> None:
        core, buffer = (self.far, self.to_far) if side == FAR else (self.near, self.to_near)
        data, buffer[:] = bytes(buffer), b""
        for event in feed(core, data, cut):
            kind = event[0]
            if kind == protocol.ITEM:
                self.got.setdefault((side, event[1].id), []).append(event[2])
            elif kind == protocol.ENDED and not event[3]:
                self.ended.add((side, event[1].id))
                answer = event[1]._close_frame()
                if answer is not None:
                    (self.to_near if side == FAR else self.to_far).extend(answer)
            elif kind == protocol.CREDIT:
                event[1]._add_credit(event[2])
            elif kind == protocol.EXEC:
                self.kept.append(event[1])  # a driver holds the channels it serves

    @rule()
    def open_channel(self) -> None:
        ours = self.near.new_channel()
        request = b"".join(bytes(part) for part in wire.encode(("pass", "<x>", None, {})))
        self.to_far.extend(frame(frames.EXEC, ours.id, request))
        self._deliver(FAR, 1000)
        theirs = self.far.get_channel(ours.id)
        assert theirs is not None
        self.pairs.append((ours, theirs))

    @precondition(lambda self: self.pairs)
    @rule(index=st.integers(0, 50), value=st.one_of(st.integers(), st.text(max_size=5)),
          from_near=st.booleans())
    def send_item(self, index: int, value: Any, from_near: bool) -> None:
        pair = self.pairs[index % len(self.pairs)]
        channel = pair[0] if from_near else pair[1]
        if not channel._can_send():
            return
        (self.to_far if from_near else self.to_near).extend(item_frame(channel.id, value))
        self.sent.setdefault((FAR if from_near else NEAR, channel.id), []).append(value)

    @precondition(lambda self: self.pairs)
    @rule(index=st.integers(0, 50), from_near=st.booleans(), error=st.booleans())
    def close(self, index: int, from_near: bool, error: bool) -> None:
        pair = self.pairs[index % len(self.pairs)]
        channel = pair[0] if from_near else pair[1]
        data = channel._close_frame("boom" if error else None)
        if data is not None:
            (self.to_far if from_near else self.to_near).extend(data)

    @rule(cut=st.integers(1, 40))
    def deliver(self, cut: int) -> None:
        self._deliver(FAR, cut)
        self._deliver(NEAR, cut)

    @invariant()
    def nothing_lost_or_invented(self) -> None:
        if self.to_far or self.to_near:
            return
        for key, values in self.sent.items():
            assert self.got.get(key, []) == values or key in self.ended or key in self.ended, (key, values)

    def teardown(self) -> None:
        for _ in range(3):  # every CLOSE answered: both tables empty of closed channels
            self._deliver(FAR, 64)
            self._deliver(NEAR, 64)
        for near_channel, far_channel_ in self.pairs:
            if near_channel._local == protocol.CLOSE_SENT or far_channel_._local == protocol.CLOSE_SENT:
                assert near_channel.id not in self.near.channels and far_channel_.id not in self.far.channels


TwoCores.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_two_cores_back_to_back = TwoCores.TestCase


def test_a_dropped_channel_owes_close_only_if_the_table_knew_it():
    core = far_core()
    known = far_channel(core)
    frame_bytes = core._dropped(known)
    assert frame_bytes is not None and frame_bytes[2] == frames.CLOSE
    assert 1 not in core.channels
    stranger = ChannelState(core, 3)  # made by hand, never in the table: the peer knows nothing of it
    assert core._dropped(stranger) is None
