"""execwire: start Python interpreters elsewhere, ship code to them, talk over channels.

Only re-exports live here; the implementation is in the private-looking modules.
"""

from ._far.channel import Channel
from ._far.errors import (
    AuthenticationError,
    CallbackError,
    ChannelClosedError,
    Error,
    GatewayLostError,
    GatewayStartError,
    HostNotFound,
    ProtocolError,
    RemoteError,
    TimeoutError,
)
from ._far.wire import DataFormatError, DumpError, LoadError, dump, dumps, load, loads
from .calls import CallError
from .executor import Executor
from .gateway import Gateway, RemoteStatus, RInfo
from .group import Group, PopenGateway, SocketGateway, SshGateway, default_group, makegateway, set_execmodel
from .multi import MultiChannel
from .spec import XSpec

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CallError",
    "CallbackError",
    "Channel",
    "ChannelClosedError",
    "DataFormatError",
    "DumpError",
    "Error",
    "Executor",
    "Gateway",
    "GatewayLostError",
    "GatewayStartError",
    "Group",
    "HostNotFound",
    "LoadError",
    "MultiChannel",
    "PopenGateway",
    "ProtocolError",
    "RInfo",
    "RemoteError",
    "RemoteStatus",
    "SocketGateway",
    "SshGateway",
    "TimeoutError",
    "XSpec",
    "__version__",
    "default_group",
    "dump",
    "dumps",
    "load",
    "loads",
    "makegateway",
    "set_execmodel",
]
