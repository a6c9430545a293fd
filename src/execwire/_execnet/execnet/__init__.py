"""execnet, mapped onto execwire: for pytest-xdist and the other programs written for execnet.

This is not execnet: it is execwire (https: see execwire's README) under execnet's
names, put on the path on purpose:

    PYTHONPATH="$(python -m execwire --execnet-shim-path)" pytest -n 4

Stdlib only and Python >= 3.6 syntax in this file: shipped code may ``import
execnet`` on a far side that cannot import execwire (see _mode); it gets the
serializer, errors and Channel there.
"""

from ._mode import NEAR
from .gateway_base import (
    Channel,
    DataFormatError,
    DumpError,
    LoadError,
    RemoteError,
    TimeoutError,
    dump,
    dumps,
    load,
    loads,
)

__version__ = "2.1.2+execwire"

__all__ = [
    "Channel",
    "DataFormatError",
    "DumpError",
    "LoadError",
    "RemoteError",
    "TimeoutError",
    "__version__",
    "dump",
    "dumps",
    "load",
    "loads",
]

if NEAR:
    from execwire import HostNotFound

    from .gateway import Gateway
    from .multi import Group, MultiChannel, default_group, makegateway, set_execmodel
    from .rsync import RSync
    from .xspec import XSpec

    __all__ += ["Gateway", "Group", "HostNotFound", "MultiChannel", "RSync", "XSpec", "default_group",
                "makegateway", "set_execmodel"]
    __all__.sort()
