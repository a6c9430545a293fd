"""Calls by reference, import forwarding, far logging and far breakpoint() on the async faces.

Each test runs under asyncio (execwire.aio) and under trio (execwire.trio), with real popen
gateways, through ssh (tests/sshd.py) and via= in an async Group. The rules and errors are the
threaded API's (test_calls.py, test_imports.py, test_remote_logging.py): these check that the
async faces keep them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import call_targets
import pytest
import pythons
from forwarding import Packages, write_shop
from sshd import SshServer

import execwire
import execwire.aio as aio
from execwire.calls import CallError

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd", "forwarding"]


class Face:
    """One async face: its module, how to run a main function in its loop, how to bound a wait."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "aio":
            self.module: ModuleType = aio
        else:
            pytest.importorskip("trio")
            import execwire.trio as etrio

            self.module = etrio

    def run(self, function: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``function()`` in a fresh loop, bounded (pytest-timeout cannot interrupt a stuck loop)."""
        if self.name == "aio":
            async def bounded() -> Any:
                return await asyncio.wait_for(function(), 80)

            return asyncio.run(bounded())
        import trio

        async def bounded_trio() -> Any:
            with trio.fail_after(80):
                return await function()

        return trio.run(bounded_trio)

    async def cancelled_after(self, seconds: float, awaitable: Callable[[], Awaitable[Any]]) -> bool:
        """Run it, cancelled after ``seconds``: True if it was cancelled."""
        if self.name == "aio":
            try:
                await asyncio.wait_for(awaitable(), seconds)
            except asyncio.TimeoutError:
                return True
            return False
        import trio

        with trio.move_on_after(seconds) as scope:
            await awaitable()
        return bool(scope.cancelled_caught)


@pytest.fixture(params=["aio", "trio"])
def face(request: pytest.FixtureRequest) -> Face:
    return Face(request.param)


def far_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if hasattr(record, "gateway")]


async def eventually(gw: Any, check: Callable[[], Awaitable[bool]], timeout: float = 20) -> bool:
    """Whether ``check()`` comes true within ``timeout`` seconds (looked at every 20 ms in the loop)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await gw._backend.sleep(0.02)
    return True


def test_calls_follow_the_threaded_rules(face: Face) -> None:
    async def main() -> None:
        async with await face.module.makegateway("popen") as gw:
            pid = (await gw.remote_info()).pid
            assert await gw.call(call_targets.add, 2, b=3) == 5
            assert await gw.call(call_targets.Tools.twice, 4) == 8
            assert await gw.call(call_targets.Tools.scaled, 4) == 40
            assert await gw.call(os.getpid) == pid  # the far side's own os module
            assert await gw.call(functools.partial(call_targets.add, 1), b=2) == 3  # a partial travels whole
            assert "call_targets" in gw._import_service.sent  # it came by import forwarding
            with pytest.raises(execwire.RemoteError) as caught:
                await gw.call(call_targets.fail, "no good")
            assert caught.value.type_name == "ValueError"
            assert 'call_targets.py", line 16, in fail' in caught.value.formatted
            with pytest.raises(face.module.CallError, match="cannot call a lambda by reference"):
                await gw.call(lambda: 1)
            assert face.module.CallError is CallError and face.module.DumpError is execwire.DumpError
            with pytest.raises(CallError, match=r"outer\.<locals>\.inner.*defined inside another function"):
                await gw.call(call_targets.outer(), 2)
            with pytest.raises(CallError, match="bound to an instance of Tools"):
                await gw.call(call_targets.Tools().method)
            with pytest.raises(execwire.DumpError, match=r"the result of unsendable on gateway .*\['bad'\]\[0\]"):
                await gw.call(call_targets.unsendable)
            with pytest.raises(execwire.DumpError, match="the arguments of the call of add cannot be sent"):
                await gw.call(call_targets.add, object())
            assert await gw.call(call_targets.add, 1, 1) == 2  # after every failure the gateway serves on

    face.run(main)


BARRIER = """\
    import os, time
    def meet(folder, number, count):
        open(os.path.join(folder, str(number)), "w").close()
        deadline = time.monotonic() + 10
        while len(os.listdir(folder)) < count:  # every call of the group arrives, or none waits for ever
            if time.monotonic() > deadline:
                return "alone"
            time.sleep(0.01)
        return number
    """


def test_calls_awaited_side_by_side_run_side_by_side(face: Face, packages: Packages, tmp_path: Path) -> None:
    packages.write("barrier.py", BARRIER)
    import barrier  # type: ignore[import-not-found]

    count = 6

    async def main() -> None:
        async with await face.module.makegateway("popen") as gw:
            results: list[Any] = [None] * count

            async def one(n: int) -> None:
                results[n] = await gw.call(barrier.meet, str(tmp_path / "met"), n, count)

            (tmp_path / "met").mkdir()
            if face.name == "aio":
                await asyncio.gather(*(one(n) for n in range(count)))
            else:
                import trio

                async with trio.open_nursery() as nursery:
                    for n in range(count):
                        nursery.start_soon(one, n)
            assert results == list(range(count))  # each met all the others: they ran at the same time

            async def idle_loops_kept() -> bool:
                return (await gw.remote_status()).numexecuting == 4

            assert await eventually(gw, idle_loops_kept)  # kept for the next calls; the others end

    face.run(main)


def test_a_cancelled_call_leaves_nothing_for_the_next(face: Face) -> None:
    async def main() -> None:
        async with await face.module.makegateway("popen") as gw:
            assert await gw.call(call_targets.add, 0) == 0
            assert await face.cancelled_after(0.3, lambda: gw.call(call_targets.sleep_then, 1.0, "late"))
            for number in range(5):  # the late answer comes on the abandoned loop, to nobody
                assert await gw.call(call_targets.sleep_then, 0.3, number) == number

    face.run(main)


def test_a_far_side_killed_mid_call_is_gateway_lost(face: Face, packages: Packages, tmp_path: Path) -> None:
    packages.write("slow.py", """\
        import time
        def announce_then_sleep(path):
            open(path, "w").close()
            time.sleep(60)
        """)
    import slow  # type: ignore[import-not-found]

    started = tmp_path / "started"

    async def main() -> None:
        gw = await face.module.makegateway("popen")
        pid = await gw.call(call_targets.far_pid)

        async def kill_once_running() -> None:
            async def running() -> bool:
                return started.exists()

            await eventually(gw, running)
            os.kill(pid, signal.SIGKILL)

        gw._backend.spawn(kill_once_running, "kill")
        with pytest.raises(execwire.GatewayLostError):
            await gw.call(slow.announce_then_sleep, str(started))
        assert started.exists()
        with pytest.raises(execwire.GatewayLostError):
            await gw.call(call_targets.add, 1)
        await gw.exit()

    face.run(main)


def test_calls_on_the_main_thread_only_exec_model(face: Face) -> None:
    async def main() -> None:
        async with await face.module.makegateway("popen//execmodel=main_thread_only") as gw:
            assert [await gw.call(call_targets.add, n, 1) for n in range(3)] == [1, 2, 3]
            with pytest.raises(execwire.RemoteError, match="ValueError: once"):
                await gw.call(call_targets.fail, "once")
            channel = await gw.remote_exec("channel.send(6 * 7)")
            assert await channel.receive(30) == 42

    face.run(main)


def test_shipped_code_imports_controller_only_packages(face: Face, packages: Packages) -> None:
    write_shop(packages)

    async def main() -> None:
        async with await face.module.makegateway("popen//imports=on") as gw:
            channel = await gw.remote_exec("""
                import importlib.resources
                import shop, shop.later
                channel.send([shop.NAME, shop.prices.price("tea"), shop.count(), shop.later.WHEN])
                channel.send(importlib.resources.files("shop").joinpath("data", "greeting.txt").read_text())
            """)
            assert await channel.receive(30) == ["shop", 300, 3, "later"]
            assert await channel.receive(30) == "hello from the controller\n"
            service = gw._import_service
            # what shop's top level imports went along with it: one request for the whole package
            assert {"shop", "shop.prices", "shop.stock", "shop.util.money"} <= service.sent
            import shop.prices

            assert await gw.call(shop.prices.price, "coffee") == 600

    face.run(main)


def test_the_import_policy_of_the_spec_and_of_forward_imports(face: Face, packages: Packages) -> None:
    write_shop(packages)
    packages.write("secret.py", "KEY = 1\n")
    denied = "import secret"

    async def main() -> None:
        async with face.module.Group(["popen//imports=on//imports_deny=secret", "popen//imports=on//imports_allow=shop",
                                      "popen//imports=off", "popen"]) as group:
            deny, allow, off, later = list(group)
            with pytest.raises(execwire.RemoteError, match=r"'secret'.*denies it \(deny=secret\)"):
                await (await deny.remote_exec(denied)).waitclose(30)
            await (await deny.remote_exec("import shop")).waitclose(30)
            with pytest.raises(execwire.RemoteError, match=r"does not allow it \(allow=shop\)"):
                await (await allow.remote_exec(denied)).waitclose(30)
            import shop.stock

            with pytest.raises(execwire.RemoteError, match="No module named 'shop'"):
                await off.call(shop.stock.count)
            await later.forward_imports(allow="shop")
            assert await later.call(shop.stock.count) == 3
            with pytest.raises(execwire.RemoteError, match="does not allow it"):
                await (await later.remote_exec(denied)).waitclose(30)
            with pytest.raises(RuntimeError, match="forwards imports already"):
                await later.forward_imports(deny="secret")

    face.run(main)


def test_far_log_records_arrive_as_log_records(face: Face, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with face.module.Group(["popen//id=lg", "popen//id=quiet//logging=off",
                                      "popen//id=loud//logging=ERROR"]) as group:
            for gw in group:
                channel = await gw.remote_exec("""
                    import logging
                    logging.getLogger("far.app").info("%d apples", 3, extra={"order": 17})
                    logging.getLogger("far.app").error("bad", exc_info=ValueError("v"))
                    channel.send(logging.getLogger().getEffectiveLevel())
                """)
                await channel.receive(30)

            async def three_came() -> bool:
                return len(far_records(caplog)) >= 3

            assert await eventually(group[0], three_came)

    face.run(main)
    records = far_records(caplog)
    by_gateway = {gateway: [r for r in records if r.gateway == gateway]  # type: ignore[attr-defined]
                  for gateway in ("lg", "quiet", "loud")}
    info, error = by_gateway["lg"]
    assert (info.name, info.levelno, info.getMessage(), info.order) == ("far.app", logging.INFO, "3 apples", 17)  # type: ignore[attr-defined]
    assert error.exc_text is not None and "ValueError: v" in error.exc_text
    assert by_gateway["quiet"] == []
    assert [record.getMessage() for record in by_gateway["loud"]] == ["bad"]


def test_without_a_terminal_a_far_breakpoint_fails_at_once_saying_why(face: Face) -> None:
    async def main() -> None:
        async with await face.module.makegateway("popen") as gw:
            channel = await gw.remote_exec("""
                try:
                    breakpoint()
                except Exception as exc:
                    channel.send((type(exc).__name__, str(exc)))
                import pdb
                try:
                    pdb.set_trace()
                except Exception as exc:
                    channel.send(type(exc).__name__)
                breakpoint()
            """)
            name, message = await channel.receive(30)
            assert name == "DebuggerUnavailable"
            assert "pdb cannot start on gateway gw0" in message and "is not a terminal" in message
            assert "PYTHONBREAKPOINT=0" in message
            assert await channel.receive(30) == "DebuggerUnavailable"
            with pytest.raises(execwire.RemoteError, match="DebuggerUnavailable"):
                await channel.waitclose(30)

    face.run(main)


BREAK_AND_GO_ON = '''
    import execwire.{face} as face

    async def main():
        async with face.Group(["popen//id=debugged", "popen//id=other"]) as group:
            channel = await group["debugged"].remote_exec("x = 41\\nbreakpoint()\\ny = x + 1\\nchannel.send(y)\\n")
            # while the session waits at its prompt, the loop and the other gateway go on
            other = await group["other"].remote_exec("channel.send(7)")
            print("other says %s" % await other.receive(30), flush=True)  # one write: the header may come between
            print("debugged sends %s" % await channel.receive(60), flush=True)

    {run}
'''


@pytest.mark.parametrize("name", ["aio", "trio"])
def test_a_far_breakpoint_opens_pdb_on_the_terminal_while_the_loop_goes_on(name: str, tmp_path: Path) -> None:
    face = Face(name)  # skips without trio
    from test_cli import Terminal

    run = "import asyncio; asyncio.run(main())" if name == "aio" else "import trio; trio.run(main)"
    script = tmp_path / "controller.py"
    script.write_text(textwrap.dedent(BREAK_AND_GO_ON).format(face=face.module.__name__.rpartition(".")[2], run=run))
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXECWIRE_")}
    env.update(HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null")
    terminal = Terminal([sys.executable, str(script)], env, cwd=tmp_path)
    try:
        header = terminal.read_until("(Pdb) ")
        assert "execwire: pdb on gateway debugged (breakpoint, pid " in header and "-> y = x + 1" in header
        if "other says 7" not in header:  # the other gateway answers before anything is typed
            terminal.read_until("other says 7")
        terminal.write("p x\n")
        assert "41\n" in terminal.read_until("(Pdb) ")
        terminal.write("p x.bit_len\t\n")  # Tab asks the far pdb
        assert "p x.bit_length\n<built-in method bit_length" in terminal.read_until("(Pdb) ")
        terminal.write("p x")
        terminal.write("\x03")  # Ctrl-C at the prompt: what was typed goes, pdb prompts again
        assert "^C\n--KeyboardInterrupt--\n(Pdb) " in terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        terminal.read_until("debugged sends 42")
        assert terminal.wait() == 0
    finally:
        terminal.close()


TWO_SESSIONS = '''
    import asyncio
    import execwire.aio as face

    async def main():
        async with face.Group(["popen//id=first", "popen//id=second"]) as group:
            first = await group["first"].remote_exec("x = 1\\nbreakpoint()\\nchannel.send(x)\\n")
            second = await group["second"].remote_exec("x = 2\\nbreakpoint()\\nchannel.send(x)\\n")
            print("results %s" % sorted([await first.receive(60), await second.receive(60)]), flush=True)

    asyncio.run(main())
'''


def test_sessions_of_several_gateways_take_the_terminal_one_after_another(tmp_path: Path) -> None:
    from test_cli import Terminal

    script = tmp_path / "controller.py"
    script.write_text(textwrap.dedent(TWO_SESSIONS))
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXECWIRE_")}
    env.update(HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null")
    terminal = Terminal([sys.executable, str(script)], env, cwd=tmp_path)
    try:
        seen = set()
        for _ in range(2):
            header = terminal.read_until("(Pdb) ")
            assert header.count("execwire: pdb on gateway") == 1  # one session at a time
            seen.add("first" if "gateway first" in header else "second")
            terminal.write("p x * 10\n")
            assert ("10\n" if "gateway first" in header else "20\n") in terminal.read_until("(Pdb) ")
            terminal.write("c\n")
        assert seen == {"first", "second"}
        terminal.read_until("results [1, 2]")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def test_breakpoint_skipped_with_pythonbreakpoint_0(face: Face) -> None:
    async def main() -> None:
        async with await face.module.makegateway("popen//env:PYTHONBREAKPOINT=0") as gw:
            channel = await gw.remote_exec("breakpoint(); channel.send('went on')")
            assert await channel.receive(30) == "went on"

    face.run(main)


def test_group_map_spreads_calls_and_keeps_the_order(face: Face) -> None:
    async def main() -> None:
        async with face.module.Group(["popen", "popen"]) as group:
            assert await group.map(call_targets.square, range(50), chunksize=3, concurrency=2) == [
                n * n for n in range(50)]
            assert await group.map(call_targets.add, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
            pids = {(await gw.remote_info()).pid for gw in group}
            # every worker takes its first item before any answer comes: both gateways work
            assert set(await group.map(call_targets.pid_after, [0.0] * 6)) == pids
            with pytest.raises(execwire.RemoteError, match="ValueError: first"):
                await group.map(call_targets.fail, ["first", "second", "third"])
            with pytest.raises(CallError, match="lambda"):
                await group.map(lambda x: x, [1])
            with pytest.raises(ValueError, match="concurrency must be at least 1"):
                await group.map(call_targets.square, [1], concurrency=0)
            assert await group.map(call_targets.square, []) == []
            assert await group.map(call_targets.square, [4]) == [16]  # the group serves on after failures

    face.run(main)


def test_over_ssh(face: Face, sshd: SshServer, packages: Packages, caplog: pytest.LogCaptureFixture) -> None:
    write_shop(packages)
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with await face.module.makegateway(sshd.spec("id=remote")) as gw:
            import shop.prices

            assert await gw.call(shop.prices.price, "ab") == 200
            channel = await gw.remote_exec("import logging, shop; logging.getLogger('far').warning(shop.NAME); "
                                           "channel.send(1)")
            assert await channel.receive(30) == 1
            with pytest.raises(execwire.RemoteError, match="ValueError: over ssh"):
                await gw.call(call_targets.fail, "over ssh")

    face.run(main)
    assert [(r.gateway, r.getMessage()) for r in far_records(caplog)] == [("remote", "shop")]  # type: ignore[attr-defined]


def test_via_a_gateway_of_an_async_group(face: Face, packages: Packages, caplog: pytest.LogCaptureFixture) -> None:
    write_shop(packages)
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with face.module.Group(["popen//id=middle", "popen//id=behind//via=middle//imports=on"]) as group:
            behind = group["behind"]
            import shop.prices

            assert await behind.call(shop.prices.price, "abc") == 300
            channel = await behind.remote_exec("import logging, shop.later; "
                                               "logging.getLogger('far').warning(shop.later.WHEN); channel.send(1)")
            assert await channel.receive(30) == 1
            assert await group.map(call_targets.square, range(10)) == [n * n for n in range(10)]
            assert "shop.later" in behind._import_service.sent
            assert group["middle"]._import_service is None or "shop" not in group["middle"]._import_service.sent

    face.run(main)
    assert [(r.gateway, r.getMessage()) for r in far_records(caplog)] == [("behind", "later")]  # type: ignore[attr-defined]


def test_a_function_of_the_main_script_travels_with_the_script(face: Face, tmp_path: Path) -> None:
    script = tmp_path / "controller.py"
    run = "asyncio.run(main())" if face.name == "aio" else "import trio; trio.run(main)"
    script.write_text(textwrap.dedent(f"""\
        import asyncio, collections
        import execwire.{face.module.__name__.rpartition(".")[2]} as face

        COUNTS = collections.Counter("abracadabra")

        def most_common(n):
            return COUNTS.most_common(n)

        async def main():
            async with face.Group(["popen//chdir=/"]) as group:
                print(await group[0].call(most_common, 1), await group.map(most_common, [2]))

        if __name__ == "__main__":
            {run}
        """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[('a', 5)] [[('a', 5), ('b', 2)]]\n"


FIRST_TIME_SLOW = """\
    import os, time
    def square_once_slow(n, folder):
        first = not any(name.startswith("%d-" % n) for name in os.listdir(folder))
        open(os.path.join(folder, "%d-%d" % (n, os.getpid())), "w").close()
        if n == 0 and first:
            time.sleep(60)  # the first run of item 0 waits to be killed
        return n * n
    """


def test_group_map_runs_the_items_of_a_lost_gateway_elsewhere(face: Face, packages: Packages,
                                                              tmp_path: Path) -> None:
    packages.write("once.py", FIRST_TIME_SLOW)
    import once  # type: ignore[import-not-found]

    marks = tmp_path / "marks"
    marks.mkdir()

    async def main() -> None:
        async with face.module.Group(["popen", "popen"]) as group:
            async def kill_the_slow_one() -> None:
                async def started() -> bool:
                    return any(name.startswith("0-") for name in os.listdir(marks))

                await eventually(group[0], started)
                os.kill(int(next(name for name in os.listdir(marks) if name.startswith("0-"))[2:]), signal.SIGKILL)

            group[0]._backend.spawn(kill_the_slow_one, "killer")
            assert await group.map(once.square_once_slow, range(8), [str(marks)] * 8) == [n * n for n in range(8)]
            assert sorted(gw.state for gw in group) == ["closed", "up"]
            survivor = next(gw for gw in group if gw.state == "up")
            await survivor.exit()
            with pytest.raises(execwire.GatewayLostError, match=r"map\(\) of square_once_slow: no gateway is up"):
                await group.map(once.square_once_slow, [1], [str(marks)])

    face.run(main)
    runs_of_zero = [name for name in os.listdir(marks) if name.startswith("0-")]
    assert len(runs_of_zero) == 2  # killed once, run again on the other gateway


def test_group_map_with_retries_0_fails_with_the_lost_gateway(face: Face, packages: Packages, tmp_path: Path) -> None:
    packages.write("once.py", FIRST_TIME_SLOW)
    import once  # type: ignore[import-not-found]

    marks = tmp_path / "marks"
    marks.mkdir()

    async def main() -> None:
        async with face.module.Group(["popen"]) as group:
            async def kill_when_started() -> None:
                async def started() -> bool:
                    return any(name.startswith("0-") for name in os.listdir(marks))

                await eventually(group[0], started)
                os.kill(int(next(name for name in os.listdir(marks) if name.startswith("0-"))[2:]), signal.SIGKILL)

            group[0]._backend.spawn(kill_when_started, "killer")
            with pytest.raises(execwire.GatewayLostError):
                await group.map(once.square_once_slow, [0, 1], [str(marks)] * 2, retries=0)
            with pytest.raises(ValueError, match="retries must be 0 or more"):
                await group.map(once.square_once_slow, [0], [str(marks)], retries=-1)

    face.run(main)


@pytest.mark.parametrize("far", [interpreter for interpreter in pythons.matrix()
                                 if interpreter.name in ("3.6", "3.13", "pypy3")],
                         ids=lambda interpreter: interpreter.name)
def test_old_and_new_far_pythons(face: Face, far: pythons.Interpreter, packages: Packages,
                                 caplog: pytest.LogCaptureFixture) -> None:
    write_shop(packages)
    caplog.set_level(logging.INFO)

    async def main() -> None:
        async with await face.module.makegateway(f"popen//python={far.command}//imports=on") as gw:
            import shop.prices

            assert await gw.call(shop.prices.price, "abcd") == 400
            channel = await gw.remote_exec("import logging, shop; logging.getLogger('far').warning(shop.NAME); "
                                           "import sys; channel.send(sys.version_info[:2])")
            assert tuple(await channel.receive(30)) == far.version[:2]
            with pytest.raises(execwire.RemoteError, match="ValueError: old"):
                await gw.call(call_targets.fail, "old")

            async def record_came() -> bool:
                return bool(far_records(caplog))

            assert await eventually(gw, record_came)

    face.run(main)
    assert [(r.gateway, r.getMessage()) for r in far_records(caplog)] == [("gw0", "shop")]  # type: ignore[attr-defined]


def test_a_flood_of_far_records_arrives_whole_and_in_order(face: Face) -> None:
    kept: list[int] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(int(record.getMessage().split()[0]))

    handler = Keep()
    flood = logging.getLogger("flood")
    flood.addHandler(handler)
    flood.setLevel(logging.INFO)
    flood.propagate = False

    async def main() -> None:
        async with await face.module.makegateway("popen") as gw:
            # some 11 MB of records, more than a channel's credit (8 MiB): the far side waits for the loop
            channel = await gw.remote_exec("""
                import logging, threading
                log = logging.getLogger("flood")
                def burst(start):
                    for number in range(start, start + 10000):
                        log.info("%d %s", number, "padding" * 40)
                threads = [threading.Thread(target=burst, args=(start,)) for start in (0, 10000)]
                for thread in threads: thread.start()
                for thread in threads: thread.join()
                channel.send("done")
            """)
            assert await channel.receive(60) == "done"

            async def all_came() -> bool:
                return len(kept) >= 20000

            assert await eventually(gw, all_came, 60)

    try:
        face.run(main)
    finally:
        flood.removeHandler(handler)
        flood.propagate = True
        flood.setLevel(logging.NOTSET)
    assert sorted(kept) == list(range(20000))
    for start in (0, 10000):  # each far thread's records in the order it logged them
        assert [number for number in kept if start <= number < start + 10000] == list(range(start, start + 10000))


def test_missing_compiled_and_broken_modules_fail_clearly(face: Face, packages: Packages) -> None:
    packages.write(f"fastthing{sysconfig.get_config_var('EXT_SUFFIX')}", "not really a shared object: never loaded")
    packages.write("broken.py", "X = 1\nraise RuntimeError('broken at import')\n")

    async def main() -> None:
        async with await face.module.makegateway("popen//imports=on") as gw:
            with pytest.raises(execwire.RemoteError) as caught:
                await (await gw.remote_exec("import fastthing")).receive(30)
            assert caught.value.type_name == "ModuleNotFoundError"
            assert "compiled extension module" in str(caught.value)
            assert "install it on the far side (for example: pip install fastthing)" in str(caught.value)
            with pytest.raises(execwire.RemoteError, match="No module named 'no_such_module_anywhere'"):
                await (await gw.remote_exec("import no_such_module_anywhere")).receive(30)
            for _ in range(2):  # and again: not left half-imported
                with pytest.raises(execwire.RemoteError) as caught:
                    await (await gw.remote_exec("import broken")).receive(30)
                assert caught.value.type_name == "RuntimeError" and "broken at import" in str(caught.value)
                assert str(packages.root / "broken.py") in caught.value.formatted

    face.run(main)


def test_a_failure_while_answering_fails_the_far_import_at_once(face: Face, packages: Packages,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from execwire._async.imports import AsyncImportService

    packages.write("fine.py", "OK = True\n")
    packages.write("cursed.py", "OK = False\n")
    answer = AsyncImportService.replies_to

    def failing(self: AsyncImportService, request: Any) -> list[Any]:
        if request[:2] == ("find", "cursed"):
            raise RuntimeError("a bug while answering")
        return answer(self, request)

    monkeypatch.setattr(AsyncImportService, "replies_to", failing)

    async def main() -> None:
        async with await face.module.makegateway("popen//imports=on") as gw:
            with pytest.raises(execwire.RemoteError, match="the controller failed to serve cursed: RuntimeError: "
                                                           "a bug while answering"):
                await (await gw.remote_exec("import cursed")).receive(30)
            channel = await gw.remote_exec("import fine; channel.send(fine.OK)")
            assert await channel.receive(30) is True  # and the service answers on

    face.run(main)


PROBE = """
import logging
logging.getLogger("far.probe").debug("%s debug", channel.gateway.id)
logging.getLogger("far.probe").info("%s info", channel.gateway.id)
channel.send(logging.getLogger().level)
"""


def test_later_changes_of_the_root_level_reach_the_far_side_with_the_next_code_or_call(
        face: Face, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(logging.WARNING)

    async def main() -> None:
        async with face.module.Group(["popen//id=follows", "popen//logging=ERROR//id=fixed"]) as group:
            follows, fixed = group["follows"], group["fixed"]
            root.setLevel(logging.INFO)  # before the far side even imported logging
            assert await (await follows.remote_exec(PROBE)).receive(20) == logging.INFO
            root.setLevel(logging.DEBUG)
            assert await follows.call(call_targets.log_and_level, "call") == logging.DEBUG  # with a call too
            assert await (await fixed.remote_exec(PROBE)).receive(20) == logging.ERROR  # the spec's level stays
            await (await follows.remote_exec("import logging; logging.getLogger().setLevel(logging.CRITICAL)")
                   ).waitclose(20)
            root.setLevel(logging.INFO)
            assert await (await follows.remote_exec(PROBE)).receive(20) == logging.CRITICAL  # the far code's too
            for gateway in (follows, fixed):
                await (await gateway.remote_exec("import logging; logging.getLogger().critical('end')")).waitclose(20)

            async def all_came() -> bool:
                return len(far_records(caplog)) >= 5

            assert await eventually(follows, all_came)

    face.run(main)
    assert [(record.gateway, record.getMessage()) for record in far_records(caplog)] == [  # type: ignore[attr-defined]
        ("follows", "follows info"), ("follows", "call debug"), ("follows", "call info"), ("follows", "end"),
        ("fixed", "end")]
