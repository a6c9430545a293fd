"""execnet.gateway: the Gateway of the execnet package, an execwire Gateway with execnet's manners."""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import execwire
from execwire.gateway import RemoteStatus, RInfo

from ._compat import ExecModel, ThreadExecModel
from .gateway_base import Channel

if TYPE_CHECKING:
    from .multi import Group

__all__ = ["Gateway", "RInfo", "RemoteStatus"]


def discard_stdout(gateway: execwire.Gateway, stream: int, data: bytes) -> None:
    """What far code prints to stdout is dropped, as execnet drops it; stderr goes to our file descriptor 2.

    An execnet far side inherits that descriptor, so what it writes there bypasses this side's
    sys.stderr (and whatever captures it, as pytest's in-process runs do): here too.
    """
    if stream != 2:
        return
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(2, view):]
    except OSError:
        pass  # our stderr is closed; execnet's far side would not be heard either


class Gateway(execwire.Gateway):
    """Gateway to a local or remote Python interpreter (execnet's name and manners)."""

    _group: Group
    execmodel: ExecModel
    _string_filename = "<remote exec>"  # execnet's name for shipped strings in far tracebacks

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        group = self._group
        self.execmodel = group.execmodel if isinstance(getattr(group, "execmodel", None), ExecModel) \
            else ThreadExecModel()
        self.output_handler = discard_stdout

    def _make_channel(self, *args: Any) -> Channel:
        return Channel(self, *args)

    def __repr__(self) -> str:
        return f"<Gateway id={self.id!r} {self.state}, {self.execmodel.backend} model, spec={str(self.spec)!r}>"

    @property
    def remoteaddress(self) -> str:
        """The address of the far side, for socket and ssh gateways."""
        address = self.spec.socket if isinstance(self.spec.socket, str) else self.spec.ssh
        if not address:
            raise AttributeError(f"gateway {self.id!r} ({self.spec}) has no remote address")
        return str(address)

    def remote_exec(self, source: str | types.ModuleType | Callable[..., Any], **kwargs: Any) -> Channel:
        channel = super().remote_exec(source, **kwargs)
        assert isinstance(channel, Channel)
        return channel

    def newchannel(self) -> Channel:
        channel = super().newchannel()
        assert isinstance(channel, Channel)
        return channel

    def reconfigure(self, py2str_as_py3str: bool = True, py3str_as_py2str: bool = False) -> None:
        """Accepted for execnet's sake: both sides run Python 3, so strings are always str."""
        self._strconfig = (py2str_as_py3str, py3str_as_py2str)

    def remote_init_threads(self, num: int | None = None) -> None:
        """Accepted for execnet's sake (a no-op there too since execnet 1.2)."""

    def remote_status(self) -> RemoteStatus:
        status = super().remote_status()
        status.execmodel = str(self.spec.execmodel or "thread")  # type: ignore[attr-defined]
        return status

    def _rinfo(self, update: bool = False) -> RInfo:
        """Facts about the far interpreter; ``update`` asks with a remote_exec, as execnet does (so on a
        main_thread_only gateway the answer comes after the code that runs there now)."""
        if update:
            self._rinfo_cache = RInfo(self.remote_exec(rinfo_source).receive(self.startup_timeout))
        info = super()._rinfo()
        info.version_info = tuple(info.version_info[:5])
        return info

    @property
    def _cache_rinfo(self) -> RInfo | None:
        """execnet's name of the cached facts (code written for execnet sets it back after a change)."""
        return self._rinfo_cache

    @_cache_rinfo.setter
    def _cache_rinfo(self, info: RInfo | None) -> None:
        self._rinfo_cache = info


def rinfo_source(channel: "Any") -> None:  # noqa: UP037 - a string: the far side has no typing
    """Shipped by ``_rinfo(update=True)``: the far interpreter's facts, as a dict (execnet's name)."""
    import os
    import sys

    channel.send({"executable": sys.executable, "version_info": tuple(sys.version_info[:5]),
                  "platform": sys.platform, "implementation": sys.implementation.name, "cwd": os.getcwd(),
                  "pid": os.getpid()})
