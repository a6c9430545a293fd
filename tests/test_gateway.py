"""One popen gateway: remote info and status, spec keys, output, start-up failures, shutdown and loss."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import find_python, pid_gone, wait_until, write_wrapper

import execwire

pytestmark = pytest.mark.timeout(60)

PY27 = "/root/.pyenv/versions/2.7.18/bin/python"


# -- remote info and status ---------------------------------------------------------------------------
def test_rinfo_describes_the_far_interpreter(gw):
    info = gw._rinfo()
    assert info.pid != os.getpid()
    assert not pid_gone(info.pid)
    assert info.cwd == os.getcwd()
    assert os.path.realpath(info.executable) == os.path.realpath(sys.executable)
    assert info.version_info == tuple(sys.version_info)
    assert info.platform == sys.platform
    assert gw.remote_info().pid == info.pid
    far_pid = gw.remote_exec("import os; channel.send(os.getpid())").receive(timeout=10)
    assert far_pid == info.pid


def test_rinfo_update_sees_a_far_chdir(gw, tmp_path):
    before = gw._rinfo()
    gw.remote_exec("import os; os.chdir(channel.receive())").send(str(tmp_path))
    assert wait_until(lambda: gw._rinfo(update=True).cwd == str(tmp_path), 10)
    assert gw._rinfo().cwd == str(tmp_path)  # the cache holds the new answer
    assert gw._rinfo().pid == before.pid


def test_remote_status_counts_running_code_and_channels(gw):
    idle = gw.remote_status()
    assert idle.numexecuting == 0
    channels = [gw.remote_exec("channel.receive()") for _ in range(3)]
    assert wait_until(lambda: gw.remote_status().numexecuting == 3, 10)
    assert gw.remote_status().numchannels >= 3
    for channel in channels:
        channel.send(None)
        channel.waitclose(10)
    assert wait_until(lambda: gw.remote_status().numexecuting == 0, 10)
    assert isinstance(gw.remote_status().execqsize, int)


# -- shutdown and loss --------------------------------------------------------------------------------
def test_exit_is_idempotent_and_the_far_process_is_gone(group):
    gateway = group.makegateway()
    pid = gateway._rinfo().pid
    blocked = gateway.remote_exec("channel.receive()")
    started = time.monotonic()
    gateway.exit()
    gateway.exit()
    assert time.monotonic() - started < 5
    assert wait_until(lambda: pid_gone(pid), 5)
    assert gateway.state == "closed"
    assert gateway not in group
    with pytest.raises(EOFError):
        blocked.receive(timeout=5)
    with pytest.raises(execwire.Error):
        gateway.remote_exec("pass")


def test_exit_stops_far_code_that_never_yields(group):
    gateway = group.makegateway()
    pid = gateway._rinfo().pid
    gateway.remote_exec("while True: pass")
    started = time.monotonic()
    gateway.exit(timeout=1.0)
    assert time.monotonic() - started < 5
    assert wait_until(lambda: pid_gone(pid), 5)


def test_far_side_killed_wakes_a_blocked_receive_with_gateway_lost_error(gw):
    channel = gw.remote_exec("channel.receive()")
    pid = gw._rinfo().pid
    outcome: list[BaseException] = []
    finished = threading.Event()

    def receive() -> None:
        try:
            channel.receive(timeout=30)
        except BaseException as exc:  # noqa: B036 - we want whatever it is
            outcome.append(exc)
        finished.set()

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    assert finished.wait(10), "receive() still blocked after the far process was killed"
    assert time.monotonic() - started < 5
    assert isinstance(outcome[0], execwire.GatewayLostError), repr(outcome[0])
    assert isinstance(outcome[0], ConnectionError)
    with pytest.raises(execwire.GatewayLostError):
        gw.remote_exec("pass")
    with pytest.raises(execwire.GatewayLostError):
        channel.waitclose(1)


def _read_line(stream, timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line from the controller within {timeout} s"
    return stream.readline()


def test_far_process_exits_when_its_controller_is_killed(tmp_path):
    controller_code = textwrap.dedent("""
        import sys, time, execwire
        gw = execwire.makegateway()
        gw.remote_exec("import time\\nwhile True: time.sleep(0.05)")  # busy far code must not keep it alive
        print(gw._rinfo().pid, flush=True)
        time.sleep(60)
    """)
    controller = subprocess.Popen([sys.executable, "-c", controller_code], stdout=subprocess.PIPE, cwd=tmp_path)
    far_pid = None
    try:
        far_pid = int(_read_line(controller.stdout, 15))
        assert not pid_gone(far_pid)
        controller.kill()
        controller.wait(5)
        assert wait_until(lambda: pid_gone(far_pid), 5), f"far process {far_pid} outlived its controller"
    finally:
        controller.kill()
        controller.wait(5)
        controller.stdout.close()
        if far_pid is not None and not pid_gone(far_pid):
            os.kill(far_pid, signal.SIGKILL)


# -- spec keys ------------------------------------------------------------------------------------------
THREAD_NICE = """
import glob, os, threading
release = threading.Event()
extra = [threading.Thread(target=release.wait) for _ in range(3)]
for thread in extra:
    thread.start()
nice = {}
for path in glob.glob("/proc/%d/task/*/stat" % os.getpid()):
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    nice[int(path.split("/")[-2])] = int(fields[16])  # field 19 of stat: nice
release.set()
channel.send(nice)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc/PID/task (Linux)")
def test_nice_applies_to_every_thread_of_the_far_process(group):
    ours = os.nice(0)
    expected = min(ours + 5, 19)
    gateway = group.makegateway("popen//nice=5")
    nice = gateway.remote_exec(THREAD_NICE).receive(timeout=10)
    assert len(nice) >= 5, nice  # main, reader, output forwarder, exec thread, 3 extra
    assert set(nice.values()) == {expected}, nice


def test_chdir_is_created_when_missing(group, tmp_path):
    target = tmp_path / "made" / "by" / "spec"
    gateway = group.makegateway(f"popen//chdir={target}")
    assert gateway._rinfo().cwd == str(target)
    assert target.is_dir()
    assert gateway.remote_exec("import os; channel.send(os.getcwd())").receive(timeout=10) == str(target)


def test_a_chdir_that_another_far_side_makes_meanwhile_is_used(tmp_path, monkeypatch):
    """Gateways started side by side with the same missing chdir= race to make it (seen in the docs' examples)."""
    from execwire._far import boot

    target = tmp_path / "shared"
    real_isdir = os.path.isdir
    looks = []

    def isdir(path):  # the other far side makes it right after this one's first look
        looks.append(path)
        if len(looks) == 1:
            target.mkdir()
            return False
        return real_isdir(path)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(boot.os.path, "isdir", isdir)
    boot._change_directory(str(target))
    monkeypatch.undo()
    assert target.is_dir()


def test_relative_chdir_is_relative_to_our_cwd(group, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gateway = group.makegateway("popen//chdir=sub")
    assert gateway._rinfo().cwd == str(tmp_path / "sub")


def test_env_keys_set_far_environment_variables(group):
    gateway = group.makegateway("popen//env:EXECWIRE_T1=hello world//env:EXECWIRE_T2=a=b")
    channel = gateway.remote_exec("import os; channel.send([os.environ.get(n) for n in ('EXECWIRE_T1', "
                                  "'EXECWIRE_T2')])")
    assert channel.receive(timeout=10) == ["hello world", "a=b"]
    assert "EXECWIRE_T1" not in os.environ


def test_python_key_picks_the_interpreter(group):
    other = find_python("3.12*") or find_python("3.13*") or sys.executable
    gateway = group.makegateway(f"popen//python={other}")
    info = gateway._rinfo()
    assert os.path.realpath(info.executable) == os.path.realpath(other)
    version = subprocess.run([other, "-c", "import sys; print(tuple(sys.version_info))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert repr(info.version_info) == version
    assert gateway.remote_exec("channel.send(6 * 7)").receive(timeout=10) == 42


def test_far_side_runs_on_python_36(group):
    python36 = find_python("3.6*")
    if python36 is None:
        pytest.skip("no Python 3.6 under /root/.pyenv/versions: the far side's 3.6 support is NOT checked here")
    gateway = group.makegateway(f"popen//python={python36}")
    assert gateway._rinfo().version_info[:2] == (3, 6)
    channel = gateway.remote_exec("channel.send(channel.receive() + [2**70, b'x', {1}])")
    channel.send([None])
    assert channel.receive(timeout=10) == [None, 2**70, b"x", {1}]


def test_dont_write_bytecode(group, tmp_path):
    (tmp_path / "plain_module.py").write_text("VALUE = 7\n")
    gateway = group.makegateway(f"popen//dont_write_bytecode//chdir={tmp_path}")
    channel = gateway.remote_exec("""
        import sys, plain_module
        channel.send((sys.dont_write_bytecode, plain_module.VALUE))
    """)
    assert channel.receive(timeout=10) == (True, 7)
    assert not (tmp_path / "__pycache__").exists()


def test_execmodel_main_thread_only_runs_code_on_the_far_main_thread(group):
    gateway = group.makegateway("popen//execmodel=main_thread_only")
    code = "import threading; channel.send(threading.current_thread() is threading.main_thread())"
    assert gateway.remote_exec(code).receive(timeout=10) is True


def test_execmodel_main_thread_only_refuses_a_second_concurrent_remote_exec(group):
    gateway = group.makegateway("popen//execmodel=main_thread_only")
    first = gateway.remote_exec("channel.send('running'); channel.receive()")
    assert first.receive(timeout=10) == "running"
    with pytest.raises(execwire.RemoteError, match="one remote_exec at a time"):
        gateway.remote_exec("pass").waitclose(10)
    first.send("done")
    first.waitclose(10)


def test_execmodel_main_thread_only_runs_one_remote_exec_after_another(group):
    gateway = group.makegateway("popen//execmodel=main_thread_only")
    # widen the far side's work after it closed a channel, so that what a loaded machine does by chance
    # happens every time: the next remote_exec arrives while the far side is still finishing the last one
    gateway.remote_exec("""
        import time
        core = channel.gateway._protocol
        forget = core._forget
        def slow_forget(channel):
            time.sleep(0.2)
            forget(channel)
        core._forget = slow_forget
    """).waitclose(10)
    for n in range(3):
        channel = gateway.remote_exec("channel.send(channel.receive() + 1)")
        channel.send(n)
        assert channel.receive(timeout=10) == n + 1
        channel.waitclose(10)  # the previous one has ended: the next one must be accepted


def test_execmodel_thread_runs_code_off_the_main_thread(gw):
    code = "import threading; channel.send(threading.current_thread() is threading.main_thread())"
    assert gw.remote_exec(code).receive(timeout=10) is False


def test_id_key_names_the_gateway_on_both_sides(group):
    gateway = group.makegateway("popen//id=worker-a")
    assert gateway.id == "worker-a"
    assert group["worker-a"] is gateway
    assert gateway.remote_exec("channel.send(channel.gateway.id)").receive(timeout=10) == "worker-a"


# -- output of the far process --------------------------------------------------------------------------
def test_far_output_reaches_the_output_handler_and_spares_the_protocol(gw):
    collected: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
    lock = threading.Lock()

    def handler(gateway: execwire.Gateway, stream: int, data: bytes) -> None:
        assert gateway is gw
        with lock:
            collected[stream] += data

    gw.output_handler = handler
    channel = gw.remote_exec("""
        import os, sys
        channel.send("before")
        print("printed-by-print")
        sys.stdout.flush()
        os.system("echo echoed-by-a-shell")
        sys.stderr.write("written-to-stderr\\n")
        sys.stderr.flush()
        os.write(1, b"\\xe7W raw bytes that look like a frame start\\n")
        print("x" * 100000)
        channel.send("after")
        channel.send(channel.receive())
    """)
    assert channel.receive(timeout=10) == "before"
    assert channel.receive(timeout=10) == "after"
    channel.send("protocol intact")
    assert channel.receive(timeout=10) == "protocol intact"

    def everything_arrived() -> bool:
        with lock:
            out, err = bytes(collected[1]), bytes(collected[2])
        return (b"printed-by-print\n" in out and b"echoed-by-a-shell\n" in out and b"x" * 100000 in out
                and b"written-to-stderr\n" in err)

    assert wait_until(everything_arrived, 10), collected
    assert b"raw bytes that look like a frame start" in bytes(collected[1])
    assert b"printed-by-print" not in bytes(collected[2])


def test_far_output_goes_to_our_stdout_and_stderr_by_default_and_none_is_lost_at_exit(tmp_path):
    code = textwrap.dedent("""
        import execwire
        gw = execwire.makegateway()
        gw.remote_exec("import sys; print('far-out-1'); sys.stderr.write('far-err-1\\\\n')").waitclose(10)
        gw.remote_exec("import os; os.system('echo far-shell-out'); print('far-last-words')").waitclose(10)
        gw.exit()
        print("controller-done")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert {"far-out-1", "far-shell-out", "far-last-words"} <= set(out), result.stdout
    assert out[-1] == "controller-done"  # everything the far side printed came before exit() returned
    assert "far-err-1" in result.stderr.splitlines()
    assert "far-err-1" not in result.stdout


def test_execwire_debug_traces_both_sides_to_stderr(tmp_path):
    code = textwrap.dedent("""
        import execwire
        gw = execwire.makegateway()
        channel = gw.remote_exec("channel.send(channel.receive() + 1)")
        channel.send(1)
        print(channel.receive())
        gw.exit()
    """)
    env = dict(os.environ, EXECWIRE_DEBUG="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    near = [line for line in result.stderr.splitlines() if line.startswith("[execwire near")]
    far = [line for line in result.stderr.splitlines() if line.startswith("[execwire far")]
    assert near, result.stderr
    assert far, result.stderr
    assert any("EXEC" in line for line in near) and any("EXEC" in line for line in far)

    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                           env={k: v for k, v in os.environ.items() if k != "EXECWIRE_DEBUG"})
    assert quiet.returncode == 0 and "[execwire" not in quiet.stderr


# -- start-up failures ------------------------------------------------------------------------------------
def _start_error(group: execwire.Group, spec: str) -> tuple[execwire.GatewayStartError, float]:
    """Make a gateway for ``spec`` and use it; return the GatewayStartError and how long it took."""
    started = time.monotonic()
    with pytest.raises(execwire.GatewayStartError) as info:
        gateway = group.makegateway(spec)
        gateway.wait_ready(30)
        gateway.remote_exec("channel.send(1)").receive(timeout=30)
    return info.value, time.monotonic() - started


def test_missing_python_fails_fast_naming_it(group):
    error, elapsed = _start_error(group, "popen//python=/no/such/python")
    assert "/no/such/python" in str(error)
    assert elapsed < 5


def test_python_that_exits_at_once_fails_fast_with_its_exit_code(group):
    error, elapsed = _start_error(group, "popen//python=/bin/false")
    assert "exit code 1" in str(error)
    assert elapsed < 5


@pytest.mark.skipif(not os.access(PY27, os.X_OK), reason=f"no Python 2.7 at {PY27}")
def test_python_27_is_refused_naming_its_version_and_the_minimum(group):
    error, elapsed = _start_error(group, f"popen//python={PY27}")
    message = str(error)
    assert "2.7" in message
    assert "3.6" in message
    assert PY27 in message
    assert elapsed < 5


def test_banner_on_far_stdout_gives_an_error_quoting_it(group, tmp_path):
    wrapper = write_wrapper(tmp_path, "bannered-python", 'echo "Welcome to banner-host, have fun"')
    error, elapsed = _start_error(group, f"popen//python={wrapper}")
    message = str(error)
    assert "Welcome to banner-host, have fun" in message
    assert "stdout" in message  # names the usual cause
    assert elapsed < 5


def test_banner_error_quotes_only_bytes_that_were_received(group, tmp_path):
    wrapper = write_wrapper(tmp_path, "bannered-python", 'echo "short banner"')
    error, _ = _start_error(group, f"popen//python={wrapper}")
    assert "\\x00" * 12 not in str(error), str(error)


def test_remote_exec_on_a_far_side_that_closed_its_stdin_raises_gateway_start_error(group, tmp_path):
    # the far command closes its stdin (so our next write fails), then lingers a second before exiting
    marker = tmp_path / "stdin-closed"
    script = tmp_path / "closes-stdin"
    script.write_text(f"#!/bin/sh\nexec 0<&-\ntouch {marker}\nsleep 1\nexit 1\n")
    script.chmod(0o755)
    gateway = group._start_gateway(f"popen//python={script}")  # as the command starts: without waiting
    assert wait_until(marker.exists, 10)
    with pytest.raises(execwire.GatewayStartError):
        gateway.remote_exec("channel.send(1)").receive(timeout=30)


def test_gateway_after_failed_start_keeps_failing_with_the_same_error(group):
    gateway = group._start_gateway(f"popen//python={Path('/bin/false')}")  # as the command starts: without waiting
    with pytest.raises(execwire.GatewayStartError):
        gateway.wait_ready(10)
    assert gateway.state == "failed"
    with pytest.raises(execwire.GatewayStartError):
        gateway.remote_exec("pass")
    gateway.exit()


def test_python_given_as_a_bare_version_means_that_python_on_path(tmp_path, monkeypatch, clean_default_group):
    import sys

    (tmp_path / "python3.99").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gw = execwire.makegateway("popen//python=3.99")
    assert gw.remote_exec("import sys; channel.send(sys.executable)").receive(30) == str(tmp_path / "python3.99")
    gw.exit()


def test_a_command_that_is_not_found_is_named_in_the_start_error(clean_default_group):
    with pytest.raises(execwire.GatewayStartError, match="127.*not found"):
        execwire.makegateway("popen//python=/usr/bin/env no-such-python-here")
