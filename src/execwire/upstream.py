"""The controller's end of each far side's upstream channel: log records and debugger sessions.

The upstream channel is the first channel the far side makes (see ``_far/upstream.py``),
so its id is the far side's first, 2, and the gateway takes it with a callback before
it reads a byte: what the far side sends on it right behind its HELLO, which may come
in the same read, is never dropped as a frame for a channel nobody made. The HELLO
names it too, and must name that one. The callback runs on the gateway's callback
thread, in order.

The other way goes ("level", number): the controller's root logger level, for far
sides that follow it (see remote_logging.followed_level). It is looked at before
each remote_exec() and each call sent, and sent only when it changed since the last
one this gateway was told of; the far side applies it as the frame arrives, before
it reads the code or call sent after it.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._far.errors import Error, ProtocolError

if TYPE_CHECKING:
    from .gateway import Gateway

logger = logging.getLogger("execwire")


CHANNEL_ID = 2  # the far side's first channel id (its ids are even, from 2)


class _LevelFollower:
    """The controller's root level as this gateway's far side last heard it."""

    def __init__(self, channel: Any, level: int) -> None:
        self.channel = weakref.ref(channel)  # not the channel itself: it holds the gateway, our weak key
        self.level: int | None = level  # None: the far side does not follow (or has no upstream channel)
        self.lock = threading.Lock()


_followers: weakref.WeakKeyDictionary[Gateway, _LevelFollower] = weakref.WeakKeyDictionary()


def attach(gateway: Gateway) -> None:
    """Take the far side's upstream channel, before anything is read (from Gateway.__init__)."""
    from . import remote_logging

    channel = gateway._protocol.channel_for(CHANNEL_ID)
    channel.setcallback(functools.partial(_received, gateway))
    level = remote_logging.followed_level(gateway.spec)
    if level is not None:
        _followers[gateway] = _LevelFollower(channel, level)


def check_hello(channel_id: object, gateway: Gateway | None = None) -> None:
    """The upstream channel the HELLO names must be the one attached (None: the far side has none)."""
    if channel_id is None and gateway is not None:
        _followers.pop(gateway, None)  # nobody there to tell levels to
    if channel_id is not None and channel_id != CHANNEL_ID:
        raise ProtocolError(f"the far side named channel {channel_id!r} as its upstream channel, not its first "
                            f"channel {CHANNEL_ID}")


def send_root_level(gateway: Gateway) -> None:
    """Tell the far side the controller's root level if it changed (before code or a call is sent)."""
    follower = _followers.get(gateway)
    if follower is None:
        return
    level = logging.getLogger().getEffectiveLevel()
    if level == follower.level:
        return
    with follower.lock:  # two threads that both saw a change send in the order they record it
        level = logging.getLogger().getEffectiveLevel()
        if level == follower.level:
            return
        channel = follower.channel()
        if channel is None:
            return
        try:
            channel.send(("level", level))
        except Error:
            return  # the gateway is gone: what comes next says so
        follower.level = level


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
