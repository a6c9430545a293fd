"""The seed document's examples run unchanged, but for ``py.execnet`` -> ``execwire`` and ``py.std.os`` -> ``os``.

The interactive (``>>>``) examples are read from the seed itself and run as doctests
against real popen gateways. The ssh and socket-server examples need hosts and
servers and are tested with those transports.
"""

from __future__ import annotations

import doctest
import os
import re
from pathlib import Path

import pytest

import execwire

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
SEED_CANDIDATES = [ROOT.parent / "shared" / "seed" / "execnet-overview.txt",
                   Path("/work/shared/seed/execnet-overview.txt")]
SEED = next((path for path in SEED_CANDIDATES if path.is_file()), None)

# the seed's headings that need ssh or a socket server: run by the tests of those transports
NOT_LOCAL = ("receive file contents from remote SSH account", "Instantiate a socket server in a new subprocess")


def modernize(text: str) -> str:
    """The only changes the seed's code gets: the package's new name, and os instead of py.std.os."""
    text = text.replace("py.execnet", "execwire").replace("py.std.os", "os")
    # "import py" brought py.execnet; now the same line brings execwire
    return re.sub(r"^(\s*>>> import) py\b", r"\1 execwire", text, flags=re.MULTILINE)


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) pairs of an reST text, split at underlined headings."""
    lines = text.splitlines()
    found: list[tuple[str, list[str]]] = [("(top)", [])]
    for index, line in enumerate(lines):
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        underline = next_line.strip()
        if line.strip() and len(underline) >= 3 and len(set(underline)) == 1 and underline[0] in "-+=~":
            found.append((line.strip(), []))
        else:
            found[-1][1].append(line)
    return [(heading, "\n".join(body)) for heading, body in found]


def seed_doctests() -> list[tuple[str, str]]:
    if SEED is None:
        return []
    return [(heading, modernize(body)) for heading, body in sections(SEED.read_text(encoding="utf-8"))
            if ">>>" in body]


EXAMPLES = seed_doctests()


def test_the_seed_is_there_and_has_local_examples():
    assert SEED is not None, f"seed document not found at {SEED_CANDIDATES}"
    assert len(EXAMPLES) >= 4, [heading for heading, _ in EXAMPLES]


@pytest.mark.parametrize(("heading", "body"), EXAMPLES, ids=[heading for heading, _ in EXAMPLES])
def test_seed_example_runs(heading, body, clean_default_group):
    parser = doctest.DocTestParser()
    # py.std.os needed no import; its replacement os is there the same way
    test = parser.get_doctest(body, {"os": os}, heading, str(SEED), 0)
    assert test.examples, heading
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    runner.run(test, out=report.append)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted == len(test.examples)
    assert failed == 0, "".join(report)


def test_the_seed_spec_strings_parse():
    """The XSpec examples of the seed, parsed (not started: they name other hosts and Pythons)."""
    ssh = execwire.XSpec("ssh=wyvern//python=python2.4//chdir=mycache")
    assert (ssh.type, ssh.ssh, ssh.python, ssh.chdir) == ("ssh", "wyvern", "python2.4", "mycache")
    popen = execwire.XSpec("popen//python=2.5//nice=20")
    assert (popen.type, popen.python, popen.nice) == ("popen", "2.5", "20")
    sock = execwire.XSpec("socket=192.168.1.4:8888")
    assert (sock.type, sock.socket) == ("socket", "192.168.1.4:8888")
    general = execwire.XSpec("popen//chdir=value1//nice=3")
    assert general.chdir == "value1" and general.nice == "3"


def test_the_ssh_example_channel_code_runs_on_a_popen_gateway(tmp_path, group):
    """The file-reading code of the ssh example, unchanged, with a popen gateway in place of ssh."""
    files = []
    for index in range(3):
        path = tmp_path / f"file{index}.bin"
        path.write_bytes(bytes([index]) * (index + 1) * 1000)
        files.append(str(path))
    gw = group.makegateway("popen")
    channel = gw.remote_exec("""
            for fn in channel:
                f = open(fn, 'rb')
                channel.send(f.read())
                f.close()
    """)
    for fn in files:
        channel.send(fn)
        content = channel.receive()
        assert content == Path(fn).read_bytes()
    gw.exit()


def test_the_seed_mentions_no_example_we_skip_silently():
    assert SEED is not None
    headings = [heading for heading, _ in sections(SEED.read_text(encoding="utf-8"))]
    for heading in NOT_LOCAL:
        assert heading in headings, f"seed heading {heading!r} changed: update NOT_LOCAL"
