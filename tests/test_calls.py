"""Calls by reference: gw.call(func, ...) runs an importable function on the far side."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import call_targets
import pytest
from conftest import wait_until

import execwire
from execwire.calls import CallError

pytestmark = pytest.mark.timeout(60)


def test_module_functions_static_and_class_methods(gw: execwire.Gateway) -> None:
    assert gw.call(call_targets.add, 2, b=3) == 5
    assert gw.call(call_targets.far_pid) == gw._rinfo().pid
    assert gw.call(call_targets.Tools.twice, 4) == 8
    assert gw.call(call_targets.Tools.scaled, 4) == 40
    assert gw.call(os.getpid) == gw._rinfo().pid  # a builtin of the far side's own os module
    assert "call_targets" in gw._import_service.sent  # type: ignore[attr-defined]  # it came by forwarding


def test_call_async_returns_a_future(gw: execwire.Gateway) -> None:
    futures = [gw.call_async(call_targets.sleep_then, 0.05, number) for number in range(20)]
    assert all(isinstance(future, concurrent.futures.Future) for future in futures)
    done, _ = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 20
    assert [future.result() for future in futures] == list(range(20))


def test_a_far_exception_is_a_remote_error_with_the_far_traceback(gw: execwire.Gateway) -> None:
    with pytest.raises(execwire.RemoteError) as caught:
        gw.call(call_targets.fail, "no good")
    assert caught.value.type_name == "ValueError"
    assert "ValueError: no good" in caught.value.formatted
    assert 'call_targets.py", line 16, in fail' in caught.value.formatted
    assert isinstance(gw.call_async(call_targets.fail, "x").exception(30), execwire.RemoteError)


def test_lambdas_closures_and_bound_methods_are_refused_clearly(gw: execwire.Gateway) -> None:
    with pytest.raises(CallError, match="cannot call a lambda by reference.*define it with def at module level"):
        gw.call(lambda: 1)
    with pytest.raises(CallError, match=r"outer\.<locals>\.inner.*defined inside another function \(it uses scale"):
        gw.call(call_targets.outer(), 2)
    with pytest.raises(CallError, match="bound to an instance of Tools"):
        gw.call(call_targets.Tools().method)
    assert isinstance(CallError("x"), ValueError)


def test_an_unsendable_result_is_a_dump_error_naming_the_place(gw: execwire.Gateway) -> None:
    with pytest.raises(execwire.DumpError) as caught:
        gw.call(call_targets.unsendable)
    message = str(caught.value)
    assert "the result of unsendable on gateway" in message and "object" in message
    assert "['bad'][0]" in message, message


def test_an_unsendable_argument_is_refused_before_anything_is_sent(gw: execwire.Gateway) -> None:
    with pytest.raises(execwire.DumpError, match="the arguments of the call of add cannot be sent"):
        gw.call(call_targets.add, object())


def test_a_far_side_killed_mid_call_fails_the_future(group: execwire.Group) -> None:
    gw = group.makegateway("popen")
    pid = gw.call(call_targets.far_pid)
    future = gw.call_async(call_targets.sleep_then, 60, "never")
    assert wait_until(lambda: gw.remote_status().numexecuting >= 1, 10)
    os.kill(pid, 9)
    with pytest.raises(execwire.GatewayLostError):
        future.result(timeout=30)
    with pytest.raises(execwire.GatewayLostError):
        gw.call(call_targets.add, 1)


def run_script(tmp_path: Path, text: str) -> str:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=50)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_function_of_the_main_script_travels_with_the_script(tmp_path: Path) -> None:
    out = run_script(tmp_path, """\
        import collections
        import execwire

        COUNTS = collections.Counter("abracadabra")

        def most_common(n):
            return COUNTS.most_common(n)

        if __name__ == "__main__":
            with execwire.Group(["popen"]) as group:
                print(group[0].call(most_common, 1))
        """)
    assert out == "[('a', 5)]\n"


def test_a_main_function_without_a_script_ships_its_source(tmp_path: Path) -> None:
    # as the docs' examples run: code exec'd in a namespace named __main__, from `python -c`
    block = tmp_path / "block.py"
    block.write_text(textwrap.dedent("""\
        import os
        import execwire

        LIMIT = 3

        def pid_and_double(x):
            return os.getpid() != 0, 2 * x

        def uses_a_global():
            return LIMIT

        with execwire.Group(["popen"]) as group:
            print(group[0].call(pid_and_double, 4))
            try:
                group[0].call(uses_a_global)
            except ValueError as exc:
                print(exc)
        """), encoding="utf-8")
    code = "import sys; exec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'), {'__name__': '__main__'})"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code, str(block)], capture_output=True, text=True, env=env,
                            timeout=50)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "(True, 8)"
    assert "uses the global name LIMIT; move it to a module" in second


def test_calls_on_the_main_thread_only_exec_model(group: execwire.Group) -> None:
    gw = group.makegateway("popen//execmodel=main_thread_only")
    assert gw.call(call_targets.add, 1, 2) == 3
    assert gw.call(call_targets.far_pid) == gw._rinfo().pid
    assert group.map(call_targets.add, [1, 2], [3, 4]) == [4, 6]


def test_a_partial_travels_as_its_function_and_arguments(gw: execwire.Gateway) -> None:
    add_ten = functools.partial(functools.partial(call_targets.add, b=10))
    assert gw.call(add_ten, 5) == 15
    assert gw.call(functools.partial(call_targets.add, 1), b=2) == 3
    with execwire.Executor(["popen"]) as pool:
        assert list(pool.map(add_ten, [1, 2], chunksize=2)) == [11, 12]
    with pytest.raises(CallError, match="lambda"):
        gw.call(functools.partial(lambda x: x, 1))


def test_calls_from_many_threads_at_once(gw: execwire.Gateway) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as threads:
        results = list(threads.map(lambda n: gw.call(call_targets.sleep_then, 0.2, n), range(8)))
    assert results == list(range(8))
    assert len(gw._call_streams.idle) == 4  # type: ignore[attr-defined]  # the others were closed
    assert wait_until(lambda: gw.remote_status().numexecuting <= 4 + 1, 10)


def test_the_first_call_from_a_callback_of_the_same_gateway_is_refused(gw: execwire.Gateway) -> None:
    outcome: list[object] = []

    def callback(item: object) -> None:
        try:
            outcome.append(gw.call(call_targets.add, 1))
        except RuntimeError as exc:
            outcome.append(exc)
        outcome.append(gw.call_async(call_targets.add, 1, 1))

    gw.remote_exec("channel.send(1)").setcallback(callback)
    assert wait_until(lambda: len(outcome) == 2, 10)
    assert "use call_async() there, or make a call before" in str(outcome[0])
    assert outcome[1].result(30) == 2  # type: ignore[attr-defined]
    outcome.clear()
    gw.remote_exec("channel.send(1)").setcallback(callback)  # calls can start now: call() works there
    assert wait_until(lambda: len(outcome) == 2, 10)
    assert outcome[0] == 1 and outcome[1].result(30) == 2  # type: ignore[attr-defined]


def test_a_main_module_run_with_dash_m_is_called_by_its_name(tmp_path: Path) -> None:
    package = tmp_path / "tool"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def twice(x):\n    return 2 * x\n")
    (package / "cli.py").write_text(textwrap.dedent("""\
        import execwire
        from .helpers import twice

        def work(x):
            return twice(x) + 1

        if __name__ == "__main__":
            with execwire.Group(["popen//chdir=elsewhere"]) as group:
                print(group[0].call(work, 20))
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-m", "tool.cli"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=50)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "41\n"
