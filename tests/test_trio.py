"""execwire.trio through real processes: the shared scenarios (async_scenarios.py) under trio, then
trio's own ways to cancel and time out.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from async_scenarios import ECHO, SCENARIOS
from sshd import SshServer

import execwire

trio = pytest.importorskip("trio")
import execwire.trio as etrio  # noqa: E402 - only once trio is known to be there

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd", "socket_server_fixture"]


def run(function: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``function()`` under trio, bounded (pytest-timeout cannot interrupt a stuck loop)."""
    async def bounded() -> Any:
        with trio.fail_after(80):
            return await function()

    return trio.run(bounded)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_popen(name: str) -> None:
    run(lambda: SCENARIOS[name](etrio, "popen"))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_via(name: str) -> None:
    run(lambda: SCENARIOS[name](etrio, "popen//via=middle"))


@pytest.mark.parametrize("name", ["round_trips_and_exit", "far_killed_mid_receive_is_gateway_lost"])
def test_ssh(name: str, sshd: SshServer) -> None:
    run(lambda: SCENARIOS[name](etrio, sshd.spec()))


@pytest.mark.parametrize("name", ["round_trips_and_exit", "errors_are_the_threaded_classes",
                                  "far_killed_mid_receive_is_gateway_lost"])
def test_socket(name: str, socket_spec: str) -> None:
    run(lambda: SCENARIOS[name](etrio, socket_spec))


def test_a_cancelled_receive_loses_no_item() -> None:
    async def main() -> None:
        gw = await etrio.makegateway("popen")
        channel = await gw.remote_exec("channel.send(channel.receive()); channel.send('second')")
        with trio.move_on_after(0.05) as scope:
            await channel.receive()
        assert scope.cancelled_caught
        await channel.send("first")
        assert await channel.receive(30) == "first"
        assert await channel.receive(30) == "second"
        await gw.exit()

    run(main)


def test_cancel_scopes_at_random_moments_lose_nothing() -> None:
    async def main() -> None:
        gw = await etrio.makegateway("popen")
        channel = await gw.remote_exec("for i in range(2000): channel.send(i)")
        got: list[int] = []
        while len(got) < 2000:
            with trio.move_on_after(0.0005):
                got.append(await channel.receive())
        assert got == list(range(2000))
        await gw.exit()

    run(main)


def test_fail_after_and_nurseries_of_receivers() -> None:
    async def main() -> None:
        gw = await etrio.makegateway("popen")
        channel = await gw.remote_exec(ECHO)
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.05):
                await channel.receive()
        channels = [await gw.remote_exec("channel.send(channel.receive())") for _ in range(20)]
        got: list[int] = []

        async def take(each: Any) -> None:
            got.append(await each.receive(30))

        before = threading.active_count()
        async with trio.open_nursery() as nursery:
            for each in channels:
                nursery.start_soon(take, each)
            await trio.sleep(0.05)
            assert threading.active_count() <= before  # waiting takes no thread
            for number, each in enumerate(channels):
                await each.send(number)
        assert sorted(got) == list(range(20))
        await channel.send("after")
        assert await channel.receive(30) == "after"
        await gw.exit()

    run(main)


def test_a_stopped_far_side_does_not_block_trio() -> None:
    async def main() -> None:
        gw = await etrio.makegateway("popen")
        pid = (await gw.remote_info()).pid
        channel = await gw.remote_exec("channel.receive()")
        os.kill(pid, signal.SIGSTOP)
        try:
            with trio.move_on_after(0.1) as scope:
                await channel.send(b"x" * (1024 * 1024))  # more than the pipe holds
            assert scope.cancelled_caught  # the send waited, trio did not
        finally:
            os.kill(pid, signal.SIGCONT)
        await gw.exit(timeout=1.0)

    run(main)


def test_same_error_classes_as_the_threaded_api() -> None:
    import execwire.aio as aio

    assert etrio.RemoteError is execwire.RemoteError
    assert etrio.GatewayLostError is execwire.GatewayLostError
    assert sorted(etrio.__all__) == sorted(aio.__all__)  # one surface, two loops
    for name in etrio.__all__:
        assert hasattr(etrio, name) and hasattr(aio, name), name
        if name not in ("Group", "makegateway"):
            assert getattr(etrio, name) is getattr(aio, name), f"{name} should be the shared one"


def test_the_wrong_face_for_the_loop_says_which_to_use() -> None:
    import asyncio

    import execwire.aio as aio

    async def asyncio_face_under_trio() -> None:
        with pytest.raises(RuntimeError, match="under trio use execwire.trio"):
            await aio.makegateway("popen")

    run(asyncio_face_under_trio)

    async def trio_face_under_asyncio() -> None:
        with pytest.raises(RuntimeError, match="under asyncio use execwire.aio"):
            await etrio.makegateway("popen")

    asyncio.run(trio_face_under_asyncio())
