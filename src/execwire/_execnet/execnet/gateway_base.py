"""execnet.gateway_base: channels, errors, serializer and exec models, mapped onto execwire.

Stdlib only, Python >= 3.6: shipped code may import it on a far side that has
no execwire (see _mode). The byte format is execwire's, not execnet's; the
classes that were execnet's internals (Message, ChannelFactory, Popen2IO) exist
as names only, so that code importing them still loads.
"""

from . import _compat
from ._compat import (  # noqa: F401 - re-exported
    NO_ENDMARKER_WANTED,
    ExecModel,
    MainThreadOnlyExecModel,
    ThreadExecModel,
    get_execmodel,
)
from ._mode import NEAR, channel_module, errors, wire

RemoteError = errors.RemoteError
TimeoutError = errors.TimeoutError  # noqa: A001 - execnet's name; also the builtin TimeoutError
DataFormatError = wire.DataFormatError
DumpError = wire.DumpError
LoadError = wire.LoadError

# the error (RemoteError.formatted) of a second remote_exec while main_thread_only runs one (_far/execution.py)
MAIN_THREAD_ONLY_DEADLOCK_TEXT = ("execwire: the main_thread_only exec model runs one remote_exec at a time and "
                                  "another one is still running")
INTERRUPT_TEXT = "KeyboardInterrupt"
ChannelFileWrite = channel_module.ChannelFileWrite
ChannelFileRead = channel_module.ChannelFileRead
ChannelFile = channel_module.ChannelFile

if NEAR:

    class Channel(channel_module.Channel):
        """A channel with execnet's manners (see _compat.add_execnet_behaviour)."""

        def __init__(self, gateway, *args):
            standalone = len(args) == 1
            if standalone:  # execnet's Channel(gateway, id): an object only, as execnet's (not in the table)
                args = (gateway._protocol, args[0])
            channel_module.Channel.__init__(self, gateway, *args)
            if standalone:  # so it owes the far side no CLOSE when it becomes garbage (the far side never made it)
                self._local = _protocol.CLOSE_SENT

    _compat.add_execnet_behaviour(Channel)

    from execwire._far import protocol as _protocol
    from execwire._far.gateway import BaseGateway  # noqa: F401
else:
    Channel = channel_module.Channel  # far side: _compat.install_far gave it execnet's manners
    BaseGateway = object


def dumps(obj):
    """Serialize ``obj`` (a value of basic types) to bytes; DumpError says what cannot be."""
    try:
        return wire.dumps(obj)
    except DumpError as exc:
        raise DumpError(_compat.cant_serialize(exc)) from None


def loads(data, py2str_as_py3str=False, py3str_as_py2str=False):
    """Deserialize bytes made by dumps(); the string options are accepted and need nothing (Python 3 only)."""
    return wire.loads(data)


def dump(file, obj):
    """Write ``obj`` to the binary ``file`` as dumps() would."""
    wire.dump(file, obj)


def load(file, py2str_as_py3str=False, py3str_as_py2str=False):
    """Read one object written by dump() from the binary ``file``."""
    return wire.load(file)


def geterrortext(exc, format_exception=None, sysex=(KeyboardInterrupt, SystemExit)):
    """The traceback text of ``exc``, as the far side reports it."""
    import traceback

    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except sysex:
        raise
    except BaseException:
        return "%s: %s" % (type(exc).__name__, exc)


class _Internal(object):
    """A name from execnet's internals that execwire does it without."""

    what = "this execnet internal"

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("%s does not exist in execwire's execnet package; it has other internals "
                                  "(see docs/execnet-migration.md)" % self.what)


class Message(_Internal):
    what = "execnet.gateway_base.Message (execnet's wire frames)"


class ChannelFactory(_Internal):
    what = "execnet.gateway_base.ChannelFactory (execnet's channel table)"


class Popen2IO(_Internal):
    what = "execnet.gateway_base.Popen2IO (execnet's pipe reader)"


class WorkerGateway(_Internal):
    what = "execnet.gateway_base.WorkerGateway (execnet's far side)"


class WorkerPool(_Internal):
    what = "execnet.gateway_base.WorkerPool (execnet's thread pool)"
