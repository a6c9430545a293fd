"""execwire.aio through real processes: the shared scenarios on every transport, then asyncio's own
ways to cancel and time out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from async_scenarios import ECHO, SCENARIOS
from conftest import pid_gone, wait_until
from sshd import SshServer
from test_server import make_token_file

import execwire
import execwire.aio as aio

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd", "socket_server_fixture"]


def run(function: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``function()`` in a fresh loop, bounded (pytest-timeout cannot interrupt a stuck loop)."""
    async def bounded() -> Any:
        return await asyncio.wait_for(function(), 80)

    return asyncio.run(bounded())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_popen(name: str) -> None:
    run(lambda: SCENARIOS[name](aio, "popen"))


def test_cancelling_a_receive_loses_no_item() -> None:
    async def main() -> None:
        gw = await aio.makegateway("popen")
        channel = await gw.remote_exec("channel.send(channel.receive()); channel.send('second')")
        waiting = asyncio.ensure_future(channel.receive())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await channel.send("first")
        assert await channel.receive(30) == "first"
        assert await channel.receive(30) == "second"
        await gw.exit()

    run(main)


def test_cancellation_between_arrival_and_take_keeps_the_item() -> None:
    """Many receives cancelled at random moments: every item is received exactly once, in order."""
    async def main() -> None:
        gw = await aio.makegateway("popen")
        channel = await gw.remote_exec("for i in range(2000): channel.send(i)")
        got: list[int] = []
        while len(got) < 2000:
            try:
                got.append(await asyncio.wait_for(channel.receive(), 0.0005))
            except asyncio.TimeoutError:
                pass
        assert got == list(range(2000))
        await gw.exit()

    run(main)


def test_wait_for_and_asyncio_timeout_leave_the_channel_usable() -> None:
    async def main() -> None:
        gw = await aio.makegateway("popen")
        channel = await gw.remote_exec(ECHO)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(channel.receive(), 0.05)
        if hasattr(asyncio, "timeout"):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await channel.receive()
        await channel.send("after")
        assert await channel.receive(30) == "after"
        await gw.exit()

    run(main)


def test_loop_never_waits_for_a_far_side_that_stopped_reading() -> None:
    """A far side stopped (SIGSTOP): a send beyond the pipe waits without blocking the loop, and the
    window holds back a sender whose items the far code does not take."""
    async def main() -> None:
        gw = await aio.makegateway("popen")
        channel = await gw.remote_exec("import time; channel.send(channel.receive()); time.sleep(60)")
        await channel.send("ready")
        pid = (await gw.remote_info()).pid
        assert await channel.receive(30) == "ready"
        os.kill(pid, signal.SIGSTOP)
        try:
            sender = asyncio.ensure_future(channel.send(b"x" * (1024 * 1024)))  # more than the pipe holds
            for _ in range(5):
                await asyncio.sleep(0.01)  # the loop runs on
            assert not sender.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(sender, 30)  # written once the far side reads again
        blob = b"y" * (3 * 1024 * 1024)
        for _ in range(2):
            await channel.send(blob)  # 6 MB: within the window, though nobody takes them
        held = asyncio.ensure_future(channel.send(blob))
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert not held.done()  # beyond the window: it waits for credit that will not come
        held.cancel()
        await gw.exit(timeout=1.0)

    run(main)


def test_one_loop_thread_and_no_thread_per_waiting_call() -> None:
    async def main() -> None:
        before = threading.active_count()
        gws = [await aio.makegateway("popen") for _ in range(3)]
        channels = [await gw.remote_exec("channel.send(channel.receive())") for gw in gws for _ in range(30)]
        waiting = [asyncio.ensure_future(channel.receive()) for channel in channels]
        await asyncio.sleep(0.1)
        assert threading.active_count() <= before + 1  # at most asyncio's own worker from start-up
        for channel in channels:
            await channel.send(os.getpid())
        assert await asyncio.gather(*waiting) == [os.getpid()] * len(channels)
        for gw in gws:
            await gw.exit()

    run(main)


def test_cancelled_makegateway_leaves_no_process() -> None:
    async def main() -> None:
        before = set(live_children())  # a session's sshd or server may be our children too
        task = asyncio.ensure_future(aio.makegateway("popen//python=sh -c 'sleep 30'"))
        await asyncio.sleep(0.3)
        assert set(live_children()) - before, "the far command should be running by now"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert wait_until(lambda: not set(live_children()) - before, 10), \
            "the cancelled start left its process running"

    run(main)


def live_children() -> list[int]:
    """Process ids of our children that have not ended."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


def test_same_error_classes_as_the_threaded_api() -> None:
    assert aio.RemoteError is execwire.RemoteError
    assert aio.TimeoutError is execwire.TimeoutError
    assert aio.GatewayLostError is execwire.GatewayLostError


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_via(name: str) -> None:
    run(lambda: SCENARIOS[name](aio, "popen//via=middle"))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_ssh(name: str, sshd: SshServer) -> None:
    run(lambda: SCENARIOS[name](aio, sshd.spec()))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_socket(name: str, socket_spec: str) -> None:
    run(lambda: SCENARIOS[name](aio, socket_spec))


def test_ssh_errors_are_the_threaded_ones(sshd: SshServer) -> None:
    async def main() -> None:
        with pytest.raises(execwire.HostNotFound, match="nosuchhost.invalid"):
            await aio.makegateway("ssh=nosuchhost.invalid//timeout=10")
        with pytest.raises(execwire.AuthenticationError):
            await aio.makegateway(f"ssh=-o IdentitiesOnly=yes -i /dev/null -p {sshd.port} "
                                  f"-o UserKnownHostsFile={sshd.known_hosts} nobody@{sshd.host}")

    run(main)


def test_socket_errors_are_the_threaded_ones(socket_spec: str, tmp_path: Path) -> None:
    async def main() -> None:
        wrong = make_token_file(tmp_path, "a-wrong-token-that-is-long-enough-0123456789")
        with pytest.raises(execwire.AuthenticationError):
            await aio.makegateway(socket_spec.split("//")[0] + f"//token_file={wrong}")
        with pytest.raises(execwire.HostNotFound):
            await aio.makegateway(f"socket=127.0.0.1:1//token_file={wrong}")

    run(main)


def test_prefixes_run_through_the_same_launch(tmp_path: Path) -> None:
    """exec= (a command prefix ending in the far Python): its stderr is collected like ssh's."""
    run(lambda: SCENARIOS["round_trips_and_exit"](aio, f"popen//exec=/usr/bin/env {sys.executable}"))

    async def missing() -> None:
        with pytest.raises(execwire.GatewayStartError, match="no-such-tool"):
            await aio.makegateway("popen//exec=no-such-tool python3")

    run(missing)


def test_installvia_starts_a_server_inside_the_group_and_stops_it() -> None:
    async def main() -> None:
        async with aio.Group(["popen//id=host"]) as group:
            host_pid = (await group["host"].remote_info()).pid
            gw = await group.makegateway("socket//installvia=host")
            channel = await gw.remote_exec("import os; channel.send((os.getpid(), os.getppid()))")
            pid, parent = await channel.receive(30)
            assert pid != host_pid and parent == host_pid  # started by the server inside gateway "host"
            host, _, port = gw._link.stream.address.rpartition(":")
            await gw.exit()
            assert wait_until(lambda: pid_gone(pid), 10)
            for _ in range(500):  # the loop must run meanwhile: it closes the server's control channel
                if not accepts(host, int(port)):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the server outlived its gateway")
            with pytest.raises(execwire.GatewayStartError, match="names no gateway"):
                await group.makegateway("socket//installvia=nowhere")
            with pytest.raises(ValueError, match="via='nowhere'.*names no gateway"):
                await group.makegateway("popen//via=nowhere")

    run(main)


def accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_a_missing_loop_is_refused_by_name() -> None:
    with pytest.raises(RuntimeError, match="inside a running asyncio loop"):
        aio.Group(["popen"])._get_backend()
