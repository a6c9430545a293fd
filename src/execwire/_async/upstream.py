"""The async gateway's end of the far side's upstream channel: log records and pdb sessions.

As on the threaded side (execwire/upstream.py), the far side's first channel is taken
before a byte is read; a task of the gateway reads it once the HELLO named it. Far
records become LogRecords in this process's logging (remote_logging, as for threads);
a far breakpoint() gets a session thread of its own (_async/debugger.py), so records
and other sessions' requests keep coming meanwhile. The other way goes the root
level, for far sides that follow it (send_root_level).
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


def send_root_level(gateway: AsyncGateway) -> None:
    """Tell a following far side the controller's root level if it changed (before code or a call is sent).

    As upstream.send_root_level does for threads; the item is queued at once, so it goes
    out before the frame the caller sends next, whichever task sends what.
    """
    followed = gateway._followed_level
    if followed is None:
        return
    level = logging.getLogger().getEffectiveLevel()
    if level == followed:
        return
    gateway._followed_level = level
    try:
        gateway._upstream._send_nowait(("level", level))
    except Error:
        pass  # the gateway is gone: what comes next says so


async def serve(gateway: AsyncGateway, channel: Channel) -> None:
    """Handle what comes on the upstream channel until it ends (with the gateway)."""
    while True:
        try:
            message = await channel.receive()
        except (EOFError, Error):
            return
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "log" and isinstance(message[1], dict):
            try:
                remote_logging.handle(gateway, message[1])
            except Exception:  # a filter of the user's that raises: the next records still come
                logger.exception("gateway %s: a far log record could not be handled", gateway.id)
        elif kind == "debug" and len(message) == 3 and isinstance(message[1], Channel):
            from .debugger import start_session

            start_session(gateway, message[1], message[2] if isinstance(message[2], dict) else {})
        else:
            logger.warning("gateway %s sent %r on its upstream channel, which execwire does not know", gateway.id,
                           message)

