"""execnet.gateway_bootstrap: only its public error remains; execwire boots gateways its own way."""

from execwire import HostNotFound

__all__ = ["HostNotFound"]
