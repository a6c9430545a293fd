"""execnet.gateway_io: the command lines execwire starts far interpreters with.

execnet's own I/O classes are internals that execwire does without; the
functions that build command lines return execwire's.
"""

from __future__ import annotations

from execwire import bootstrap
from execwire.transports.command import python_argv
from execwire.transports.ssh import ssh_launch

from .xspec import XSpec, to_execwire

popen_bootstrapline = bootstrap.stage1()


def popen_args(spec: XSpec) -> list[str]:
    """The command that starts the far Python of a popen spec."""
    return python_argv(to_execwire(spec))


def ssh_args(spec: XSpec) -> list[str]:
    """The ssh command that starts the far Python of an ssh spec."""
    return list(ssh_launch(to_execwire(spec)).argv)


def vagrant_ssh_args(spec: XSpec) -> list[str]:
    """vagrant_ssh is not available with execwire: raises ValueError saying what to use instead."""
    to_execwire(spec)
    raise AssertionError("unreachable")  # pragma: no cover
