"""Nothing is left running: far sides, what they started, and everything behind via=, in every way a
program ends (exit, terminate, Ctrl-C, --timeout, interpreter exit, a controller killed with SIGKILL).

Each test breaks it the way a user would and then looks at /proc: a process is gone once it has
exited (an unreaped zombie counts as gone). Waits are polls with generous deadlines; how fast a
far side really goes is measured in bench/lifetime.py, not here.
"""

from __future__ import annotations

import atexit
import gc
import os
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import pythons
from conftest import find_python, pid_gone, wait_until
from shim_helpers import run_with_shim

import execwire

pytest_plugins = ["pythons", "sshd"]
pytestmark = pytest.mark.timeout(120)

SRC = str(Path(execwire.__file__).resolve().parent.parent)  # the execwire these tests run
FAR_PYTHONS = [interpreter for interpreter in pythons.matrix() if interpreter.name in ("3.6", "3.13", "pypy3")]
GONE = 15.0  # deadline for a process to be gone; the promise is 2 s (see bench/lifetime.py for the figures)

CHILD = "import subprocess; channel.send(subprocess.Popen(['sleep', '300']).pid)\n"
HOLDS_THE_GIL = "sum(range(10 ** 14))  # one C call: no thread of this interpreter runs for hours\n"
BEHAVIOURS = {
    # the far main thread blocks in flush() once the output forwarder cannot send any more
    "prints-in-a-loop": "channel.send('ready')\nwhile True:\n    print('x' * 200)\n",
    "holds-the-gil": "channel.send('ready')\n" + HOLDS_THE_GIL,
    # on the far main thread, deaf to the interrupt that ends it, and to SIGTERM and SIGHUP
    "ignores-signals": ("import signal\n"
                        "for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
                        "    signal.signal(signum, signal.SIG_IGN)\n"
                        "channel.send('ready')\n"
                        "while True:\n"
                        "    pass\n"),
}


def process_group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (the far Python, its watchdog, what it started)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and not pid_gone(int(name)):
            try:
                with open(f"/proc/{name}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        members.append(int(name))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return members


def all_gone(pids: list[int], timeout: float = GONE) -> list[int]:
    """Wait until every pid is gone; return those still running."""
    wait_until(lambda: all(map(pid_gone, pids)), timeout)
    return [pid for pid in pids if not pid_gone(pid)]


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if not pid_gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def read_line(stream, timeout: float = 30.0) -> str:
    """The next line of an unbuffered stream (bufsize=0: nothing read ahead hides from select())."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout} s"
    return stream.readline().decode()


def env_with_src() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("EXECWIRE_DEBUG", None)
    return env


@pytest.fixture
def spawned() -> Iterator[list[int]]:
    """Pids a test saw; whatever of them still runs at the end is killed (after the test judged it)."""
    pids: list[int] = []
    yield pids
    kill_leftovers(pids)


# -- the far side's watchdog: the controller killed with SIGKILL -----------------------------------

CONTROLLER = textwrap.dedent("""
    import sys, time, execwire
    spec, code = sys.argv[1], sys.argv[2]
    gw = execwire.makegateway(spec)
    channel = gw.remote_exec(code)
    sys.stderr.write("%d\\n" % gw.remote_info().pid)
    sys.stderr.write(channel.receive(30) + "\\n")
    sys.stderr.flush()
    time.sleep(600)
""")


GROUP_CONTROLLER = textwrap.dedent("""
    import sys, time, execwire
    group = execwire.Group(sys.argv[1].splitlines())
    channel = group[-1].remote_exec(sys.argv[2])
    sys.stderr.write(" ".join(str(gw.remote_info().pid) for gw in group) + "\\n")
    sys.stderr.write(channel.receive(30) + "\\n")
    sys.stderr.flush()
    time.sleep(600)
""")


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("far", FAR_PYTHONS, ids=lambda interpreter: interpreter.name)
def test_far_side_ends_when_its_controller_is_killed(far, behaviour, spawned):
    execmodel = "//execmodel=main_thread_only" if behaviour == "ignores-signals" else ""
    spec = f"popen//python={shlex.quote(far.command)}{execmodel}"
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER, spec, BEHAVIOURS[behaviour]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_with_src(), bufsize=0)
    try:
        far_pid = int(read_line(controller.stderr))
        assert read_line(controller.stderr).strip() == "ready"
        group = process_group(far_pid)
        spawned.extend(group)
        assert far_pid in group, group  # with its watchdog (see test_watchdog_leaves_with_the_far_process)
        controller.kill()
        controller.wait(10)
        assert not all_gone(group), f"{behaviour} on {far.name}: outlived the controller's SIGKILL"
    finally:
        controller.kill()
        controller.wait(10)
        controller.stderr.close()


@pytest.mark.parametrize("transport", ["ssh", "socket"])
def test_far_side_on_ssh_or_socket_ends_when_its_controller_is_killed(transport, request, spawned):
    # ssh: the client sees its stdin end and passes that on; sshd then closes the far side's stdin.
    # socket: the far Python that the server started sees its connection shut down.
    specs = {"socket": ["popen//id=host", "socket//installvia=host"]}
    if transport == "ssh":
        specs["ssh"] = [request.getfixturevalue("sshd").spec()]
    controller = subprocess.Popen([sys.executable, "-c", GROUP_CONTROLLER, "\n".join(specs[transport]),
                                   "channel.send('ready')\n" + HOLDS_THE_GIL],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_with_src(), bufsize=0)
    try:
        far_pids = [int(word) for word in read_line(controller.stderr).split()]
        assert read_line(controller.stderr).strip() == "ready"
        members = [pid for far_pid in far_pids for pid in process_group(far_pid)]
        spawned.extend(members)
        controller.kill()
        controller.wait(10)
        assert not all_gone(members), f"a far side of a {transport} gateway outlived the controller's SIGKILL"
    finally:
        controller.kill()
        controller.wait(10)
        controller.stderr.close()



@pytest.mark.parametrize("far", FAR_PYTHONS, ids=lambda interpreter: interpreter.name)
def test_far_side_ends_when_the_via_middle_is_killed(far, group, spawned):
    python = shlex.quote(far.command)
    middle = group.makegateway(f"popen//id=middle//python={python}")
    inner = group.makegateway(f"popen//id=inner//via=middle//python={python}")
    middle_pid = middle.remote_info().pid
    inner_pid = inner.remote_info().pid
    channel = inner.remote_exec(CHILD + "channel.send('ready')\n" + HOLDS_THE_GIL)
    child = channel.receive(30)
    assert channel.receive(30) == "ready"
    behind = process_group(inner_pid)
    spawned.extend([middle_pid, *behind])
    assert set(behind) >= {inner_pid, child}, behind  # and the inner's watchdog
    os.kill(middle_pid, signal.SIGKILL)
    assert not all_gone(behind), f"on {far.name}: outlived the middle gateway's SIGKILL"


def test_watchdog_leaves_with_the_far_process(gw):
    far_pid = gw.remote_info().pid
    members = process_group(far_pid)
    assert len(members) == 2, members
    watchdog = next(pid for pid in members if pid != far_pid)
    with open(f"/proc/{watchdog}/stat") as stat:
        assert int(stat.read().rsplit(")", 1)[1].split()[1]) == far_pid  # a child of the far process
    gw.exit()
    assert not all_gone(members)


# -- what shipped code started ---------------------------------------------------------------------


def test_exit_ends_what_the_far_side_started(group, spawned):
    gateway = group.makegateway("popen")
    child = gateway.remote_exec(CHILD).receive(30)
    spawned.append(child)
    assert not pid_gone(child)
    gateway.exit()
    assert not all_gone([child]), "a subprocess of shipped code outlived exit()"


def test_a_far_side_that_dies_takes_what_it_started_along(group, spawned):
    gateway = group.makegateway("popen")
    child = gateway.remote_exec(CHILD).receive(30)
    spawned.append(child)
    os.kill(gateway.remote_info().pid, signal.SIGKILL)  # nobody asked it to end: its watchdog sees it go
    assert not all_gone([child]), "a subprocess of shipped code outlived the far process"


def test_exit_of_an_ssh_gateway_ends_the_remote_children(sshd, group, spawned):
    gateway = group.makegateway(sshd.spec())
    child = gateway.remote_exec(CHILD).receive(30)  # the host is this machine: its pids are ours to see
    far_pid = gateway.remote_info().pid
    spawned.extend([child, far_pid])
    gateway.exit()
    assert not all_gone([child, far_pid]), "a process on the ssh host outlived exit()"


def test_exit_of_a_sudo_gateway_ends_what_it_started_as_that_user(unprivileged_user, group, spawned):
    # the far Python runs as another user, in a group of its own under sudo: its watchdog ends the child
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("/usr/bin/python3 (that any user can run) is not installed")
    gateway = group.makegateway(f"sudo={unprivileged_user.pw_name}//python=/usr/bin/python3//chdir=/tmp")
    child = gateway.remote_exec(CHILD).receive(30)
    far_pid = gateway.remote_info().pid
    spawned.extend([child, far_pid])
    assert os.stat(f"/proc/{child}").st_uid == unprivileged_user.pw_uid
    gateway.exit()
    assert not all_gone([child, far_pid]), "a process started through sudo outlived exit()"


def test_terminate_ends_via_chains_inner_first_and_leaves_nothing(group, spawned):
    group.makegateway("popen//id=a")
    group.makegateway("popen//id=b//via=a")
    group.makegateway("popen//id=c//via=b")
    group.makegateway("popen//id=d//via=a")
    pids = [gateway.remote_info().pid for gateway in group]
    children = [gateway.remote_exec(CHILD).receive(30) for gateway in group]
    stuck = group["c"].remote_exec("channel.send('ready')\n" + HOLDS_THE_GIL)  # it cannot hear TERMINATE
    assert stuck.receive(30) == "ready"
    members = [pid for far_pid in pids for pid in process_group(far_pid)]
    spawned.extend(members)
    assert set(members) >= {*pids, *children}, members  # and the far Pythons' watchdogs
    order: list[str] = []
    for gateway in group:
        original = gateway.exit

        def recording_exit(timeout: float = 5.0, gateway=gateway, original=original) -> None:
            original(timeout)
            order.append(gateway.id)

        gateway.exit = recording_exit  # type: ignore[method-assign]
    group.terminate(timeout=5.0)
    assert len(group) == 0
    assert order.index("c") < order.index("b") < order.index("a") and order.index("d") < order.index("a"), order
    assert not all_gone(members, timeout=5.0), "something of the group runs on after terminate() returned"


# -- the execwire command ---------------------------------------------------------------------------

RECORD_PIDS = textwrap.dedent("""
    import os, subprocess, time
    child = subprocess.Popen(["sleep", "300"])
    with open(os.environ["PIDS"], "w") as pids:
        pids.write("%d %d\\n" % (os.getpid(), child.pid))
    time.sleep(120)
""")


def run_command(*args: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = env_with_src()
    env["PIDS"] = str(tmp_path / "pids")
    return subprocess.Popen([sys.executable, "-m", "execwire", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, bufsize=0)


def recorded_pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    assert wait_until(lambda: path.exists() and path.read_text().endswith("\n"), 30), "the code did not start"
    return [int(word) for word in path.read_text().split()]


@pytest.mark.parametrize("how", ["ctrl-c", "timeout"])
def test_the_command_leaves_no_far_process_and_no_child(how, tmp_path, spawned):
    timeout = ["--timeout", "3"] if how == "timeout" else []
    command = run_command("run", *timeout, "-c", RECORD_PIDS, tmp_path=tmp_path)
    try:
        pids = recorded_pids(tmp_path)
        spawned.extend(pids)
        if how == "ctrl-c":
            command.send_signal(signal.SIGINT)
        assert command.wait(30) == (130 if how == "ctrl-c" else 4)
        left = [pid for pid in pids if not pid_gone(pid)]
        assert not all_gone(left), f"still running after the command returned: {left}"
    finally:
        command.kill()
        command.wait(10)
        command.stderr.close()  # type: ignore[union-attr]


def test_a_gateway_stuck_while_starting_leaves_no_grandchild(tmp_path, spawned):
    stuck = tmp_path / "stuck-python"
    stuck.write_text(f'#!/bin/sh\nsleep 120 &\necho $! > "{tmp_path}/pids"\nwait $!\nexec "{sys.executable}" "$@"\n')
    stuck.chmod(0o755)
    command = run_command("run", "--timeout", "2", "--on", f"popen//python={stuck}", "-c", "pass", tmp_path=tmp_path)
    try:
        grandchild = recorded_pids(tmp_path)
        spawned.extend(grandchild)
        assert "still starting after 2 seconds" in read_line(command.stderr)
        noticed = time.monotonic()  # the deadline has passed: from here on it only ends what it started
        assert command.wait(30) == 4
        ending = time.monotonic() - noticed
        assert not all_gone(grandchild), "the wrapper's child outlived the command"
        assert ending < 2.5, f"ending the stuck gateway took {ending:.1f} s"  # it took 3 s of waits and more
    finally:
        command.kill()
        command.wait(10)
        command.stderr.close()  # type: ignore[union-attr]


# -- interpreter exit --------------------------------------------------------------------------------

NEAR_PYTHONS = sorted({python for python in (sys.executable, *(find_python(f"{version}*") for version in
                                                              ("3.10", "3.11", "3.12.1", "3.12", "3.13")))
                       if python is not None})

OPEN_AT_EXIT = textwrap.dedent("""
    import atexit, sys, threading, execwire
    group = execwire.Group(["popen//id=a", "popen//id=b//via=a"])
    lone = execwire.makegateway("popen")  # the default group too
    pids = [gw.remote_info().pid for gw in (group["a"], group["b"], lone)]
    code = "import subprocess; channel.send(subprocess.Popen(['sleep', '300']).pid); channel.receive()"
    pids += [gw.remote_exec(code).receive(30) for gw in (group["a"], group["b"], lone)]
    stuck = lone.remote_exec("channel.send('ready'); sum(range(10 ** 14))")
    assert stuck.receive(30) == "ready"
    if sys.argv[1] == "receiver":
        channel = group["b"].remote_exec("channel.receive()")

        def receive():
            try:
                channel.receive()
            except EOFError:
                print("receive() ended with EOFError", flush=True)

        threading.Thread(target=receive).start()  # not a daemon: the interpreter waits for it
    print(" ".join(map(str, pids)), flush=True)
    gateways = [group["a"], group["b"], lone]
    atexit.register(lambda: print("states:", sorted({gw.state for gw in gateways})))  # after execwire's end
""")


@pytest.mark.parametrize("scene", ["open-gateways", "receiver"])
@pytest.mark.parametrize("python", NEAR_PYTHONS, ids=lambda python: Path(python).parent.parent.name)
def test_interpreter_exit_ends_every_gateway_quietly(python, scene, spawned):
    result = subprocess.run([python, "-c", OPEN_AT_EXIT, scene], capture_output=True, text=True, timeout=60,
                            env=env_with_src())
    lines = result.stdout.splitlines()
    pids = [int(word) for word in lines[0].split()] if lines else []
    spawned.extend(pids)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no "can't create new thread at interpreter shutdown", no traceback
    assert len(pids) == 6
    assert lines[-1] == "states: ['closed']"  # all of them exited, by a handler that raised nothing
    if scene == "receiver":
        assert lines[1:-1] == ["receive() ended with EOFError"]
    assert not all_gone(pids), "a far process or a child outlived the interpreter"


def test_groups_leave_no_exit_handler_behind_and_are_freed(group):
    group.makegateway().exit()  # the one handler of the process exists from the first gateway on

    def handlers() -> int:
        return atexit._ncallbacks() + len(getattr(threading, "_threading_atexits", []))

    before = handlers()
    freed = []
    for _ in range(50):
        made = execwire.Group(["popen"])
        made[0].remote_exec("channel.send(1)").receive(30)
        made.terminate(timeout=5.0)
        freed.append(weakref.ref(made))
        del made
    gc.collect()
    assert handlers() == before
    assert all(ref() is None for ref in freed), "a terminated Group is never freed"


def test_execnet_groups_leave_no_handler_behind_once_terminated():
    # the execnet package's groups register their handler at once, as execnet does, and code written for
    # execnet may register it again; atexit keeps what it calls, so a group whose handler were left
    # registered after terminate() could never be freed
    result = run_with_shim("""
        import atexit, gc, weakref, execnet
        registered = []
        original = atexit.register
        atexit.register = lambda function: registered.append(function.__self__) or original(function)
        freed = []
        for number in range(20):
            made = execnet.Group(["popen"])
            if number % 2:
                original(made._cleanup_atexit)
            made.terminate(timeout=5.0)
            freed.append(weakref.ref(made))
            del made
        count = len(registered)
        del registered[:]
        gc.collect()
        print(count, sum(ref() is None for ref in freed))
    """)
    registered, freed = result.stdout.split()
    assert freed == "20", "a terminated execnet Group is never freed"
    assert registered in ("0", "20")  # none, or one per group at once
