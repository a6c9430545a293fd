"""pdb on the far side, with the controller's terminal as its console, through real processes.

The controller runs on a pseudo-terminal (the Terminal of tests/test_cli.py): breakpoint() and
pdb.set_trace() in shipped code, several gateways at once (one session at a time, the others go on),
old and new far Pythons, and ``execwire run --pdb``. Without a terminal it fails at once, saying why.
Ctrl-C as in a local pdb (a new prompt at the prompt, a stop in running code: in execwire run, its shell
and programs with or without a SIGINT handler), the terminal's settings put back; where and up show the
shipped code's frames only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pythons
from conftest import wait_until
from sshd import SshServer
from test_cli import Terminal

import execwire

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["sshd"]

CLI = [sys.executable, "-m", "execwire"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("EXECWIRE_")}
    clean.update(HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null")
    return clean


def controller(tmp_path: Path, program: str) -> list[str]:
    """The command that runs ``program`` (a controller script using execwire) from a file."""
    script = tmp_path / "controller.py"
    script.write_text(textwrap.dedent(program))
    return [sys.executable, str(script)]


BREAK_AND_GO_ON = """
    import threading, time
    import execwire

    group = execwire.Group(["popen//id=debugged", "popen//id=other"])
    channel = group["debugged"].remote_exec('''
    x = 41
    breakpoint()
    y = x + 1
    channel.send(y)
    ''')
    # while the session is open, the other gateway goes on
    while not any(thread.name == "execwire-pdb-debugged" for thread in threading.enumerate()):
        time.sleep(0.01)
    with open("other.txt", "w") as other:
        other.write("other says %s" % group["other"].remote_exec("channel.send(7)").receive(timeout=30))
    result = channel.receive(timeout=60)
    while any(thread.name == "execwire-pdb-debugged" for thread in threading.enumerate()):
        time.sleep(0.01)  # the session is over before this is printed
    print("debugged sends", result, flush=True)
    group.terminate(timeout=5)
"""


def test_breakpoint_opens_pdb_on_the_controllers_terminal_while_other_gateways_go_on(tmp_path, env):
    terminal = Terminal(controller(tmp_path, BREAK_AND_GO_ON), env, cwd=tmp_path)
    try:
        header = terminal.read_until("(Pdb) ")
        assert "execwire: pdb on gateway debugged (breakpoint, pid " in header and "-> y = x + 1" in header
        answered = tmp_path / "other.txt"  # before anything is typed, the other gateway answers
        assert wait_until(lambda: answered.exists() and answered.read_text() == "other says 7", 20)
        terminal.write("p x\n")
        assert "41\n" in terminal.read_until("(Pdb) ")
        terminal.write("l\n")  # the shipped string's lines
        listing = terminal.read_until("(Pdb) ")
        assert "  3  \tbreakpoint()" in listing and "  4  ->\ty = x + 1" in listing
        terminal.write("s\n")
        terminal.read_until("-> channel.send(y)\n(Pdb) ")
        terminal.write("s\n")  # into channel.send: execwire's frames are stepped over
        after = terminal.read_until("(Pdb) ")
        assert "--Return--" in after and "_far" not in after
        terminal.write("s\n")  # the code is done: so is the session
        assert "debugged sends 42" in terminal.read_until("debugged sends 42\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


ONE_AT_A_TIME = """
    import execwire

    group = execwire.Group(["popen//id=first", "popen//id=second"])
    channels = [gateway.remote_exec('''
    import os
    name = channel.gateway.id
    breakpoint()
    channel.send(name)
    ''') for gateway in group]
    print("sent", sorted(channel.receive(timeout=60) for channel in channels), flush=True)
    group.terminate(timeout=5)
"""


def test_sessions_of_several_gateways_take_the_terminal_one_after_another(tmp_path, env):
    terminal = Terminal(controller(tmp_path, ONE_AT_A_TIME), env)
    try:
        first = terminal.read_until("(Pdb) ")
        assert first.count("execwire: pdb on gateway") == 1
        one = "first" if "gateway first" in first else "second"
        other = "second" if one == "first" else "first"
        terminal.write("p name\n")
        assert f"'{one}'" in terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        second = terminal.read_until("(Pdb) ")
        assert f"execwire: pdb on gateway {other}" in second
        terminal.write("p name\n")
        assert f"'{other}'" in terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        assert "sent ['first', 'second']" in terminal.read_until("]\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


SET_TRACE = """
    import sys
    import execwire

    gateway = execwire.makegateway("popen//python=" + sys.argv[1])
    channel = gateway.remote_exec('''
    import pdb, sys
    def double(number):
        pdb.set_trace()
        return number * 2
    channel.send((sys.version_info[:2], double(21)))
    ''')
    print("result", channel.receive(timeout=60), flush=True)
    gateway.exit()
"""


@pytest.mark.parametrize("far", [interpreter for interpreter in pythons.matrix()
                                 if interpreter.name in ("3.6", "3.13", "pypy3")],
                         ids=lambda interpreter: interpreter.name)
def test_pdb_set_trace_on_old_and_new_far_pythons(tmp_path, env, far):
    terminal = Terminal([*controller(tmp_path, SET_TRACE), far.command], env)
    try:
        shown = terminal.read_until("(Pdb) ", timeout=40)
        # in double(): at the call of set_trace (Python 3.13 stops there) or at the line after it
        assert "double()\n-> pdb.set_trace()" in shown or "double()\n-> return number * 2" in shown
        terminal.write("p numb\t\n")  # Tab completes the far frame's name
        assert "p number\n21\n" in terminal.read_until("(Pdb) ")
        terminal.write("number = 50\n")  # a statement: run in the far frame
        terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        major, minor = far.version[:2]
        assert f"result (({major}, {minor}), 100)" in terminal.read_until(")\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


THROUGH_SSH_AND_VIA = """
    import sys
    import execwire

    group = execwire.Group([sys.argv[1] + "//id=remote", "popen//via=remote//id=behind"])
    channels = [group[name].remote_exec('''
    import os
    where = channel.gateway.id
    breakpoint()
    channel.send((where, os.getpid()))
    ''') for name in ("remote", "behind")]
    print("sent", sorted(channel.receive(timeout=60)[0] for channel in channels), flush=True)
    group.terminate(timeout=5)
"""


def test_breakpoints_over_ssh_and_through_via(tmp_path, env, sshd: SshServer):
    terminal = Terminal([*controller(tmp_path, THROUGH_SSH_AND_VIA), sshd.spec()], env)
    try:
        seen = set()
        for _ in range(2):
            header = terminal.read_until("(Pdb) ", timeout=40)
            seen |= {name for name in ("remote", "behind") if f"pdb on gateway {name} (breakpoint" in header}
            terminal.write("p where\n")
            terminal.read_until("(Pdb) ")
            terminal.write("c\n")
        assert seen == {"remote", "behind"}
        assert "sent ['behind', 'remote']" in terminal.read_until("]\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


WHERE = """
    import execwire

    gateway = execwire.makegateway("popen")
    print("result", gateway.remote_exec('''
    def inner(n):
        breakpoint()
        return n + 1
    channel.send(inner(1))
    ''').receive(timeout=60), flush=True)
    gateway.exit()
"""


def test_where_and_up_show_the_shipped_code_only(tmp_path, env):
    terminal = Terminal(controller(tmp_path, WHERE), env)
    try:
        terminal.read_until("(Pdb) ")
        terminal.write("where\n")
        stack = terminal.read_until("(Pdb) ")
        assert stack.index("<module>()\n-> channel.send(inner(1))") < stack.index("inner()\n")
        assert stack.split("where\n", 1)[1].startswith("  <remote_exec>(5)<module>()")  # the shipped code first
        assert "_far" not in stack and "threading" not in stack and "execwire" not in stack
        terminal.write("up\n")
        assert "-> channel.send(inner(1))" in terminal.read_until("(Pdb) ")
        terminal.write("up\n")  # and no further: execwire's frames are not the user's to walk into
        assert "Oldest frame" in terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        assert "result 2" in terminal.read_until("result 2\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def test_quit_ends_the_session_and_raises_bdbquit_in_the_far_code(tmp_path, env):
    program = """
        import execwire
        gateway = execwire.makegateway("popen")
        try:
            gateway.remote_exec("breakpoint()\\nchannel.send('not reached')").receive(timeout=60)
        except execwire.RemoteError as exc:
            print("far code raised", exc.type_name, flush=True)
        print("gateway still works:", gateway.remote_exec("channel.send(1)").receive(timeout=30), flush=True)
        gateway.exit()
    """
    terminal = Terminal(controller(tmp_path, program), env)
    try:
        terminal.read_until("(Pdb) ")
        terminal.write("q\n")
        assert "far code raised bdb.BdbQuit" in terminal.read_until("BdbQuit\n")
        assert "gateway still works: 1" in terminal.read_until("works: 1\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def test_without_a_terminal_breakpoint_fails_at_once_saying_why(group):
    gateway = group.makegateway("popen")
    code = "import sys; channel.send(sys.version_info >= (3, 7))\nbreakpoint()\nchannel.send('not reached')"
    channel = gateway.remote_exec(code)
    assert channel.receive(timeout=20) is True
    with pytest.raises(execwire.RemoteError) as failed:
        channel.receive(timeout=20)  # bounded: the controller refuses at once
    assert failed.value.type_name == "_execwire_far.debugger.DebuggerUnavailable"
    assert "standard input is not a terminal" in failed.value.formatted
    assert "PYTHONBREAKPOINT=0" in failed.value.formatted
    # pdb.set_trace() too, and the gateway goes on
    with pytest.raises(execwire.RemoteError, match="DebuggerUnavailable"):
        gateway.remote_exec("import pdb; pdb.set_trace()").receive(timeout=20)
    assert gateway.remote_exec("channel.send(3)").receive(timeout=20) == 3


def test_pythonbreakpoint_0_in_the_far_environment_skips_breakpoints(group):
    gateway = group.makegateway("popen//env:PYTHONBREAKPOINT=0")
    assert gateway.remote_exec("breakpoint(); channel.send('went on')").receive(timeout=20) == "went on"


# -- execwire run ------------------------------------------------------------------------------------

def test_execwire_run_pdb_starts_post_mortem_at_an_uncaught_exception(tmp_path, env):
    script = tmp_path / "job.py"
    script.write_text("def divide(x):\n    return x / 0\n\nvalue = 5\ndivide(value)\n")
    terminal = Terminal([*CLI, "run", "--pdb", str(script)], env, cwd=tmp_path)
    try:
        shown = terminal.read_until("(Pdb) ")
        assert "ZeroDivisionError: division by zero" in shown and "pdb on gateway gw0 (post-mortem, pid" in shown
        assert "-> return x / 0" in shown
        terminal.write("p x\n")
        assert "5\n" in terminal.read_until("(Pdb) ")
        terminal.write("up\n")
        assert "-> divide(value)" in terminal.read_until("(Pdb) ")
        terminal.write("up\n")  # the script's frame is the oldest: the far job's frames are hidden
        assert "Oldest frame" in terminal.read_until("(Pdb) ")
        terminal.write("where\n")
        stack = terminal.read_until("(Pdb) ")
        assert stack.count("\n> ") + stack.count("\n  ") == 2 and "far_job" not in stack
        terminal.write("q\n")
        assert terminal.wait() == 1
    finally:
        terminal.close()


def test_execwire_run_breakpoint_on_the_terminal(tmp_path, env):
    terminal = Terminal([*CLI, "run", "-c", "print('first')\nx = 1\nbreakpoint()\nprint('done', x)"], env)
    try:
        shown = terminal.read_until("(Pdb) ")
        assert shown.index("first\n") < shown.index("(Pdb) ")  # what was printed before comes first
        terminal.write("x = 2\n")
        terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        assert "done 2" in terminal.read_until("done 2\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def test_execwire_run_pdb_without_a_terminal_says_so_and_ends():
    result = subprocess.run([*CLI, "run", "--pdb", "-c", "1/0"], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr
    assert "--pdb: pdb cannot start on gateway gw0: the controller's standard input is not a terminal" in result.stderr


def test_breakpoint_in_execwire_shell(env):
    terminal = Terminal([*CLI, "shell"], env)
    try:
        terminal.read_until(">>> ")
        terminal.write("x = 5\n")
        terminal.read_until(">>> ")
        terminal.write("breakpoint(); y = x + 1\n")
        assert "execwire: pdb on gateway gw0 (breakpoint" in terminal.read_until("(Pdb) ")
        terminal.write("p x\n")
        assert "5\n" in terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        terminal.read_until(">>> ")
        terminal.write("y\n")  # the statement went on after the session
        assert "6\n" in terminal.read_until(">>> ")
        terminal.write("\x04")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def terminal_settings_as_before(terminal: Terminal) -> None:
    import termios

    settings = termios.tcgetattr(terminal.fd)
    assert settings[3] & termios.ECHO and settings[3] & termios.ICANON  # readline's raw mode was undone
    assert settings[6][termios.VINTR] == b"\x03"  # Ctrl-C is the interrupt key again
    assert settings[6][termios.VEOL] == b"\x00"  # and no end of line


LOOPS = "x = 1\nbreakpoint()\nwhile True:\n    x += 1\n    if x == 1000:\n        print('running', flush=True)\n"


def test_ctrl_c_at_the_pdb_prompt_of_execwire_run_gives_a_new_prompt_and_breaks_into_running_code(env):
    terminal = Terminal([*CLI, "run", "-c", LOOPS], env)
    try:
        shown = terminal.read_until("(Pdb) ")
        assert "starting" not in shown.rpartition("execwire: pdb on gateway")[2]  # no status block drawn over it
        terminal.write("p x")
        terminal.write("\x03")  # what was typed goes, pdb says so and prompts again
        assert "^C\n--KeyboardInterrupt--\n(Pdb) " in terminal.read_until("(Pdb) ")
        terminal.write("p x\n")
        assert terminal.read_until("(Pdb) ") == "p x\n1\n(Pdb) "
        terminal.write("b 2\n")  # a breakpoint the loop never reaches: continue keeps the session
        terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        terminal.read_until("running\n")
        terminal.write("\x03")  # the far code runs: Ctrl-C stops it where it is
        stopped = terminal.read_until("(Pdb) ")
        assert "Program interrupted. (Use 'cont' to resume).\n> <string>(" in stopped
        terminal.write("p x > 1\n")
        assert "True\n" in terminal.read_until("(Pdb) ")
        terminal.write("q\n")  # the way out
        assert "BdbQuit" in terminal.read_until("BdbQuit")
        assert terminal.wait() == 1
        terminal_settings_as_before(terminal)
    finally:
        terminal.close()


BREAK_IN = """
    import signal, sys
    import execwire
    import execwire.debugger

    if sys.argv[1] == "own-handler":  # a handler of the program's own asks the session first
        def on_sigint(signum, frame):
            if not execwire.debugger.interrupt():
                raise KeyboardInterrupt
        signal.signal(signal.SIGINT, on_sigint)
    gateway = execwire.makegateway("popen")
    channel = gateway.remote_exec(LOOP)
    while True:  # Python runs a handler in the main thread when it runs Python code, and SIGINT may come
        try:  # to another thread, which does not end a wait of the main thread: wait in short steps
            channel.receive(timeout=0.1)
        except execwire.TimeoutError:
            continue
        except execwire.RemoteError as exc:
            print("far code raised", exc.type_name, flush=True)
            break
    gateway.exit()
""".replace("LOOP", repr(LOOPS))


@pytest.mark.parametrize("handler", ["default-handler", "own-handler"])
def test_ctrl_c_while_the_far_code_runs_breaks_into_it_in_a_program_of_ones_own(tmp_path, env, handler):
    terminal = Terminal([*controller(tmp_path, BREAK_IN), handler], env)
    try:
        terminal.read_until("(Pdb) ")
        terminal.write("b 2\n")
        terminal.read_until("(Pdb) ")
        for _ in range(2):
            terminal.write("c\n")
            terminal.read_until("running\n")
            if handler == "default-handler":
                terminal.write("p 'typed ahead'\n")  # dropped by the Ctrl-C that follows, as a terminal does
            terminal.write("\x03")
            assert "Program interrupted. (Use 'cont' to resume).\n> <remote_exec>(" in terminal.read_until("(Pdb) ")
            terminal.write("p x > 1\n")
            assert terminal.read_until("(Pdb) ") == "p x > 1\nTrue\n(Pdb) "
            terminal.write("x = 1\n")
            terminal.read_until("(Pdb) ")
        terminal.write("q\n")
        assert "far code raised bdb.BdbQuit" in terminal.read_until("BdbQuit\n")
        assert terminal.wait() == 0
        terminal_settings_as_before(terminal)
    finally:
        terminal.close()


def test_ctrl_c_at_the_post_mortem_prompt_gives_a_new_prompt_and_ctrl_d_ends_it(env):
    terminal = Terminal([*CLI, "run", "--pdb", "-c", "x = 7\n1 / 0"], env)
    try:
        terminal.read_until("(Pdb) ")
        terminal.write("\x03")
        assert "--KeyboardInterrupt--\n(Pdb) " in terminal.read_until("(Pdb) ")
        terminal.write("p x\n")
        assert "7\n" in terminal.read_until("(Pdb) ")
        terminal.write("\x04")  # end of input: pdb quits
        assert terminal.wait() == 1
        terminal_settings_as_before(terminal)
    finally:
        terminal.close()


CTRL_C_IN_A_PROGRAM = """
    import termios, sys
    import execwire

    gateway = execwire.makegateway("popen")
    try:
        gateway.remote_exec("x = 3\\nbreakpoint()\\nchannel.send('not reached')").receive(timeout=60)
    except execwire.RemoteError as exc:
        print("far code raised", exc.type_name, flush=True)
    interrupt_key = termios.tcgetattr(sys.stdin.fileno())[6][termios.VINTR]
    print("interrupt key", interrupt_key, flush=True)
    gateway.exit()
"""


def test_ctrl_c_at_the_prompt_of_a_far_breakpoint_keeps_the_session_and_the_program(tmp_path, env):
    terminal = Terminal(controller(tmp_path, CTRL_C_IN_A_PROGRAM), env)
    try:
        terminal.read_until("(Pdb) ")
        for _ in range(2):
            terminal.write("\x03")
            assert "--KeyboardInterrupt--\n(Pdb) " in terminal.read_until("(Pdb) ")
        terminal.write("p x\n")
        assert "3\n" in terminal.read_until("(Pdb) ")
        terminal.write("\x1b[A\x1b[A\n")  # two back in the history: still p x, as no ^C line was kept
        recalled = terminal.read_until("(Pdb) ")
        assert "3\n" in recalled and "KeyboardInterrupt" not in recalled
        terminal.write("\x04")
        assert "far code raised bdb.BdbQuit" in terminal.read_until("BdbQuit\n")
        assert "interrupt key b'\\x03'" in terminal.read_until("\n")  # restored for the rest of the program
        assert terminal.wait() == 0
        terminal_settings_as_before(terminal)
    finally:
        terminal.close()


def test_ctrl_c_while_a_long_call_runs_in_execwire_shell_breaks_into_it(env):
    terminal = Terminal([*CLI, "shell"], env)
    try:
        terminal.read_until(">>> ")
        terminal.write('exec("def spin():\\n    print(\'spinning\', flush=True)\\n    while True:\\n        pass")\n')
        terminal.read_until(">>> ")
        terminal.write("breakpoint(); spin()\n")
        assert "--Call--\n> <string>(1)spin()" in terminal.read_until("(Pdb) ")
        terminal.write("r\n")  # until it returns: never
        terminal.read_until("spinning\n")
        terminal.write("\x03")  # the shell's own SIGINT handler passes it to the session
        stopped = terminal.read_until("(Pdb) ")
        assert "Program interrupted. (Use 'cont' to resume).\n> <string>(" in stopped and ")spin()" in stopped
        terminal.write("q\n")
        assert "bdb.BdbQuit" in terminal.read_until(">>> ")
        terminal.write("\x04")
        assert terminal.wait() == 0
        terminal_settings_as_before(terminal)
    finally:
        terminal.close()


TYPED_AHEAD = """
    import os, sys
    import execwire

    gateway = execwire.makegateway("popen")
    channel = gateway.remote_exec('''
    import os, time
    def wait_for(path):
        while not os.path.exists(path):
            time.sleep(0.01)
    breakpoint()
    wait_for(FLAG)
    channel.send("done")
    '''.replace("FLAG", repr(sys.argv[1])))
    print("far code sent", channel.receive(timeout=60), flush=True)
    gateway.exit()
"""


def test_lines_typed_while_the_far_code_runs_answer_the_next_prompts(tmp_path, env):
    flag = tmp_path / "go"
    terminal = Terminal([*controller(tmp_path, TYPED_AHEAD), str(flag)], env)
    try:
        terminal.read_until("(Pdb) ")
        terminal.write("n\n")  # runs wait_for(), which waits for the flag
        terminal.read_until("n\n")
        terminal.write("p 40 + 2\n")  # typed while it runs
        terminal.read_until("p 40 + 2\n")  # the terminal echoes it at once
        flag.touch()
        assert "(Pdb) p 40 + 2\n42\n(Pdb) " in terminal.read_until("42\n(Pdb) ")
        terminal.write("c\n")
        assert "far code sent done" in terminal.read_until("done\n")
        assert terminal.wait() == 0
        terminal_settings_as_before(terminal)
    finally:
        terminal.close()


@pytest.mark.parametrize("far", [interpreter for interpreter in pythons.matrix()
                                 if interpreter.name in ("3.6", "3.12", "3.13", "pypy3")],
                         ids=lambda interpreter: interpreter.name)
def test_ctrl_c_at_the_prompt_and_in_running_code_on_old_and_new_far_pythons(env, far):
    code = LOOPS.replace("breakpoint()", "import pdb; pdb.set_trace()")  # 3.6 has no breakpoint()
    terminal = Terminal([*CLI, "run", "--on", f"popen//python={far.command}", "-c", code], env)
    try:
        terminal.read_until("(Pdb) ", timeout=40)
        terminal.write("\x03")
        assert "--KeyboardInterrupt--\n(Pdb) " in terminal.read_until("(Pdb) ")
        terminal.write("b 2\n")
        terminal.read_until("(Pdb) ")
        terminal.write("c\n")
        terminal.read_until("running\n")
        terminal.write("\x03")
        assert "Program interrupted. (Use 'cont' to resume).\n> <string>(" in terminal.read_until("(Pdb) ")
        terminal.write("where\n")  # the code's frame alone
        assert terminal.read_until("(Pdb) ").count("<module>()") == 1
        terminal.write("q\n")
        assert terminal.wait() == 1
    finally:
        terminal.close()
