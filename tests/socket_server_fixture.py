"""A pytest plugin with socket server fixtures: real servers on loopback.

Load it with ``pytest_plugins = ["socket_server_fixture"]``: ``socket_spec`` is one server shared by a
test module (test_aio.py, test_trio.py); ``token_file`` and ``server`` make one per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server import RunningServer, make_token_file, module_server_argv, start_server


@pytest.fixture(scope="module")
def socket_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The spec of a real socket server on loopback, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("server")
    token_file = make_token_file(folder)
    running: RunningServer = start_server(module_server_argv(token_file), folder / "server.log")
    try:
        yield f"socket={running.spec_address}//token_file={token_file}"
    finally:
        running.stop()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return make_token_file(tmp_path)


@pytest.fixture
def server(tmp_path: Path, token_file: Path) -> Iterator[RunningServer]:
    running = start_server(module_server_argv(token_file), tmp_path / "server.log")
    try:
        yield running
    finally:
        running.stop()
