"""execwire for trio (the optional extra execwire[trio]): the asyncio face's very code, waiting the trio way.

Gateways read their far side from system tasks, so they need no nursery of
yours; cancel scopes (trio.move_on_after, fail_after) work on every await.
Errors are the classes of the threaded API (execwire.RemoteError, TimeoutError, ...).
"""

from __future__ import annotations

from .._async.face import *  # noqa: F403 - the classes and errors both faces share
from .._async.face import Gateway
from .._async.face import __all__ as _shared
from .._async.gateway import makegateway as _makegateway
from .._async.group import AsyncGroup
from ..spec import XSpec
from ._backend import TrioBackend

__all__ = [*_shared, "Group", "makegateway"]


async def makegateway(spec: str | XSpec | None = None) -> Gateway:
    """Start a gateway for ``spec`` (default "popen") from trio, returning once it answered.

    The transports are those of execwire.aio (and of the threaded API).
    """
    return await _makegateway(TrioBackend(), spec)


class Group(AsyncGroup):
    """Gateways started side by side, used and terminated together (``async with execwire.trio.Group(specs)``)."""

    _backend_class = TrioBackend
