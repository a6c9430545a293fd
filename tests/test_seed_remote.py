"""The seed's two remote examples, run through real transports.

"receive file contents from remote SSH account" runs against the loopback sshd
of tests/sshd.py: its host name is mapped to that sshd by an ssh_config file,
which is the one argument the example gains. "Instantiate a socket server in a
new subprocess" runs as written (``print`` becomes a function). Both are read
from the seed itself, so a change there shows up here.
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap

import pytest
from test_seed import SEED, modernize

import execwire

pytestmark = pytest.mark.timeout(120)
pytest_plugins = ["sshd"]


def seed_block(heading: str) -> str:
    """The literal (``::``) code block under ``heading`` in the seed, modernized."""
    assert SEED is not None, "the seed document is missing"
    text = SEED.read_text(encoding="utf-8")
    after = text[text.index(heading):]
    block = after[after.index("::\n") + 3:]
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith(" "):
            break  # the next paragraph or heading
        lines.append(line)
    code = modernize(textwrap.dedent("\n".join(lines)))
    code = re.sub(r"^import py\s*$", "import execwire", code, flags=re.MULTILINE)
    # Python 3: print is a function (a trailing comment stays outside the call)
    return re.sub(r"^(\s*)print ([^#\n]+?)(\s*#.*)?$", r"\1print(\2)\3", code, flags=re.MULTILINE)


def test_the_ssh_example_reads_remote_files(sshd, tmp_path, clean_default_group):
    code = seed_block("receive file contents from remote SSH account")
    assert "SshGateway('codespeak.net')" in code
    config = tmp_path / "ssh_config"
    config.write_text(sshd.ssh_config.read_text().replace(f"Host {sshd.alias}", "Host codespeak.net"))
    code = code.replace("SshGateway('codespeak.net')", f"SshGateway('codespeak.net', ssh_config={str(config)!r})")
    files = []
    for index in range(3):
        path = tmp_path / f"file{index}.bin"
        path.write_bytes(bytes([index]) * (1000 * index + 7))
        files.append(str(path))
    code = code.replace("# process content", "contents.append(content)")
    namespace = {"somefilelist": files, "contents": []}
    exec(compile(code, "seed-ssh-example", "exec"), namespace)
    assert namespace["contents"] == [open(name, "rb").read() for name in files]
    assert namespace["gw"].state == "closed"


def test_the_socket_server_example_prints_remote_info(clean_default_group):
    code = seed_block("Instantiate a socket server in a new subprocess")
    assert "SocketGateway.new_remote(popengw" in code
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "seed-socket-example", "exec"), namespace)
    socketgw = namespace["socketgw"]
    popengw = namespace["popengw"]
    assert isinstance(socketgw, execwire.Gateway) and isinstance(popengw, execwire.Gateway)
    info = socketgw._rinfo()
    assert info.pid != popengw._rinfo().pid  # a process of its own, started by the server
    assert f"'pid': {info.pid}" in out.getvalue()
