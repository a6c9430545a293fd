"""The `execwire` command, run as a real subprocess: run, info, shell, exit statuses, prefixes, pipes, terminals.

Where a terminal matters (the status block, the summary table, the shell, Ctrl-C) the command runs
on a pseudo-terminal from the pty module.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pythons
from conftest import wait_until

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "execwire"]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EXECWIRE_DEBUG", None)
    env.update(extra)
    return env


def execwire(*args: str, stdin: str | bytes | None = None, cwd: Path | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    if isinstance(stdin, bytes):
        done = subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=timeout, cwd=cwd,
                              env=cli_env())
        return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
    return subprocess.run([*CLI, *args], input=stdin if stdin is not None else "", capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=cli_env())


def shell_pipeline(command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``command`` in bash, with ``EXECWIRE`` standing for the command itself."""
    command = command.replace("EXECWIRE", " ".join(map(shlex.quote, CLI)))
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout, env=cli_env())


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (an unreaped zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pid_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def slow_python(folder: Path, seconds: float) -> Path:
    """An interpreter that takes ``seconds`` to start: a shell wrapper around ours."""
    script = folder / "slowpython"
    script.write_text(f'#!/bin/sh\nsleep {seconds}\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script


class Terminal:
    """A command on a pseudo-terminal of its own (it is the session leader: Ctrl-C there is SIGINT)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: nothing but exec
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.seen = b""
        self.status: int | None = None

    def read_until(self, needle: str, timeout: float = 20) -> str:
        """What the terminal showed up to and with ``needle`` (consumed)."""
        wanted = needle.replace("\n", "\r\n").encode()  # the terminal ends lines with CR LF
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{needle!r} never appeared; the terminal shows: {self.seen[-3000:]!r}")
        index = self.seen.index(wanted) + len(wanted)
        before, self.seen = self.seen[:index], self.seen[index:]
        return before.decode("utf-8", "replace").replace("\r\n", "\n")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the other end is closed
            return False
        self.seen += chunk
        return bool(chunk)

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 20) -> int:
        """The exit status, reading what is still shown meanwhile."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; the terminal shows: {self.seen[-3000:]!r}")
            self._read(0.05)
        while self._read(0.05) and select.select([self.fd], [], [], 0)[0]:
            pass
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def stderr_on_terminal(args: list[str], timeout: float = 30) -> tuple[int, bytes, str]:
    """Run the command with stdout on a pipe and stderr on a pseudo-terminal; (status, stdout, terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=cli_env(TERM="xterm"))
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the command closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=10)
        assert proc.stdout is not None
        out = proc.stdout.read()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return status, out, seen.decode("utf-8", "replace").replace("\r\n", "\n")


# -- run: the code, as python runs a script ------------------------------------------


def test_run_code_on_the_default_gateway():
    result = execwire("run", "-c", "import os, sys; print('hello from', os.getpid(), __name__, sys.argv)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hello from ")
    pid, name, argv = result.stdout.split(None, 4)[2:]
    assert int(pid) != os.getpid() and name == "__main__" and argv == "['-c']\n"
    assert result.stderr == ""  # not a terminal: nothing extra


def test_run_file_runs_as_main_with_argv_file_and_a_traceback_like_python_s(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\n"
        "from dataclasses import dataclass\n"
        "import helper\n"
        "\n"
        "@dataclass\n"
        "class Point:\n"
        "    x: int\n"
        "\n"
        "def fail():\n"
        "    raise ValueError('bad ' + sys.argv[1])\n"
        "\n"
        "if __name__ == '__main__':\n"
        "    print(__file__, sys.argv, helper.NAME, Point(1))\n"
        "    fail()\n")
    (tmp_path / "helper.py").write_text("NAME = 'helper next to the script'\n")
    result = execwire("run", "job.py", "one", "--two", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == f"{script} ['job.py', 'one', '--two'] helper next to the script Point(x=1)\n"
    plain = subprocess.run([sys.executable, "job.py", "one", "--two"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=30)
    assert plain.returncode == 1
    assert result.stderr == plain.stderr  # the same traceback: FILE named, its lines shown, no execwire frames
    assert f'File "{script}", line 10, in fail' in result.stderr


def test_dash_c_gets_its_arguments_and_tracebacks_name_string():
    result = execwire("run", "-c", "import sys; print(sys.argv); 1/0", "--", "-x", "y")
    assert result.returncode == 1
    assert result.stdout == "['-c', '-x', 'y']\n"
    lines = result.stderr.splitlines()
    assert lines[:3] == ["Traceback (most recent call last):", '  File "<string>", line 1, in <module>',
                         "    import sys; print(sys.argv); 1/0"]  # the line is shown, unlike python -c before 3.13
    assert lines[-1] == "ZeroDivisionError: division by zero" and len(lines) <= 5


def test_a_syntax_error_is_shown_as_python_shows_it(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("print('fine')\nif True print('not')\n")
    result = execwire("run", str(script))
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f'File "{script}", line 2' in result.stderr and "SyntaxError" in result.stderr


@pytest.mark.parametrize(("code", "status", "stderr"), [
    ("import sys; print('bye'); sys.exit(0)", 0, ""),
    ("import sys; sys.exit()", 0, ""),
    ("import sys; sys.exit(3)", 3, ""),
    ("raise SystemExit(42)", 42, ""),
    ("import sys; sys.exit('no config found')", 1, "no config found\n"),
    ("exit(7)", 7, ""),
])
def test_the_far_exit_status_becomes_the_command_s(code, status, stderr):
    result = execwire("run", "-c", code)
    assert (result.returncode, result.stderr) == (status, stderr)


def test_several_gateways_exit_with_the_highest_status_and_say_which_gave_what():
    code = "import os, sys; print('ran'); sys.exit(int(os.environ['CODE']))"
    result = execwire("run", "--on", "popen//id=a//env:CODE=0", "--on", "popen//id=b//env:CODE=5",
                      "--on", "popen//id=c//env:CODE=2", "--on", "popen//id=d//env:CODE=5", "-c", code)
    assert result.returncode == 5
    assert sorted(result.stdout.splitlines()) == ["[a] ran", "[b] ran", "[c] ran", "[d] ran"]
    assert result.stderr == "execwire: exit status 5: 5 from b, d (exit 5); 2 from c (exit 2); 0 from 1 other\n"


def test_run_a_file_prints_output_and_items_in_order(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "channel.send('1')\n"
        "channel.send(1)\n"
        "channel.send(b'raw')\n"
        "channel.send([1, 'x'])\n"
        "channel.send('two\\nlines')\n"
        "sys.stdout.write('no newline at the end')\n")
    result = execwire("run", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("to stdout\n'1'\n1\nb'raw'\n[1, 'x']\n'two\\nlines'\nno newline at the end")
    assert result.stderr == "to stderr\n"


def test_output_and_items_of_one_gateway_keep_the_order_it_made_them():
    code = (
        "import sys\n"
        "for i in range(300):\n"
        "    print('p%d' % i)\n"
        "    channel.send('s%d' % i)\n"
        "    if i % 30 == 0:\n"
        "        print('e%d' % i, file=sys.stderr)\n"
        "        sys.stdout.buffer.write(b'b%d\\n' % i)\n")
    expected = []
    for i in range(300):
        expected += [f"p{i}", f"'s{i}'"] + ([f"e{i}", f"b{i}"] if i % 30 == 0 else [])
    merged = subprocess.run([*CLI, "run", "-c", code], capture_output=False, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=30, env=cli_env())
    assert merged.returncode == 0
    assert merged.stdout.splitlines() == expected
    several = execwire("run", "--on", "popen//id=a", "--on", "popen//id=b", "-c", code)
    assert several.returncode == 0, several.stderr
    for name in ("a", "b"):
        mine = [line[len(name) + 3:] for line in several.stdout.splitlines() if line.startswith(f"[{name}] ")]
        assert mine == [line for line in expected if line[0] in "p'b"]


def test_what_subprocesses_print_arrives_too():
    result = execwire("run", "-c", "import subprocess, sys; subprocess.run(['echo', 'from a child'])")
    assert result.returncode == 0 and result.stdout == "from a child\n"


def test_run_reads_code_from_stdin_with_the_console_script():
    script = Path(sys.executable).parent / "execwire"
    if not script.exists():
        pytest.skip("the execwire console script is not installed next to this python")
    result = subprocess.run([str(script), "run", "-"], input="import sys\nchannel.send(sys.version_info[:2])\n",
                            capture_output=True, text=True, timeout=30, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tuple(sys.version_info[:2])!r}\n"


def test_the_command_waits_for_threads_the_code_left_running():
    code = ("import threading, time\n"
            "def late():\n"
            "    time.sleep(0.3)\n"
            "    print('from the thread')\n"
            "threading.Thread(target=late).start()\n"
            "print('main code done')\n")
    result = execwire("run", "-c", code)
    assert (result.returncode, result.stdout) == (0, "main code done\nfrom the thread\n")


def test_a_far_process_that_dies_gives_its_exit_status():
    result = execwire("run", "-c", "import os; os._exit(5)")
    assert result.returncode == 5
    assert result.stderr.startswith("execwire: gw0: gateway lost while the code ran (exit code 5): ")
    killed = execwire("run", "--on", "popen//id=a,popen//id=b", "-c",
                      "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.returncode == 128 + signal.SIGKILL
    assert killed.stderr.splitlines()[-1] == "execwire: exit status 137: 137 from a, b (lost (SIGKILL))"


def test_a_gateway_others_start_through_stays_up_until_they_end():
    code = "import threading; print('main thread' if threading.current_thread() is threading.main_thread() else 'x')"
    result = execwire("run", "--on", "popen//id=middle", "--on", "popen//via=middle//id=inner", "-c", code)
    assert result.returncode == 0, result.stderr
    # the middle gateway runs the code in a worker thread: main_thread_only would refuse the second remote_exec
    # that starts the inner gateway while the code runs
    assert sorted(result.stdout.splitlines()) == ["[inner] main thread", "[middle] x"]


# -- run: standard input --------------------------------------------------------------


def test_stdin_reaches_the_far_code():
    assert execwire("run", "-c", "print(input())", stdin="hi\n").stdout == "hi\n"
    data = os.urandom(3 * 1024 * 1024 + 17)
    code = ("import hashlib, sys\n"
            "data = sys.stdin.buffer.read()\n"
            "print(len(data), hashlib.sha256(data).hexdigest())\n")
    result = execwire("run", "-c", code, stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


def test_each_of_several_gateways_reads_its_own_copy_of_stdin():
    code = "import sys; lines = sys.stdin.read().splitlines(); print(len(lines), lines[0], lines[-1])"
    text = "".join(f"line {number}\n" for number in range(20000))
    result = execwire("run", "--on", "popen//id=a", "--on", "popen//id=b", "--on", "popen//id=c", "-c", code,
                      stdin=text)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [f"[{name}] 20000 line 0 line 19999" for name in "abc"]


def test_stdin_is_read_only_when_the_far_code_asks():
    result = shell_pipeline("printf 'one\\ntwo\\n' | { EXECWIRE run -c 'print(1)'; cat; }")
    assert result.stdout == "1\none\ntwo\n", result.stderr
    asked = shell_pipeline("printf 'one\\ntwo\\n' | { EXECWIRE run -c 'print(input())'; cat; }")
    assert asked.stdout.splitlines()[0] == "one", asked.stderr


def test_no_stdin_option_gives_an_empty_stdin():
    result = execwire("run", "-n", "-c", "import sys; print(repr(sys.stdin.read()))", stdin="not for you\n")
    assert result.stdout == "''\n"


# -- run: pipes and output forms ----------------------------------------------------------


@pytest.mark.parametrize("how", ["print", "send"])
def test_a_closed_stdout_stops_the_far_side_at_once(tmp_path, how):
    pid_file = tmp_path / "pid"
    code = (
        "import itertools, os\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "for number in itertools.count():\n"
        + ("    print(number)\n" if how == "print" else "    channel.send(number)\n"))
    result = shell_pipeline(f"EXECWIRE run -c {shlex.quote(code)} | head -2; echo \"status ${{PIPESTATUS[0]}}\"")
    assert result.stdout == "0\n1\nstatus 141\n"
    assert result.stderr == ""  # no traceback about the broken pipe
    assert wait_gone(int(pid_file.read_text())), "the far side ran on after stdout was closed"


def test_head_1_with_several_gateways_stops_them_all(tmp_path):
    code = (
        "import itertools, os, sys\n"
        f"open(os.path.join({str(tmp_path)!r}, str(os.getpid())), 'w').close()\n"
        "for number in itertools.count():\n"
        "    print(number)\n")
    specs = " ".join(f"--on popen//id=g{number}" for number in range(3))
    result = shell_pipeline(f"EXECWIRE run {specs} -c {shlex.quote(code)} | head -1; echo \"${{PIPESTATUS[0]}}\"")
    assert result.stdout.splitlines()[1] == "141" and re.fullmatch(r"\[g\d\] 0", result.stdout.splitlines()[0])
    pids = [int(name) for name in os.listdir(tmp_path)]
    assert pids and all(wait_gone(pid) for pid in pids)


def test_json_output_one_object_per_line():
    code = (
        "import os, sys\n"
        "print('out', os.environ['NAME'])\n"
        "channel.send([1, 'x'])\n"
        "channel.send(b'raw')\n"
        "print('err', file=sys.stderr)\n"
        "sys.exit(int(os.environ['CODE']))\n")
    result = execwire("run", "--json", "--on", "popen//id=a//env:NAME=A//env:CODE=0",
                      "--on", "popen//id=b//env:NAME=B//env:CODE=2", "-c", code)
    assert result.returncode == 2
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for name, code_value in (("a", 0), ("b", 2)):
        mine = [record for record in records if record["gateway"] == name]
        assert [record["kind"] for record in mine] == ["stdout", "item", "item", "stderr", "exit"]
        assert mine[0]["value"] == f"out {name.upper()}\n"
        assert mine[1]["value"] == [1, "x"]
        assert mine[2]["value"] is None and mine[2]["repr"] == "b'raw'"
        assert mine[3]["value"] == "err\n"
        assert mine[4]["value"] == code_value and mine[4]["status"] == ("ok" if code_value == 0 else "exit")
        assert isinstance(mine[4]["seconds"], float)
    assert "exit status 2" in result.stderr


def test_json_exit_record_of_a_gateway_that_could_not_start():
    result = execwire("run", "--json", "--on", "popen//id=bad//python=/nonexistent/python9", "-c", "pass")
    assert result.returncode == 3
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["kind"] == "exit" and record["value"] == 3 and record["status"] == "failed"
    assert "/nonexistent/python9" in record["error"]


def test_group_output_keeps_each_gateway_s_lines_together():
    code = (
        "import sys, time\n"
        "for i in range(6):\n"
        "    print('line', i, flush=True)\n"
        "    time.sleep(0.02)\n"
        "print('oops', file=sys.stderr)\n")
    result = execwire("run", "--group-output", "--on", "popen//id=a", "--on", "popen//id=b", "-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines) == sorted(f"[{name}] line {i}" for name in "ab" for i in range(6))
    first = lines[0][:3]
    assert lines[:6] == [f"{first} line {i}" for i in range(6)], "the lines of one gateway were not kept together"
    assert sorted(result.stderr.splitlines()) == ["[a] oops", "[b] oops"]


def test_several_gateways_prefix_every_line_without_interleaving():
    code = (
        "import sys\n"
        "for i in range(200):\n"
        "    sys.stdout.write('x' * 150)\n"
        "    sys.stdout.flush()\n"  # half a line travels on its own
        "    sys.stdout.write('y' * 150 + ' %d\\n' % i)\n"
        "    sys.stdout.flush()\n"
        "    if i % 50 == 0:\n"
        "        sys.stderr.write('err %d\\n' % i)\n"
        "channel.send('item\\nsecond line')\n"
        "sys.stdout.write('unfinished')\n")
    result = execwire("run", "--on", "popen//id=a", "--on", "popen//id=b", "--on", "popen", "-c", code)
    assert result.returncode == 0, result.stderr
    seen: dict[str, list[int]] = {"a": [], "b": [], "gw0": []}
    pattern = re.compile(r"\[(a|b|gw0)\] x{150}y{150} (\d+)")
    others = []
    for line in result.stdout.splitlines():
        match = pattern.fullmatch(line)
        if match:
            seen[match.group(1)].append(int(match.group(2)))
        else:
            others.append(line)
    assert seen == {name: list(range(200)) for name in seen}
    assert sorted(others) == sorted(f"[{name}] {text}" for name in seen
                                    for text in ("'item\\nsecond line'", "unfinished"))
    assert sorted(result.stderr.splitlines()) == sorted(f"[{name}] err {i}" for name in seen for i in range(0, 200, 50))


def test_gateways_run_side_by_side(tmp_path):
    # a rendezvous, not a stopwatch: each far side checks in, then waits (up to 6 s) until all 4 have; run one
    # after another, the first ones wait alone and say so (a time bound here failed on a busy machine)
    code = (
        "import os, time\n"
        f"folder = {str(tmp_path)!r}\n"
        "open(os.path.join(folder, str(os.getpid())), 'w').close()\n"
        "deadline = time.monotonic() + 6\n"
        "while len(os.listdir(folder)) < 4 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print('all 4 running' if len(os.listdir(folder)) == 4 else 'ran alone')\n")
    specs = [arg for number in range(4) for arg in ("--on", f"popen//id=g{number}")]
    result = execwire("run", *specs, "-c", code)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [f"[g{number}] all 4 running" for number in range(4)], (
        "the 4 gateways did not run at once")


def test_remote_error_exits_1_with_the_prefixed_traceback():
    code = (
        "import os\n"
        "print('before')\n"
        "if os.environ['FAIL'] == '1':\n"
        "    raise ValueError('boom')\n"
        "print('after')\n")
    result = execwire("run", "--on", "popen//id=ok//env:FAIL=0", "--on", "popen//id=bad//env:FAIL=1", "-c", code)
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()
    assert "[bad] before" in out and "[ok] before" in out and "[ok] after" in out
    assert "[bad] after" not in out
    *err, summary = result.stderr.splitlines()
    assert err == ["[bad] Traceback (most recent call last):", '[bad]   File "<string>", line 4, in <module>',
                   "[bad]     raise ValueError('boom')", "[bad] ValueError: boom"]
    assert summary == "execwire: exit status 1: 1 from bad (raised ValueError); 0 from 1 other"


# -- many gateways: lists, hosts files, --max-parallel, --timeout ---------------------------


def test_on_lists_and_hosts_files(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# the web servers\n"
                     "popen//id=web1\n"
                     "\n"
                     "   popen//id=web2//env:ROLE=spare   # trailing comment\n"
                     "#popen//id=commented-out\n")
    result = execwire("run", "--on", f"@{hosts}", "--on", "popen//id=x,popen//id=y",
                      "-c", "import os; print(os.environ.get('ROLE', 'main'))")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["[web1] main", "[web2] spare", "[x] main", "[y] main"]


@pytest.mark.parametrize(("content", "message"), [
    ("popen//id=a\npopen//pyhton=python3\n", r"hosts\.txt:2: --on 'popen//pyhton=python3': .*'pyhton'"),
    ("# nothing but a comment\n\n", r"hosts\.txt: the hosts file names no gateway"),
    ("popen//id=a\npopen//id=a\n", r"hosts\.txt:2: gateway id 'a' is given by two --on specs"),
])
def test_a_bad_hosts_file_is_a_usage_error_naming_the_line(tmp_path, content, message):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(content)
    result = execwire("run", "--on", f"@{hosts}", "-c", "print('must not run')")
    assert result.returncode == 2 and result.stdout == ""
    assert re.search(message, result.stderr), result.stderr


def test_missing_hosts_file_and_empty_list_items_are_usage_errors(tmp_path):
    missing = execwire("run", "--on", f"@{tmp_path / 'nope.txt'}", "-c", "1")
    assert missing.returncode == 2 and "cannot read the hosts file" in missing.stderr
    empty = execwire("run", "--on", "popen,,popen", "-c", "1")
    assert empty.returncode == 2 and "empty spec" in empty.stderr


def _concurrency_code(folder: Path) -> str:
    """Far code that checks in and sends how many far jobs are alive at that moment."""
    return (
        "import os\n"
        f"folder = {str(folder)!r}\n"
        "open(os.path.join(folder, str(os.getpid())), 'w').close()\n"
        "def alive(pid):\n"
        "    try:\n"
        "        with open('/proc/%s/stat' % pid) as stat:\n"
        "            return stat.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')\n"
        "    except OSError:\n"
        "        return False\n"
        "channel.send(sum(alive(name) for name in os.listdir(folder)))\n")


def test_max_parallel_bounds_the_gateways_alive_at_once(tmp_path):
    specs = [arg for number in range(6) for arg in ("--on", f"popen//id=g{number}")]
    result = execwire("run", "--max-parallel", "2", *specs, "-c", _concurrency_code(tmp_path))
    assert result.returncode == 0, result.stderr
    counts = [int(line.split()[1]) for line in result.stdout.splitlines()]
    assert len(counts) == 6 and max(counts) <= 2
    assert len(os.listdir(tmp_path)) == 6


@pytest.mark.timeout(150)
def test_200_gateways_from_a_hosts_file_twenty_at_a_time(tmp_path):
    folder = tmp_path / "pids"
    folder.mkdir()
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# 200 local gateways\n" + "".join(f"popen//id=h{number:03d}\n" for number in range(200)))
    started = time.monotonic()
    result = execwire("run", "--on", f"@{hosts}", "--max-parallel", "20", "-c", _concurrency_code(folder),
                      timeout=140)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # all good: no summary line off a terminal
    ids = sorted(line.split()[0] for line in result.stdout.splitlines())
    assert ids == [f"[h{number:03d}]" for number in range(200)]
    assert max(int(line.split()[1]) for line in result.stdout.splitlines()) <= 20
    print(f"200 popen gateways, 20 at a time: {elapsed:.1f} s")


def test_timeout_is_per_gateway():
    # one after another, 3 gateways of 2 s each take longer than the 5 s --timeout: each has its own 5 s
    code = "import time; time.sleep(2); print('done')"
    result = execwire("run", "--timeout", "5", "--max-parallel", "1", "--on", "popen,popen,popen", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[gw0] done", "[gw1] done", "[gw2] done"]


def test_timeout_exits_4_and_leaves_no_far_process():
    code = (
        "import os, time\n"
        "channel.send(os.getpid())\n"
        "time.sleep(float(os.environ['SLEEP']))\n"
        "print('finished')\n")
    started = time.monotonic()
    result = execwire("run", "--timeout", "1.5", "--on", "popen//id=slow//env:SLEEP=60",
                      "--on", "popen//id=quick//env:SLEEP=0", "-c", code)
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    assert elapsed < 10
    out = result.stdout.splitlines()
    assert "[quick] finished" in out and "[slow] finished" not in out
    assert re.search(r"^\[slow\] still running after 1\.5 seconds \(--timeout\)", result.stderr, re.M)
    assert result.stderr.splitlines()[-1] == "execwire: exit status 4: 4 from slow (timed out); 0 from 1 other"
    pids = [int(line.split()[1]) for line in out if line.split()[1].isdigit()]
    assert len(pids) == 2
    assert all(wait_gone(pid) for pid in pids), "a far process outlived the command"


def test_ctrl_c_terminates_the_gateways(tmp_path):
    code = "import os, time\nchannel.send(os.getpid())\ntime.sleep(60)\n"
    proc = subprocess.Popen([*CLI, "run", "--on", "popen", "--on", "popen", "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert proc.stdout is not None and proc.stderr is not None
        pids = [int(proc.stdout.readline().split()[1]) for _ in range(2)]  # both are running now
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert "interrupted" in proc.stderr.read()
        assert all(wait_gone(pid) for pid in pids), "a far process outlived Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "key"), [
    ("popen//pyhton=python3", "'pyhton'"),
    ("popen//nice=", "'nice'"),
    ("popen//chdir=/a//chdir=/b", "'chdir'"),
    ("rsh=host", "'rsh'"),
    ("popen//timeout=-1", "'timeout'"),
    ("popen//timeout=0", "'timeout'"),
])
def test_bad_spec_exits_2_naming_the_key(spec, key):
    result = execwire("run", "--on", "popen", "--on", spec, "-c", "print('must not run')")
    assert result.returncode == 2
    assert key in result.stderr and "usage: execwire run" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_usage_errors_exit_2(tmp_path):
    nothing = execwire("run")
    assert nothing.returncode == 2 and "nothing to run" in nothing.stderr
    twice = execwire("run", "--on", "popen//id=x", "--on", "popen//id=x", "-c", "1")
    assert twice.returncode == 2 and "'x'" in twice.stderr
    for option, value in (("--timeout", "soon"), ("--timeout", "-1"), ("--max-parallel", "0"),
                          ("--max-parallel", "many")):
        bad = execwire("run", option, value, "-c", "1")
        assert bad.returncode == 2 and option in bad.stderr, (option, value)
    missing = execwire("run", str(tmp_path / "missing.py"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.parametrize("how", ["no such file", "exits at once"])
def test_gateway_that_cannot_start_exits_3_and_the_others_still_run(tmp_path, how):
    if how == "no such file":
        python = "/nonexistent/python9"
    else:
        python = str(tmp_path / "brokenpython")
        Path(python).write_text("#!/bin/sh\necho 'broken interpreter' >&2\nexit 1\n")
        Path(python).chmod(0o755)
    result = execwire("run", "--on", f"popen//id=bad//python={python}", "--on", "popen//id=good",
                      "-c", "print('still here')")
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["[good] still here"]
    failure = [line for line in result.stderr.splitlines() if "could not start:" in line]
    assert len(failure) == 1 and failure[0].startswith("[bad] ") and python in failure[0]
    assert result.stderr.splitlines()[-1] == "execwire: exit status 3: 3 from bad (could not start); 0 from 1 other"


def test_a_start_up_timeout_names_its_seconds(tmp_path):
    slow = tmp_path / "mutepython"  # it never answers (and leaves no child behind when killed)
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    result = execwire("run", "--on", f"popen//python={slow}//timeout=1", "-c", "print('never')")
    assert result.returncode == 3
    assert "within 1 seconds" in result.stderr and "within 0 seconds" not in result.stderr, result.stderr


# -- on several far Pythons ---------------------------------------------------------------


def _some_far_pythons() -> list[pythons.Interpreter]:
    """The oldest and the newest CPython, and PyPy, of those on this machine."""
    found = pythons.matrix()
    cpythons = [interpreter for interpreter in found if interpreter.implementation == "cpython"]
    wanted = {cpythons[0].name, cpythons[-1].name} if cpythons else set()
    return [interpreter for interpreter in found if interpreter.name in wanted or interpreter.name == pythons.PYPY]


@pytest.mark.parametrize("far", _some_far_pythons(), ids=lambda interpreter: interpreter.name)
def test_run_on_old_and_new_far_pythons(far, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\n"
        "def fail():\n"
        "    raise KeyError(name)\n"
        "if __name__ == '__main__':\n"
        "    name = input()\n"
        "    print('hello', name, sys.argv[1:])\n"
        "    channel.send(sys.version_info[:2])\n"
        "    print('last', file=sys.stderr)\n"
        "    if name == 'fail':\n"
        "        fail()\n"
        "    sys.exit(9)\n")
    spec = f"popen//python={shlex.quote(far.command)}"
    result = execwire("run", "--on", spec, str(script), "a", stdin="world\n")
    assert (result.returncode, result.stdout, result.stderr) == (
        9, f"hello world ['a']\n{tuple(far.version[:2])!r}\n", "last\n")
    failed = execwire("run", "--on", spec, str(script), stdin="fail\n")
    assert failed.returncode == 1
    shown = [line for line in failed.stderr.splitlines() if line.strip(" ~^")]  # 3.11+ marks the spot below
    assert shown == [
        "last", "Traceback (most recent call last):", f'  File "{script}", line 10, in <module>', "    fail()",
        f'  File "{script}", line 3, in fail', "    raise KeyError(name)", "KeyError: 'fail'"]


# -- info ----------------------------------------------------------------------


def test_info_prints_one_block_per_gateway(tmp_path):
    far_dir = tmp_path / "far"
    result = execwire("info", "--on", "popen", "--on", f"popen//id=there//chdir={far_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    blocks = {}
    for block in result.stdout.strip().split("\n\n"):
        head, *rest = block.splitlines()
        pairs = (line.split(":", 1) for line in rest)
        blocks[head.rstrip(":")] = {key.strip(): value.strip() for key, value in pairs}
    assert list(blocks) == ["gw0", "there"]
    for facts in blocks.values():
        assert set(facts) == {"spec", "executable", "version", "implementation", "platform", "pid", "cwd"}
        assert os.path.realpath(facts["executable"]) == os.path.realpath(sys.executable)
        assert facts["version"] == "%d.%d.%d" % sys.version_info[:3]
        assert facts["implementation"] == sys.implementation.name and facts["platform"] == sys.platform
        assert int(facts["pid"]) != os.getpid()
    assert blocks["gw0"]["spec"] == "popen" and blocks["gw0"]["cwd"] == str(tmp_path)
    assert blocks["there"]["cwd"] == str(far_dir)
    assert blocks["gw0"]["pid"] != blocks["there"]["pid"]


def test_info_json_one_object_per_gateway_and_failures_exit_3(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("popen//id=two//python=/nonexistent/python9\n")
    result = execwire("info", "--json", "--max-parallel", "1", "--on", "popen//id=one", "--on", f"@{hosts}")
    assert result.returncode == 3
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["id"] for record in records] == ["one", "two"]
    one, two = records
    assert one["spec"] == "popen//id=one" and "error" not in one
    assert one["version_info"][:3] == list(sys.version_info[:3])
    assert isinstance(one["pid"], int) and one["cwd"] == os.getcwd()
    assert "/nonexistent/python9" in two["error"]
    assert "[two] could not start" in result.stderr


# -- help and the terminal -------------------------------------------------------


def test_help_is_complete():
    top = execwire("--help")
    assert top.returncode == 0
    for command in ("run", "info", "shell", "rsync"):
        assert re.search(rf"^    {command} ", top.stdout, re.M), command
    for command in ("run", "info", "shell", "rsync"):
        text = execwire(command, "--help").stdout
        for needle in ("popen//python=python3.12", "ssh=host//python=python3", "socket=127.0.0.1:8888",
                       "via=ID", "env:NAME=value", "chdir=", "nice=", "id=NAME", "timeout=SECONDS", "@hosts.txt",
                       "EXECWIRE_DEBUG", "exit status"):
            assert needle in text, (command, needle)
    run_help = execwire("run", "--help").stdout
    for needle in ("--on SPEC", "--timeout SECONDS", "--max-parallel N", "--json", "--group-output", "--summary",
                   "--no-stdin", "-c CODE", "sys.argv", "__main__", "__file__", "ARG", "head -1", "141", "130",
                   "highest", "standard input", "own copy", "order it happened", "repr", '"kind"'):
        assert needle in run_help.replace("\n", " ").replace("  ", " ") or needle in run_help, needle
    assert all(f"  {status}  " in run_help for status in ("N", "1", "2", "3", "4", "130", "141"))
    assert "--json" in execwire("info", "--help").stdout
    shell_help = execwire("shell", "--help").stdout
    for needle in ("readline", "Tab", "Ctrl-C", "Ctrl-D", "history", "EXECWIRE_HISTORY"):
        assert needle in shell_help, needle
    rsync_help = execwire("rsync", "--help").stdout
    for needle in ("SRC SPEC:DEST", "--on SPEC", "--delete", "--max-parallel N", "--timeout SECONDS", "-v, --verbose",
                   "-q, --quiet", "progress bar", "sha256", "symlinks", "socket=127.0.0.1:8888:/srv/app",
                   "@hosts.txt"):
        assert needle in rsync_help, needle
    assert all(f"  {status}  " in rsync_help for status in ("0", "1", "2", "3", "4", "130"))
    assert "popen//python=python3.12" in top.stdout and "EXECWIRE_DEBUG" in top.stdout
    assert "execwire rsync:" in top.stdout


def test_python_dash_m_and_no_command():
    result = execwire()
    assert result.returncode == 2 and "usage: execwire" in result.stderr


def test_status_lines_on_a_terminal(tmp_path):
    slow = slow_python(tmp_path, 0.5)
    status, out, text = stderr_on_terminal(
        ["run", "--no-summary", "--on", f"popen//id=good//python={slow}",
         "--on", "popen//id=bad//python=/nonexistent/python9", "-c", "print('ran')"])
    assert status == 3
    assert out == b"[good] ran\n"  # stdout is a pipe: no status there
    draws = text.split("\x1b[J")
    assert len(draws) >= 2, f"the status block was never updated in place: {text!r}"
    first = draws[0].splitlines()
    assert any(re.match(r"good\s+popen//id=good//python=\S+\s+starting", line) for line in first), text
    last = [line.strip() for line in draws[-1].splitlines() if line.strip()]
    assert any(re.match(r"good\s+\S+\s+up$", line) for line in last), text
    assert any(re.match(r"bad\s+\S+\s+failed: cannot start ", line) for line in last), text
    assert "[bad] could not start" in text
    assert "exit status" not in text  # --no-summary


def test_summary_table_on_a_terminal():
    code = "import os, sys\nif os.environ['DO'] == 'raise':\n    raise ValueError\nsys.exit(int(os.environ['DO']))\n"
    status, out, text = stderr_on_terminal(
        ["run", "--on", "popen//id=fine//env:DO=0", "--on", "popen//id=three//env:DO=3",
         "--on", "popen//id=oops//env:DO=raise", "--on", "popen//id=gone//python=/nonexistent/python9",
         "-c", code])
    assert status == 3 and out == b""
    table = text[text.index("gateway  "):].splitlines()
    assert re.fullmatch(r"gateway\s+status\s+time\s+exit", table[0])
    rows = {row.split()[0]: row for row in table[1:5]}
    assert re.fullmatch(r"fine\s+ok\s+\d+\.\d\ds\s+0", rows["fine"])
    assert re.fullmatch(r"three\s+exit 3\s+\d+\.\d\ds\s+3", rows["three"])
    assert re.fullmatch(r"oops\s+raised ValueError\s+\d+\.\d\ds\s+1", rows["oops"])
    assert re.fullmatch(r"gone\s+could not start\s+\d+\.\d\ds\s+3", rows["gone"])
    assert table[5] == "exit status 3 (the highest)"


def test_summary_can_be_asked_for_off_a_terminal():
    result = execwire("run", "--summary", "-c", "print('one')")
    assert result.returncode == 0 and result.stdout == "one\n"
    assert re.fullmatch(r"gateway\s+status\s+time\s+exit\ngw0\s+ok\s+\d+\.\d\ds\s+0\nexit status 0\n", result.stderr)


# -- shell ----------------------------------------------------------------------------


@pytest.fixture
def shell_env(tmp_path):
    return cli_env(HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null")


def test_shell_on_a_terminal_edits_completes_interrupts_and_leaves(tmp_path, shell_env):
    terminal = Terminal([*CLI, "shell", "popen//id=far"], shell_env)
    try:
        banner = terminal.read_until(">>> ")
        assert "execwire shell on far (popen//id=far): Python" in banner and "Ctrl-D leaves" in banner
        terminal.write("unique_name_abc = 41\n")
        terminal.read_until(">>> ")
        terminal.write("unique_na\t + 1\n")  # Tab completes the far name
        assert "unique_name_abc + 1\n42\n" in terminal.read_until(">>> ")
        terminal.write("\x1b[A\n")  # the arrow up: the line before again
        assert "unique_name_abc + 1\n42\n" in terminal.read_until(">>> ")
        terminal.write("import os, time; pid = os.getpid()\n")
        terminal.read_until(">>> ")
        terminal.write("print('sle' + 'eping'); time.sleep(60)\n")
        terminal.read_until("sleeping\n")
        terminal.write("\x03")  # Ctrl-C interrupts the far statement
        interrupted = terminal.read_until(">>> ")
        assert "KeyboardInterrupt" in interrupted and "execwire" not in interrupted
        terminal.write("print('same', pid == os.getpid())\n")  # the same far process: the gateway stayed
        assert "same True\n" in terminal.read_until(">>> ")
        terminal.write("for i in range(3):\n")
        terminal.read_until("... ")
        terminal.write("    channel.send(i * 10)\n\n")
        assert "0\n10\n20\n" in terminal.read_until(">>> ")
        terminal.write("answer = input('name' + '? ')\n")
        terminal.read_until("name? ")
        terminal.write("Ada\n")  # the far input() reads our terminal
        assert "Traceback" not in terminal.read_until(">>> ")
        terminal.write("answer\n")
        assert "'Ada'" in terminal.read_until(">>> ")
        terminal.write("1/0\n")
        assert "ZeroDivisionError: division by zero" in terminal.read_until(">>> ")
        terminal.write("\x04")  # Ctrl-D leaves
        assert terminal.wait() == 0
        assert wait_gone(int(_far_pid(terminal, banner)))
    finally:
        terminal.close()
    history = (tmp_path / ".execwire_history").read_text()
    assert "unique_name_abc = 41" in history and "1/0" in history


def _far_pid(terminal: Terminal, banner: str) -> str:
    match = re.search(r"pid (\d+),", banner)
    assert match, banner
    return match.group(1)


def _waits_on_terminal(pid: int) -> bool:
    """True while process ``pid``'s main thread sleeps in a poll (readline waiting for the terminal, once the
    prompt is out)."""
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            where = wchan.read()
    except OSError:
        return False
    return "poll" in where or "select" in where


@pytest.mark.parametrize("far", _some_far_pythons(), ids=lambda interpreter: interpreter.name)
def test_shell_ctrl_c_interrupts_a_busy_loop_and_a_far_read(shell_env, far):
    terminal = Terminal([*CLI, "shell", f"popen//python={shlex.quote(far.command)}"], shell_env)
    try:
        terminal.read_until(">>> ")
        terminal.write("n = 0\n")
        terminal.read_until(">>> ")
        terminal.write("while True:\n")
        terminal.read_until("... ")
        terminal.write("    n += 1\n")
        terminal.read_until("... ")
        terminal.write("    if n == 1: print('sp' + 'inning')\n")
        terminal.read_until("... ")
        terminal.write("\n")
        terminal.read_until("spinning\n")
        terminal.write("\x03")
        assert "KeyboardInterrupt" in terminal.read_until(">>> ")
        terminal.write("input('wai' + 'ting? ')\n")
        terminal.read_until("waiting? ")
        terminal.write("\x03")
        assert "KeyboardInterrupt" in terminal.read_until(">>> ")
        terminal.write("print('still', n > 0)\n")
        assert "still True" in terminal.read_until(">>> ")
        # at the prompt: this side's KeyboardInterrupt, as python's prompt does; sent once the shell waits
        # in its terminal read (the prompt is printed a moment before that, and a loaded machine widens it)
        wait_until(lambda: _waits_on_terminal(terminal.pid), 10)
        terminal.write("\x03")
        assert "KeyboardInterrupt" in terminal.read_until(">>> ")
        terminal.write("import sys; sys.exit(4)\n")
        assert terminal.wait() == 4
    finally:
        terminal.close()


def test_shell_reads_statements_from_a_pipe():
    statements = ("x = 6 * 7\nx\nfor i in range(2):\n    print(i)\n\nchannel.send(b'q')\n1/0\n"
                  "name = input()\nhello there\nname\nimport sys; sys.exit(5)\nprint('not reached')\n")
    result = execwire("shell", stdin=statements)
    assert result.returncode == 5
    assert result.stdout == "42\n0\n1\nb'q'\n'hello there'\n"
    assert result.stderr == ('Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\n'
                             "ZeroDivisionError: division by zero\n")


def test_shell_bad_input():
    assert execwire("shell", "popen//pyhton=3").returncode == 2
    thread = execwire("shell", "popen//execmodel=thread")
    assert thread.returncode == 2 and "main thread" in thread.stderr
    dead = execwire("shell", "popen//python=/nonexistent/python9", stdin="1\n")
    assert dead.returncode == 3 and "/nonexistent/python9" in dead.stderr


# -- rsync ----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """A directory to copy: a script with its mode, a nested file of several chunks, a symlink."""
    root = tmp_path / "site"
    (root / "static").mkdir(parents=True)
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o750)
    (root / "static" / "blob.bin").write_bytes(os.urandom(3 << 20))
    (root / "current").symlink_to("static/blob.bin")
    return root


def same_tree(source: Path, copy: Path) -> bool:
    """Same names, contents, modes and link targets (what a user of rsync checks)."""
    def listing(root: Path) -> list[tuple[str, int, str]]:
        found = []
        for path in sorted(root.rglob("*")):
            mode = os.lstat(path).st_mode
            if path.is_symlink():
                what = "-> " + os.readlink(path)
            elif path.is_file():
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = "dir"
            found.append((str(path.relative_to(root)), mode, what))
        return found

    return listing(source) == listing(copy)


def test_rsync_copies_a_tree_to_several_targets_and_then_sends_nothing(tree, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = execwire("rsync", str(tree), f"popen:{first}", f"popen//id=b:{second}")
    assert result.returncode == 0, result.stderr
    assert same_tree(tree, first) and same_tree(tree, second)
    lines = sorted(result.stdout.splitlines())
    assert re.fullmatch(rf"\[b\] {second}: 2 files sent \(3\.1 MB\) in \d+\.\d\d s", lines[0]), lines
    assert re.fullmatch(rf"\[gw0\] {first}: 2 files sent \(3\.1 MB\) in \d+\.\d\d s", lines[1]), lines
    assert "\x1b" not in result.stderr and "%" not in result.stderr  # no terminal: no progress bar
    again = execwire("rsync", str(tree), f"popen:{first}")
    assert again.returncode == 0
    assert re.fullmatch(rf"{first}: up to date, nothing sent in \d+\.\d\d s\n", again.stdout)  # one: no prefix
    quiet = execwire("rsync", "-q", str(tree), f"popen:{first}")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""


def test_rsync_on_gateways_named_with_on_and_a_relative_dest(tree, tmp_path):
    homes = [tmp_path / "one", tmp_path / "two"]
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"popen//chdir={home}   # a host\n" for home in homes))
    result = execwire("rsync", "-v", "--on", f"@{hosts}", str(tree), "deploy/site")
    assert result.returncode == 0, result.stderr
    for home in homes:
        assert same_tree(tree, home / "deploy" / "site")
    for gateway in ("gw0", "gw1"):  # -v names each file whose contents were sent
        assert {f"[{gateway}] run.sh", f"[{gateway}] static/blob.bin"} <= set(result.stdout.splitlines())
    two_dests = execwire("rsync", "--on", "popen", str(tree), "a", "b")
    assert two_dests.returncode == 2 and "with --on, give one DEST" in two_dests.stderr


def test_rsync_delete_removes_only_with_delete(tree, tmp_path):
    dest = tmp_path / "dest"
    (dest / "static").mkdir(parents=True)
    (dest / "static" / "stale.css").write_text("old")
    kept = execwire("rsync", str(tree), f"popen:{dest}")
    assert kept.returncode == 0 and (dest / "static" / "stale.css").exists()
    deleted = execwire("rsync", "--delete", str(tree), f"popen:{dest}")
    assert deleted.returncode == 0
    assert not (dest / "static" / "stale.css").exists() and same_tree(tree, dest)
    assert re.fullmatch(rf"{dest}: up to date, nothing sent in .*\n", deleted.stdout) is None
    assert "1 deleted" in deleted.stdout


def test_rsync_shows_a_progress_bar_on_a_terminal(tree, tmp_path):
    (tree / "static" / "big.bin").write_bytes(os.urandom(12 << 20))
    dest = tmp_path / "dest"
    status, out, text = stderr_on_terminal(["rsync", str(tree), f"popen//id=web:{dest}"])
    assert status == 0, text
    assert same_tree(tree, dest)
    assert re.fullmatch(rf"{dest}: 3 files sent \(15\.7 MB\) in \d+\.\d\d s\n", out.decode())
    assert "\x1b[J" in text, f"the bar was never redrawn in place: {text!r}"  # updated in place
    final = text.split("\x1b[J")[-1]
    assert re.search(r"web\s+popen//id=web\s+\[#{20}\] 100% done: 3 files sent \(15\.7 MB\)", final), final


def test_rsync_bad_targets_and_sources_exit_2_naming_what_is_wrong(tree, tmp_path):
    dest = f"popen:{tmp_path / 'dest'}"
    cases = [
        ([str(tree), f"popn:{tmp_path}"], "'popn'"),  # a bad spec: its key is named
        ([str(tree), "popen//nice=abc:/tmp/x"], "nice"),
        ([str(tree), "no-colon-here"], "target 'no-colon-here' has no ':'"),
        ([str(tree), "popen:"], "names no DEST"),
        ([str(tmp_path / "missing"), dest], "no such directory"),
        ([str(tree / "run.sh"), dest], "is not a directory"),
        ([str(tree)], "the following arguments are required"),
    ]
    for args, needle in cases:
        result = execwire("rsync", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "usage: execwire rsync" in result.stderr, (args, result.stderr)
    assert not (tmp_path / "dest").exists()


def _unprivileged_python() -> str:
    """python= for a far side that may not write where root may: ourselves, or nobody when we are root."""
    if os.geteuid() != 0:
        return sys.executable
    python = "/usr/bin/python3"  # ours lives under /root, which nobody may enter
    assert os.access(python, os.X_OK), "the test needs /usr/bin/python3 to run a far side as nobody"
    return f"setpriv --reuid=65534 --regid=65534 --clear-groups {python}"


def test_rsync_unwritable_dest_exits_1_naming_it_and_other_targets_still_copy(tree, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    good = tmp_path / "good"
    result = execwire("rsync", str(tree), f"popen//id=denied//python={_unprivileged_python()}:{locked / 'site'}",
                      f"popen//id=fine:{good}")
    assert result.returncode == 1, result.stderr
    assert f"[denied] rsync to {locked / 'site'} failed: PermissionError: [Errno 13] Permission denied" \
        in result.stderr
    assert "execwire: exit status 1: 1 from denied" in result.stderr
    assert same_tree(tree, good) and not (locked / "site").exists()
    os.mkfifo(tree / "pipe")  # what rsync cannot copy: said, and the command ends
    special = execwire("rsync", str(tree), f"popen:{tmp_path / 'other'}")
    assert special.returncode == 1
    assert "failed: ValueError: cannot sync" in special.stderr and "neither a file, a directory nor a symlink" \
        in special.stderr
    (tree / "pipe").unlink()
    missing = execwire("rsync", str(tree), "popen//python=/nonexistent/python9:/tmp/x", f"popen:{good}")
    assert missing.returncode == 3 and "could not start" in missing.stderr and "/nonexistent/python9" in missing.stderr


def test_rsync_timeout_exits_4_and_others_still_copy(tree, tmp_path):
    stuck = slow_python(tmp_path, 60)  # never answers within the --timeout
    good = tmp_path / "good"
    result = execwire("rsync", "--timeout", "3", str(tree), f"popen//id=stuck//python={stuck}:{tmp_path / 'never'}",
                      f"popen//id=fine:{good}")
    assert result.returncode == 4, result.stderr
    assert "[stuck] still starting after 3 seconds (--timeout): terminated" in result.stderr
    assert same_tree(tree, good) and not (tmp_path / "never").exists()
