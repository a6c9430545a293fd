"""async def code on the far side: run in one event loop per gateway, from the threaded and the async
near faces, on the oldest and newest Pythons and PyPy.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest
from conftest import find_python

import execwire
import execwire.aio as aio

pytestmark = pytest.mark.timeout(60)


async def doubler(channel, factor=2):  # shipped: no annotations (the far side evaluates them)
    async for item in channel:
        await channel.send(item * factor)


async def loop_facts(channel):
    import asyncio
    import threading

    await channel.send((threading.current_thread().name, id(asyncio.get_event_loop()), threading.active_count()))
    await channel.receive()


MAIN_SOURCE = """
import asyncio

async def main(channel):
    first = await channel.receive()
    try:
        await channel.receive(timeout=0.05)
    except TimeoutError as exc:
        timed_out = type(exc).__name__
    try:
        await asyncio.wait_for(channel.receive(), 0.05)
    except asyncio.TimeoutError:
        pass
    await channel.send("timed out twice")
    second = await channel.receive()  # the cancelled waits took nothing
    await channel.send((first, timed_out, second))
    await channel.waitclose()
"""


def interpreters() -> list[str]:
    found = ["popen"]
    for pattern in ("3.6*", "3.13*"):
        python = find_python(pattern)
        if python:
            found.append(f"popen//python={python}")
    if shutil.which("pypy3"):
        found.append("popen//python=pypy3")
    return found


@pytest.mark.parametrize("spec", interpreters())
def test_async_function_and_async_main_from_the_threaded_api(group: execwire.Group, spec: str) -> None:
    gw = group.makegateway(spec)
    channel = gw.remote_exec(doubler, factor=3)
    for number in range(5):
        channel.send(number)
        assert channel.receive(30) == 3 * number
    channel.close()
    main = gw.remote_exec(MAIN_SOURCE)
    main.send("one")
    assert main.receive(30) == "timed out twice"
    main.send("two")
    assert main.receive(30) == ("one", "TimeoutError", "two")
    main.close()


def test_many_async_channels_share_one_far_loop_and_thread(group: execwire.Group) -> None:
    gw = group.makegateway("popen")
    channels = [gw.remote_exec(loop_facts) for _ in range(200)]
    facts = [channel.receive(30) for channel in channels]
    assert {name for name, _, _ in facts} == {"execwire-async"}
    assert len({loop for _, loop, _ in facts}) == 1
    # all 200 wait in receive() now, yet the far process has only its own threads (main, reader,
    # output, watchdog, callbacks), the loop and the exec workers kept idle (at most 16): none per
    # waiting channel. Workers beyond those 16 end once their job is handed to the loop.
    count = gw.remote_exec("""
import threading, time
deadline = time.monotonic() + 10
while threading.active_count() > 16 + 6 and time.monotonic() < deadline:
    time.sleep(0.01)
channel.send(threading.active_count())
""").receive(30)
    assert count <= 16 + 6
    for channel in channels:
        channel.send("done")
        channel.waitclose(30)
    assert gw.remote_status().numexecuting == 0


def test_far_async_errors_come_back_with_their_line(group: execwire.Group) -> None:
    gw = group.makegateway("popen")
    channel = gw.remote_exec("async def main(channel):\n    await channel.send(1)\n    raise KeyError('far')\n")
    assert channel.receive(30) == 1
    with pytest.raises(execwire.RemoteError) as info:
        channel.waitclose(30)
    assert "line 3, in main" in info.value.formatted and "KeyError: 'far'" in info.value.formatted


def test_far_async_sender_held_back_by_the_window_does_not_stop_the_loop(group: execwire.Group) -> None:
    gw = group.makegateway("popen")
    flood = gw.remote_exec("""
async def main(channel):
    for i in range(8):
        await channel.send(bytes(2 * 1024 * 1024))  # 16 MB: twice the window
    await channel.send("flood done")
""")
    ticker = gw.remote_exec("""
async def main(channel):
    await channel.send("tick")
""")
    assert ticker.receive(30) == "tick"  # the loop runs while the flood waits for credit
    sizes = [len(flood.receive(30)) for _ in range(8)]
    assert sizes == [2 * 1024 * 1024] * 8 and flood.receive(30) == "flood done"


def test_far_async_from_the_asyncio_face() -> None:
    async def main() -> None:
        gw = await aio.makegateway("popen")
        channels = [await gw.remote_exec(doubler) for _ in range(10)]
        for number, channel in enumerate(channels):
            await channel.send(number)
        assert [await channel.receive(30) for channel in channels] == [2 * n for n in range(10)]
        await gw.exit()

    asyncio.run(asyncio.wait_for(main(), 50))


def test_an_async_generator_is_refused_by_name(group: execwire.Group) -> None:
    async def ticks(channel: Any) -> Any:
        yield 1

    with pytest.raises(ValueError, match="ticks.*async generator"):
        group.makegateway("popen").remote_exec(ticks)


def test_async_code_without_a_channel_parameter_is_refused(group: execwire.Group) -> None:
    async def nothing() -> None:
        pass

    with pytest.raises(ValueError, match="first parameter must receive the channel"):
        group.makegateway("popen").remote_exec(nothing)


def test_threaded_receive_with_timeout_zero_never_waits(group: execwire.Group) -> None:
    """What the far loop relies on: receive(0) returns an item, the end or TimeoutError at once (it once
    read with a deadline already passed, which select() refused, and then blocked in the read)."""
    import time

    gw = group.makegateway("popen")
    channel = gw.remote_exec("channel.send(1); channel.receive()")
    assert channel.receive(30) == 1
    for _ in range(200):
        started = time.monotonic()
        with pytest.raises(execwire.TimeoutError):
            channel.receive(0)
        assert time.monotonic() - started < 5  # not until the next item, which never comes
