"""execwire for asyncio: the same gateways, channels and groups, awaited instead of blocked on.

    gw = await execwire.aio.makegateway("popen")
    channel = await gw.remote_exec("channel.send(channel.receive() + 1)")
    await channel.send(41)
    assert await channel.receive() == 42
    await gw.exit()

Errors are the classes of the threaded API (execwire.RemoteError, TimeoutError, ...).
"""

from __future__ import annotations

from .._async.face import *  # noqa: F403 - the classes and errors both faces share
from .._async.face import Gateway
from .._async.face import __all__ as _shared
from .._async.gateway import makegateway as _makegateway
from .._async.group import AsyncGroup
from ..spec import XSpec
from ._backend import AsyncioBackend

__all__ = [*_shared, "Group", "makegateway"]


async def makegateway(spec: str | XSpec | None = None) -> Gateway:
    """Start a gateway for ``spec`` (default "popen") and wait until it answered.

    Every transport of the threaded API: popen, ssh, socket, prefixes (sudo=,
    docker=, ...); via= and installvia= need a Group, which knows the middle gateway.
    """
    return await _makegateway(AsyncioBackend(), spec)


class Group(AsyncGroup):
    """Gateways started, used and terminated together: ``async with execwire.aio.Group(specs) as group``."""

    _backend_class = AsyncioBackend
