"""A pytest plugin with one fixture: a real socket server on loopback, shared by a test module.

Load it with ``pytest_plugins = ["socket_server_fixture"]`` (test_aio.py and test_trio.py do).
"""

from __future__ import annotations

from collections.abc import Iterator

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
