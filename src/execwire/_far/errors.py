"""Exceptions that both ends raise, split by cause.

Far-side module: stdlib only, Python >= 3.6. Imports nothing else.

- the far code raised: RemoteError
- you closed it: ChannelClosedError
- the peer or the link died: GatewayLostError
- a deadline passed: TimeoutError (also the builtin TimeoutError)
- the bytes on the wire make no sense: ProtocolError
- the far interpreter could not be started: GatewayStartError, HostNotFound,
  AuthenticationError
"""

import builtins


class Error(Exception):
    """Base of every execwire error."""


class RemoteError(Error):
    """Code on the other side raised; ``formatted`` holds its traceback text."""

    def __init__(self, formatted, gateway_id=None, channel_id=None):
        Error.__init__(self, formatted)
        self.formatted = formatted
        self.gateway_id = gateway_id
        self.channel_id = channel_id

    @property
    def type_name(self):
        """Name of the far exception type, read from the traceback's last line."""
        lines = [line for line in self.formatted.strip().splitlines() if line.strip()]
        if not lines:
            return ""
        last = lines[-1]
        return last.split(":", 1)[0].strip() if ":" in last else last.strip()

    def __str__(self):
        return self.formatted

    def __repr__(self):
        return "%s(%r)" % (self.__class__.__name__, self.formatted.strip().splitlines()[-1:])

    def warn(self):
        """Report an error that nobody received (execnet name)."""
        import sys

        sys.stderr.write("[execwire] unhandled remote error on channel %s: %s\n"
                         % (self.channel_id, self.formatted))


class TimeoutError(Error, builtins.TimeoutError):
    """A receive, waitclose or terminate ran past its deadline."""


class _CallbackChannelError(Error, RuntimeError, OSError):
    """receive() on a channel whose items go to a callback (an OSError, as execnet raises, and a RuntimeError)."""


class ChannelClosedError(Error, OSError):
    """Sending on a channel that this side or the far side closed."""


class GatewayLostError(Error, ConnectionError):
    """The far interpreter or the link to it went away."""


class ProtocolError(Error):
    """The peer sent bytes that are not execwire frames."""


class GatewayStartError(Error):
    """The far interpreter could not be started or did not answer."""


class HostNotFound(GatewayStartError):
    """The host of an ssh or socket gateway could not be reached."""


class AuthenticationError(GatewayStartError):
    """The far end refused our credentials (ssh key, socket server token), or we refused its."""


class CallbackError(RemoteError):
    """A callback set with setcallback() raised on this side; ``formatted`` holds its traceback.

    The channel is closed with that error on both sides: the other side's
    receivers get a RemoteError with the same text.
    """
