"""The documentation's code runs, and the README's first commands are the ones CI uses.

Every fenced block of README.md and docs/*.md whose info string starts with ``python`` is checked:

- ```` ```python ```` blocks are executed. The blocks of one file run in order in one fresh interpreter (a
  subprocess with a timeout), sharing one namespace, in an empty temporary directory: a block may use
  names defined by earlier blocks of the same file. Each block is compiled under the markdown file's path
  with its own line numbers, so a failure points at the .md line, and a function defined in a block can be
  shipped with ``remote_exec(func)`` (its source is read back from the .md file).
- ```` ```python no-run ```` blocks (ssh hosts, servers, containers: what this machine cannot reach) are
  only compiled.
- ```` ```python file=NAME ```` blocks are compiled and written to NAME in that temporary directory before
  the file's blocks run (a module that the examples import).

Fences must start in column 0 (an indented one would break the line mapping) and a ``py...`` info string
must be one of the forms above, so no example is skipped by a typo.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
pytestmark = pytest.mark.timeout(180)

# The README's first two commands, in this order (the second is also what .ci/run runs).
INSTALL_AND_RUN = """pip install . && execwire run -c "import os; channel.send(os.getpid())\""""
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
INDENTED_FENCE = re.compile(r"^[ \t]+(`{3,}|~{3,})\s*py", re.IGNORECASE)
FILE_INFO = re.compile(r"^python file=(?P<name>[\w.-]+\.py)$")
SHELL_INFOS = ("sh", "bash", "shell", "console")

# A fresh interpreter that runs [path, first line, code] blocks from stdin in one namespace.
DRIVER = """\
import json, sys
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
for path, line, code in json.load(sys.stdin):
    sys.stderr.write("[docs] block at %s:%d\\n" % (path, line))
    sys.stderr.flush()
    exec(compile("\\n" * (line - 1) + code, path, "exec"), namespace)
"""


@dataclass
class Block:
    path: Path
    line: int  # line number of the block's first code line in the .md file
    info: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file whose fence starts in column 0."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"].strip()
        first = index
        while index < len(lines) and not (lines[index].startswith(fence[0] * len(fence))
                                           and not lines[index].strip(fence[0]).strip()):
            index += 1
        if index == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{first}: fence {fence}{info} is never closed")
        blocks.append(Block(path, first + 1, info, "\n".join(lines[first:index]) + "\n"))
        index += 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [block for block in fenced_blocks(path) if block.info.split(" ")[0].lower().startswith("py")]


def ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def test_every_documentation_file_has_python_examples():
    assert (ROOT / "docs" / "guide.md") in DOC_FILES
    runnable = {path.name: [b for b in python_blocks(path) if b.info == "python"] for path in DOC_FILES}
    assert runnable["guide.md"], "docs/guide.md has no executed examples"
    assert runnable["README.md"], "README.md has no executed examples"


@pytest.mark.parametrize("path", DOC_FILES, ids=ids(DOC_FILES))
def test_python_fences_are_well_formed(path: Path):
    """No example is silently skipped: known info strings only, no indented fences."""
    text = path.read_text(encoding="utf-8")
    indented = [number for number, line in enumerate(text.splitlines(), 1) if INDENTED_FENCE.match(line)]
    assert not indented, f"{path.name}: indented python fences at lines {indented}; start them in column 0"
    for block in python_blocks(path):
        assert block.info in ("python", "python no-run") or FILE_INFO.match(block.info), (
            f"{block.where}: unknown fence info {block.info!r}; use 'python', 'python no-run' or "
            "'python file=NAME.py'")


@pytest.mark.parametrize("path", DOC_FILES, ids=ids(DOC_FILES))
def test_every_python_block_compiles(path: Path):
    for block in python_blocks(path):
        try:
            compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
        except SyntaxError as exc:
            raise AssertionError(f"{block.where}: {block.info} block does not compile: {exc}") from exc


@pytest.mark.parametrize("path", DOC_FILES, ids=ids(DOC_FILES))
def test_python_examples_run(path: Path, tmp_path: Path):
    blocks = python_blocks(path)
    for block in blocks:
        named = FILE_INFO.match(block.info)
        if named:
            (tmp_path / named["name"]).write_text(block.code, encoding="utf-8")
    runnable = [[str(block.path), block.line, block.code] for block in blocks if block.info == "python"]
    if not runnable:
        pytest.skip(f"{path.name} has no executed examples")
    env = {name: value for name, value in os.environ.items() if not name.startswith("EXECWIRE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        result = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(runnable), cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        started = str(exc.stderr or "").strip().splitlines()
        raise AssertionError(f"{path.name}: examples still running after 120 s; last: {started[-1:]}") from None
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, f"{path.name}: an example failed\n{report}"
    # a traceback nobody received (an error on a closed channel) means an example is sloppy
    assert "Traceback" not in result.stderr, f"{path.name}: an example left a traceback\n{report}"


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=ids(DOC_FILES))
def test_relative_links_point_at_files_that_exist(path: Path):
    text = "\n".join(_outside_fences(path))
    broken = []
    for match in LINK.finditer(text):
        target = match["target"]
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        if not (path.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{path.name} links to missing files: {broken}"


def _outside_fences(path: Path) -> list[str]:
    """The lines of a markdown file that are not inside a fenced block."""
    inside: set[int] = set()
    for block in fenced_blocks(path):
        inside.update(range(block.line - 1, block.line - 1 + block.code.count("\n")))
    return [line for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()) if number not in inside]


# -- the README's first commands ----------------------------------------------------------------


def readme_shell_commands() -> list[str]:
    """The command lines of the README's fenced shell blocks, in order (a leading '$ ' is dropped)."""
    commands = []
    for block in fenced_blocks(ROOT / "README.md"):
        if block.info in SHELL_INFOS:
            for line in block.code.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    commands.append(line.removeprefix("$ "))
    return commands


def ci_test_command() -> str:
    """The command .ci/run runs the tests with: its one non-comment line that runs pytest."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    found = [line for line in lines if "pytest" in line and not line.startswith("#")]
    assert len(found) == 1, f".ci/run should run pytest in exactly one line, found {found}"
    return found[0]


def test_readme_starts_with_the_install_and_test_commands():
    blocks = fenced_blocks(ROOT / "README.md")
    assert [block.info for block in blocks[:2]] == ["sh", "sh"], "README.md must open with two sh blocks"
    assert readme_shell_commands()[:2] == [INSTALL_AND_RUN, TEST_COMMAND]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    before = text[:text.index(TEST_COMMAND)]
    assert before.count("\n## ") == 0, "the two commands must come before the README's first section"


def test_ci_runs_the_readme_test_command():
    assert ci_test_command() == TEST_COMMAND


def test_readme_run_command_works_with_the_installed_package(tmp_path: Path):
    """The README's first command, after its ``pip install .``, against this checkout's install."""
    install, run = INSTALL_AND_RUN.split(" && ", 1)
    assert install == "pip install ."
    argv = shlex.split(run)
    assert argv[0] == "execwire"
    result = subprocess.run([sys.executable, "-m", "execwire", *argv[1:]], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    pid = result.stdout.strip()
    assert pid.isdigit() and int(pid) != os.getpid(), f"expected the far pid, got {result.stdout!r}"


def test_pip_install_of_the_checkout_gives_a_working_execwire_command(tmp_path: Path):
    """``pip install .`` as a fresh machine does it (no network: the wheel is built offline)."""
    pytest.importorskip("hatchling", reason="hatchling is needed to build the wheel without network")
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = wheels.glob("execwire-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "execwire/_far/boot.py" in names and "execwire/cli/__init__.py" in names, names
    stubs = {f"execwire/_far/{path.name}" for path in (ROOT / "src" / "execwire" / "_far").glob("*.pyi")}
    assert stubs and "execwire/py.typed" in names and stubs <= set(names), "types are not shipped"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                              "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr
    argv = shlex.split(INSTALL_AND_RUN.split(" && ", 1)[1])
    result = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={"PATH": os.defpath, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().isdigit(), result.stdout


# -- the README's sessions of the execwire command ------------------------------------------------

CONSOLE_INFO = "console"
WILDCARD = "..."  # in an expected line: any text; a line of its own: any number of lines


@dataclass
class Session:
    """One ``$ command`` of a console block and the output it shows (stdout and stderr as on a terminal)."""

    where: str
    command: str
    expected: list[str]


def console_sessions(path: Path) -> list[list[Session]]:
    """The ``console`` blocks of a markdown file, each a list of commands with their expected output."""
    found = []
    for block in fenced_blocks(path):
        if block.info != CONSOLE_INFO:
            continue
        sessions: list[Session] = []
        for offset, line in enumerate(block.code.splitlines()):
            if line.startswith("$ "):
                sessions.append(Session(f"{block.where.rsplit(':', 1)[0]}:{block.line + offset}", line[2:], []))
            else:
                assert sessions, f"{block.where}: a console block starts with a '$ ' command line"
                sessions[-1].expected.append(line)
        found.append(sessions)
    return found


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; runs of blanks count as one; '...' stands for any text (a line of its own: any lines)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == WILDCARD:
        return any(output_matches(rest, actual[skip:]) for skip in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(" ".join(part.split())) for part in head.split(WILDCARD))
    return re.fullmatch(pattern, " ".join(actual[0].split())) is not None and output_matches(rest, actual[1:])


def test_output_matching_rules():
    assert output_matches(["a  b", "x ... z"], ["a b", "x 1.5s z"])
    assert output_matches(["first", WILDCARD, "last"], ["first", "1", "2", "last"])
    assert output_matches(["first", WILDCARD, "last"], ["first", "last"])
    assert not output_matches(["a"], ["a", "b"])
    assert not output_matches(["x ... z"], ["x y"])


README_SESSIONS = console_sessions(ROOT / "README.md")


def test_the_readme_shows_sessions_of_the_command():
    commands = " ".join(session.command for block in README_SESSIONS for session in block)
    for needle in ("execwire run", "execwire shell", "execwire info", "--on @", "--json", "--max-parallel",
                   "--group-output", "--summary", "| head", "sys.exit"):
        assert needle in commands, needle


@pytest.mark.parametrize("block", README_SESSIONS, ids=[block[0].where for block in README_SESSIONS])
def test_readme_sessions_show_what_the_command_does(block: list[Session], tmp_path: Path):
    """Each console block runs in bash, in a fresh folder holding the README's ``python file=`` blocks."""
    for other in python_blocks(ROOT / "README.md"):
        named = FILE_INFO.match(other.info)
        if named:
            (tmp_path / named["name"]).write_text(other.code, encoding="utf-8")
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    (bin_dir / "execwire").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m execwire "$@"\n')
    (bin_dir / "execwire").chmod(0o755)
    marker = "@@execwire-docs-session@@"
    script = "".join(f"echo {marker}\n{{ {session.command}\n}} 2>&1\n" for session in block)
    env = {name: value for name, value in os.environ.items() if not name.startswith("EXECWIRE_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}", HOME=str(tmp_path), TERM="dumb")
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    outputs = result.stdout.split(marker + "\n")[1:]
    assert len(outputs) == len(block), f"{block[0].where}: the session stopped early\n{result.stdout}{result.stderr}"
    for session, output in zip(block, outputs, strict=True):
        assert output_matches(session.expected, output.splitlines()), (
            f"{session.where}: $ {session.command}\nexpected:\n" + "\n".join(session.expected)
            + f"\ngot:\n{output}")
