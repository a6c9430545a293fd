"""What every async face (execwire.aio, execwire.trio) must do, written once: test_aio.py and
test_trio.py run each scenario under their own event loop.

A scenario is ``async def scenario_NAME(face, spec)``: ``face`` is the face's module and ``spec``
the gateway spec to use (popen, ssh, socket, via: the test files choose). Cancellation and
timeouts are spelled differently per library, so those tests live in the test files themselves.
"""

from __future__ import annotations

import os
import signal
import time
from types import ModuleType
from typing import Any

import pytest
from conftest import pid_gone, wait_until

import execwire

ECHO = "for item in channel: channel.send(item)"


async def start(face: ModuleType, spec: str) -> Any:
    """A gateway for ``spec``; a spec with via= gets its middle gateway first, in a group."""
    if "via=" in spec:
        group = face.Group(["popen//id=middle"])
        await group.__aenter__()
        return await group.makegateway(spec)
    return await face.makegateway(spec)


async def stop(gateway: Any) -> None:
    group = gateway._group
    await gateway.exit()
    if group is not None:
        await group.terminate()


async def scenario_round_trips_and_exit(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)
    info = await gw.remote_info()
    assert info.pid > 0 and info.version_info[0] == 3
    assert gw.state == "up"
    channel = await gw.remote_exec(ECHO)
    for item in [1, "two", b"three", (4, [5.0]), {"six": None}]:
        await channel.send(item)
        assert await channel.receive(timeout=30) == item
    await channel.send("last")
    await channel.close()
    assert channel.isclosed()
    with pytest.raises(execwire.ChannelClosedError):
        await channel.send(1)
    squares = await gw.remote_exec("for i in range(5): channel.send(i * i)")
    assert [item async for item in squares] == [0, 1, 4, 9, 16]
    await squares.waitclose(30)
    status = await gw.remote_status()
    assert status.numexecuting in (0, 1)  # the echo may still be seeing its end
    await stop(gw)
    assert gw.state == "closed"
    await gw.exit()  # again: nothing
    if gw.process is not None or "via=" not in spec:
        assert wait_until(lambda: pid_gone(info.pid), 10), "the far Python still runs after exit()"


async def scenario_errors_are_the_threaded_classes(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)
    channel = await gw.remote_exec("channel.send(1)\nraise ValueError('far failure')")
    assert await channel.receive(30) == 1  # items before the error come first
    with pytest.raises(execwire.RemoteError, match="far failure"):
        await channel.receive(30)
    with pytest.raises(execwire.RemoteError, match="ValueError: far failure"):
        await channel.waitclose(30)
    quiet = await gw.remote_exec("channel.receive()")
    with pytest.raises(execwire.TimeoutError, match="within 0.05 seconds"):
        await quiet.receive(timeout=0.05)
    with pytest.raises(TimeoutError):  # the builtin too
        await quiet.waitclose(timeout=0.05)
    await quiet.send("go")  # still usable after the timeouts
    await quiet.waitclose(30)
    with pytest.raises(EOFError):
        await quiet.receive(30)
    await stop(gw)
    with pytest.raises(execwire.GatewayLostError, match="closed"):
        await gw.remote_exec("pass")


async def scenario_bad_inputs_are_named(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)

    async def far(channel: Any) -> None:
        await channel.send(1)

    with pytest.raises(TypeError, match="pass far, not far"):
        await gw.remote_exec(far(None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lambda"):
        await gw.remote_exec(lambda channel: None)
    with pytest.raises(TypeError, match="only for functions"):
        await gw.remote_exec("pass", x=1)
    with pytest.raises(TypeError, match="not int"):
        await gw.remote_exec(42)  # type: ignore[arg-type]
    channel = await gw.remote_exec(ECHO)
    with pytest.raises(TypeError, match="async for"):
        for _ in channel:  # sync code where async is required
            pass
    with pytest.raises(TypeError, match="async with"):
        with gw:
            pass
    with pytest.raises(TypeError, match="async with"):
        with face.Group():
            pass
    with pytest.raises(execwire.DumpError, match="object"):
        await channel.send(object())
    await channel.send("still fine")
    assert await channel.receive(30) == "still fine"
    await stop(gw)
    with pytest.raises(ValueError, match="key 'imports' must be on, off or auto"):
        await face.makegateway("popen//imports=maybe")
    with pytest.raises(ValueError, match="key 'imports_allow' needs comma-separated module names"):
        await face.makegateway("popen//imports_allow=x-y")
    with pytest.raises(ValueError, match="nosuchkey"):
        await face.makegateway("popen//nosuchkey=1")
    with pytest.raises(execwire.GatewayStartError, match="no-such-python"):
        await face.makegateway("popen//python=/no-such-python")


async def scenario_far_killed_mid_receive_is_gateway_lost(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)
    channel = await gw.remote_exec("import os; channel.send(os.getpid()); channel.receive()")
    pid = await channel.receive(30)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(execwire.GatewayLostError):
        await channel.receive(30)  # woken by the end of the stream, well before the timeout
    with pytest.raises(execwire.GatewayLostError):
        await channel.send(1)
    with pytest.raises(execwire.GatewayLostError):
        await gw.remote_exec("pass")
    await stop(gw)


async def scenario_large_items_and_many_channels(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)
    channel = await gw.remote_exec(ECHO)
    big = os.urandom(12 * 1024 * 1024)  # beyond the pipe, the window and one relay item
    await channel.send(big)
    assert await channel.receive(60) == big
    channels = [await gw.remote_exec("channel.send(channel.receive() * 2)") for _ in range(50)]
    for number, each in enumerate(channels):
        await each.send(number)
    assert [await each.receive(30) for each in channels] == [2 * n for n in range(50)]
    stream = await gw.remote_exec("for i in range(20000): channel.send(i)")
    total = 0
    async for item in stream:
        total += item
    assert total == sum(range(20000))
    await stop(gw)


async def scenario_channels_travel_inside_items(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)
    channel = await gw.remote_exec("""
        side = channel.gateway.newchannel()
        channel.send(side)
        side.send("on the side channel")
        channel.send(channel.receive().receive())
    """)
    side = await channel.receive(30)
    assert isinstance(side, face.Channel)
    assert await side.receive(30) == "on the side channel"
    mine = gw.newchannel()
    await channel.send(mine)
    await mine.send("back through mine")
    assert await channel.receive(30) == "back through mine"
    await stop(gw)


async def scenario_far_output_reaches_the_handler(face: ModuleType, spec: str) -> None:
    gw = await start(face, spec)
    seen: list[tuple[int, bytes]] = []
    gw.output_handler = lambda gateway, stream, data: seen.append((stream, data))
    channel = await gw.remote_exec("import sys; print('to stdout', flush=True); channel.send(1)")
    assert await channel.receive(30) == 1
    await channel.waitclose(30)
    deadline = time.monotonic() + 10  # the far side forwards its output on a thread of its own
    while b"to stdout" not in b"".join(data for stream, data in seen if stream == 1):
        assert time.monotonic() < deadline, f"far output did not arrive: {seen!r}"
        await gw._backend.sleep(0.01)
    await stop(gw)


async def scenario_group_multichannel_and_terminate(face: ModuleType, spec: str) -> None:
    middle = ["popen//id=middle"] if "via=" in spec else []
    async with face.Group([*middle, spec, spec, "popen//id=named"]) as group:
        assert [gw.id for gw in group][-1] == "named" and len(group) == 3 + len(middle)
        pids = [(await gw.remote_info()).pid for gw in group]
        mch = await group.remote_exec("import os; channel.send(os.getpid())")
        assert sorted(await mch.receive_each()) == sorted(pids)
        await mch.waitclose(30)
        mch = await group.remote_exec("for i in range(3): channel.send(i)")
        pairs = [pair async for pair in mch]
        assert sorted(item for _, item in pairs) == sorted(list(range(3)) * len(group))
        assert {channel for channel, _ in pairs} == set(mch)
        with pytest.raises(KeyError, match="nope"):
            group["nope"]
        with pytest.raises(ValueError, match="already in this group"):
            await group.makegateway("popen//id=named")
    assert len(group) == 0
    assert wait_until(lambda: all(pid_gone(pid) for pid in pids), 10), "far processes left after terminate"


async def scenario_a_dropped_channel_is_closed(face: ModuleType, spec: str) -> None:
    """As in the threaded API: a channel that becomes garbage is closed, so far code waiting on it ends."""
    import gc

    gw = await start(face, spec)
    await gw.remote_exec("try:\n    channel.receive()\nexcept EOFError:\n    pass")  # dropped at once
    gc.collect()
    deadline = time.monotonic() + 20
    while (await gw.remote_status()).numexecuting:
        assert time.monotonic() < deadline, "far code still waits on a channel nobody here holds"
        await gw._backend.sleep(0.02)
    await stop(gw)


async def scenario_calls_and_far_log_records(face: ModuleType, spec: str) -> None:
    """gw.call with its module forwarded, a far exception, and far records as LogRecords (test_async_calls.py
    has the rest)."""
    import logging

    import call_targets

    kept: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = kept.append  # type: ignore[method-assign]
    far_logger = logging.getLogger("scenario.far")
    far_logger.addHandler(handler)
    far_logger.setLevel(logging.INFO)
    try:
        gw = await start(face, spec)
        assert await gw.call(call_targets.add, 40, b=2) == 42
        with pytest.raises(execwire.RemoteError, match="ValueError: scenario"):
            await gw.call(call_targets.fail, "scenario")
        channel = await gw.remote_exec("import logging; logging.getLogger('scenario.far').info('from %s', "
                                       "channel.gateway.id); channel.send(None)")
        await channel.receive(30)
        deadline = time.monotonic() + 20
        while not kept and time.monotonic() < deadline:
            await gw._backend.sleep(0.02)
        assert [(record.getMessage(), record.gateway) for record in kept] == [  # type: ignore[attr-defined]
            (f"from {gw.id}", gw.id)]
        await stop(gw)
    finally:
        far_logger.removeHandler(handler)
        far_logger.setLevel(logging.NOTSET)


SCENARIOS = {name[len("scenario_"):]: function for name, function in sorted(globals().items())
             if name.startswith("scenario_")}
