"""``execwire map MODULE:FUNCTION``: one call per input line, spread over gateways, results in order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

WORDS = '''\
import os


def shout(word):
    return word.upper() + "!"


def far_pid(_):
    return os.getpid()


def half(number):
    if number == 3:
        raise ValueError("three is odd")
    return {"half": number / 2}
'''


def run_map(tmp_path: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "words.py").write_text(WORDS, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "execwire", "map", *argv], input=stdin, capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=80)


def test_results_come_in_input_order_from_every_gateway(tmp_path: Path) -> None:
    lines = "".join(f"word{n}\n" for n in range(30))
    result = run_map(tmp_path, "words:shout", "--on", "popen//chdir=far,popen//chdir=far", "--chunksize", "4",
                     stdin=lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"WORD{n}!" for n in range(30)]
    assert result.stderr == ""  # not a terminal: no progress bar
    pids = run_map(tmp_path, "words:far_pid", "--on", "popen,popen", "--workers", "2", stdin="x\n" * 40)
    assert len(set(pids.stdout.split())) == 2


def test_json_lines_and_an_input_file(tmp_path: Path) -> None:
    (tmp_path / "numbers.jsonl").write_text("4\n10\n", encoding="utf-8")
    result = run_map(tmp_path, "--json", "words:half", "numbers.jsonl")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"half": 2.0}\n{"half": 5.0}\n'


def test_a_progress_bar_counts_the_calls(tmp_path: Path) -> None:
    result = run_map(tmp_path, "--progress", "words:shout", stdin="a\nb\nc\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("[" + "#" * 30 + "] 3/3 calls\n")


def test_a_call_that_raises_prints_the_far_traceback_and_exits_1(tmp_path: Path) -> None:
    result = run_map(tmp_path, "--json", "words:half", stdin="2\n3\n4\n")
    assert result.returncode == 1
    assert result.stdout == '{"half": 1.0}\n'  # what came before it in order is printed
    assert 'words.py", line 14, in half' in result.stderr and "ValueError: three is odd" in result.stderr


def test_bad_input_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    result = run_map(tmp_path, "words:nope")
    assert result.returncode == 2 and "'words:nope': cannot import it here" in result.stderr
    result = run_map(tmp_path, "words")
    assert result.returncode == 2 and "name the function as MODULE:FUNCTION" in result.stderr
    result = run_map(tmp_path, "--json", "words:half", stdin="{not json\n")
    assert result.returncode == 2 and "--json: an input line is not JSON" in result.stderr
    result = run_map(tmp_path, "words:shout", "--chunksize", "0")
    assert result.returncode == 2 and "--chunksize needs at least 1" in result.stderr


def test_a_gateway_that_cannot_start_exits_3(tmp_path: Path) -> None:
    result = run_map(tmp_path, "words:shout", "--on", "popen//python=/nonexistent/python3", stdin="a\n")
    assert result.returncode == 3
    assert "cannot start '/nonexistent/python3'" in result.stderr
