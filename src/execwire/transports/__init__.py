"""Ways to reach a far interpreter; each returns a frame transport and its local process, if any.

``start`` picks the transport for a spec. Every transport ends in a Python that
runs the boot program (see bootstrap.py) with the protocol on its stdin/stdout
or on a socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._far.streams import Stream
from ..process import Process
from ..spec import XSpec

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .prefix import Launch


def start(spec: XSpec, gateway_id: str, debug: bool, middle: Gateway | None) -> tuple[Stream, Process | None]:
    """Start the far interpreter that ``spec`` describes (``middle``: the gateway via= or installvia= names)."""
    if spec.type == "socket" and spec.via is None:
        from .socket import start_socket

        return start_socket(spec, gateway_id, debug, middle)
    if spec.type == "socket":
        raise ValueError(f"gateway spec {str(spec)!r}: a socket gateway cannot go via another gateway; "
                         "use socket=HOST:PORT//installvia=ID to start a server there and connect to it")
    launch = _launch(spec, through_via=spec.via is not None)
    if spec.via is not None and launch is not None:
        from .via import start_via

        assert middle is not None  # the group found it
        return start_via(spec, gateway_id, debug, middle, launch)
    if launch is None:
        from .popen import start_popen

        return start_popen(spec, gateway_id, debug)
    from .command import far_config, start_command

    return start_command(launch.argv, far_config(spec, gateway_id, debug), f"gateway {gateway_id!r} ({spec})",
                         explain=launch.explain)


def _launch(spec: XSpec, through_via: bool = False) -> Launch | None:
    """The command line that starts the far Python; None for a plain local popen (popen.py)."""
    if spec.type == "ssh":
        from .ssh import ssh_launch

        return ssh_launch(spec)
    if spec.prefixes() or through_via:
        from .prefix import command_launch

        where = f"on the machine of gateway {spec.via!r}" if spec.via is not None else "on this machine"
        return command_launch(spec, where)
    return None
