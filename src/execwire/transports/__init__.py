"""Ways to reach a far interpreter; each returns a frame transport and its local process, if any.

``start`` picks the transport for a spec. Every transport ends in a Python that
runs the boot program (see bootstrap.py) with the protocol on its stdin/stdout
or on a socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._far.io import Transport
from ..process import Process
from ..spec import XSpec

if TYPE_CHECKING:
    from ..group import Group


def start(spec: XSpec, gateway_id: str, debug: bool, group: Group) -> tuple[Transport, Process | None]:
    """Start the far interpreter that ``spec`` describes."""
    if spec.via is not None or spec.type != "popen":
        raise ValueError(f"gateway type in {str(spec)!r} is not available yet; use popen")
    from .popen import start_popen

    return start_popen(spec, gateway_id, debug)
