"""The controller's end of each far side's upstream channel: log records and debugger sessions.

The far side names the channel in its HELLO (see ``_far/upstream.py``); the reader
thread attaches a callback to it before it reads anything else, so no record is
dropped. The callback runs on the gateway's callback thread, in order.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from ._far.errors import ProtocolError

if TYPE_CHECKING:
    from .gateway import Gateway

logger = logging.getLogger("execwire")


def attach(gateway: Gateway, channel_id: object) -> None:
    """Take the far side's upstream channel ``channel_id`` (from its HELLO; None: it has none)."""
    if channel_id is None:
        return
    if not isinstance(channel_id, int) or isinstance(channel_id, bool) or channel_id <= 0 or channel_id & 1:
        raise ProtocolError(f"the far side named {channel_id!r} as its upstream channel; it must be an even "
                            "channel id of the far side")
    channel = gateway._protocol.channel_for(channel_id)
    channel.setcallback(functools.partial(_received, gateway))


def _received(gateway: Gateway, message: Any) -> None:
    kind = message[0] if isinstance(message, tuple) and message else None
    if kind == "log" and isinstance(message[1], dict):
        from . import remote_logging

        remote_logging.handle(gateway, message[1])
    elif kind == "debug" and len(message) == 3:
        from . import debugger

        debugger.start_session(gateway, message[1], message[2])
    else:
        logger.warning("gateway %s sent %r on its upstream channel, which execwire does not know", gateway.id,
                       message)
