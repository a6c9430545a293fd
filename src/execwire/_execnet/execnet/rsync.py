"""execnet.rsync: execwire's RSync under execnet's name (verbose by default, as execnet's)."""

from __future__ import annotations

from execwire.rsync import RSync as _RSync


class RSync(_RSync):
    """Send a directory tree to one or more gateways (see execwire.rsync.RSync)."""

    def __init__(self, sourcedir: object, callback: object = None, verbose: bool = True) -> None:
        super().__init__(sourcedir, callback=callback, verbose=verbose)  # type: ignore[arg-type]
