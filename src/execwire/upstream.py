"""The controller's end of each far side's upstream channel: log records and debugger sessions.

The upstream channel is the first channel the far side makes (see ``_far/upstream.py``),
so its id is the far side's first, 2, and the gateway takes it with a callback before
it reads a byte: what the far side sends on it right behind its HELLO, which may come
in the same read, is never dropped as a frame for a channel nobody made. The HELLO
names it too, and must name that one. The callback runs on the gateway's callback
thread, in order.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from ._far.errors import ProtocolError

if TYPE_CHECKING:
    from .gateway import Gateway

logger = logging.getLogger("execwire")


CHANNEL_ID = 2  # the far side's first channel id (its ids are even, from 2)


def attach(gateway: Gateway) -> None:
    """Take the far side's upstream channel, before anything is read (from Gateway.__init__)."""
    channel = gateway._protocol.channel_for(CHANNEL_ID)
    channel.setcallback(functools.partial(_received, gateway))


def check_hello(channel_id: object) -> None:
    """The upstream channel the HELLO names must be the one attached (None: the far side has none)."""
    if channel_id is not None and channel_id != CHANNEL_ID:
        raise ProtocolError(f"the far side named channel {channel_id!r} as its upstream channel, not its first "
                            f"channel {CHANNEL_ID}")


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
