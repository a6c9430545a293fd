"""The async gateway's end of the far side's upstream channel: log records, and pdb requests refused.

As on the threaded side (execwire/upstream.py), the far side's first channel is taken
before a byte is read; a task of the gateway reads it once the HELLO named it. Far
records become LogRecords in this process's logging (remote_logging, as for threads).
A far breakpoint() asks for the terminal: the async faces do not lend it, so the
far code gets DebuggerUnavailable at once, saying why, instead of waiting.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import remote_logging
from .._far.errors import Error
from .channel import Channel

if TYPE_CHECKING:
    from .gateway import AsyncGateway

logger = logging.getLogger("execwire")

NO_SESSIONS = ("the async faces (execwire.aio, execwire.trio) do not serve pdb sessions on the controller's "
               "terminal; debug this code through a threaded execwire gateway, or skip breakpoint() calls with "
               "PYTHONBREAKPOINT=0 in the far environment (the spec key env:PYTHONBREAKPOINT=0)")


async def serve(gateway: AsyncGateway, channel: Channel) -> None:
    """Handle what comes on the upstream channel until it ends (with the gateway)."""
    while True:
        try:
            message = await channel.receive()
        except (EOFError, Error):
            return
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "log" and isinstance(message[1], dict):
            remote_logging.handle(gateway, message[1])
        elif kind == "debug" and len(message) == 3 and isinstance(message[1], Channel):
            await refuse_session(message[1])
        else:
            logger.warning("gateway %s sent %r on its upstream channel, which execwire does not know", gateway.id,
                           message)


async def refuse_session(session: Channel) -> None:
    """Tell the far pdb it gets no terminal: its breakpoint() raises DebuggerUnavailable with the reason."""
    try:
        await session.send(("refused", NO_SESSIONS))
        await session.close()
    except Error:
        pass
