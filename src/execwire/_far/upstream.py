"""The far side's channel to the controller's services: log records and debugger sessions.

Far-side module: stdlib only, Python >= 3.6. Imports nothing heavy: logging and pdb
are set up only once shipped code imports them.

At start-up (boot.serve) the far side makes its first channel, id 2, and names it in
its HELLO; the controller has a callback on that id before it reads anything (see
execwire/upstream.py), so nothing sent on it is dropped. On it go ("log", record fields)
and ("debug", channel, facts). The forwarding handler (logforward.py) is put on the
root logger the moment shipped code first imports ``logging``, and pdb.set_trace
is redirected (debugger.py) the moment it imports ``pdb``; breakpoint() goes there
from the start. A gateway that does not use them pays for neither.

The controller sends ("level", number) on the same channel when its root logger's
level changed and this far side follows it (the spec gave no level). The channel's
queue handles it as the reader thread delivers it, so it is applied before the
code or call sent after it is read. It is kept for when logging gets imported; once
the far code set the root level itself (another level than the one given), that stays.
"""

import sys
import threading

from .sync import ItemQueue

_link = None  # the Upstream of this process, once installed


class Upstream(object):
    """The channel to the controller and what goes out on it."""

    def __init__(self, gateway, config):
        self.gateway = gateway
        self.channel = gateway.newchannel()
        gateway.service_channels += 1  # remote_status() counts the channels of shipped code only
        self.logging = config.get("logging")  # None: the far logging is left alone
        # called before a record or a debugger prompt goes out: the execwire command's job flushes the
        # text its code printed, so that what was printed first is shown first
        self.flush_hooks = []
        self.own_files = set()  # files of execwire code shipped at run time (the command's job): pdb skips them
        self._level_lock = threading.Lock()
        self._logging = None  # the logging module, once forwarding is installed
        self._given_level = None  # the root level we set, while the far code has set none of its own
        if self.channel._items is not None and self.channel._items.empty():  # nothing can have come yet
            items = _ArrivalQueue()
            items.link = self
            self.channel._items = items

    def install(self):
        """Make the services reachable: breakpoint() now, logging and pdb once they are imported."""
        global _link
        from . import debugger

        _link = self
        actions = {"pdb": debugger.redirect_pdb}
        if self.logging is not None:
            actions["logging"] = self._install_logging
        for name in list(actions):
            module = sys.modules.get(name)
            if module is not None:  # imported already (by a startup file): set it up at once
                _run_action(actions.pop(name), module)
        if actions:
            sys.meta_path.insert(0, OnImport(actions))
        if hasattr(sys, "breakpointhook"):  # Python 3.7+
            sys.breakpointhook = debugger.breakpointhook

    def _install_logging(self, module):
        from . import logforward

        with self._level_lock:
            logforward.install(self, module, self.logging)
            self._logging = module
            if self.logging.get("follow"):
                self._given_level = module.getLogger().level

    def _arrived(self):
        """Take what the controller sent (on the reader thread, as it arrives)."""
        while True:
            try:
                message = self.channel.receive(0)
            except Exception:  # nothing more now (or the channel closed)
                return
            if isinstance(message, tuple) and len(message) == 2 and message[0] == "level":
                self._follow_level(message[1])

    def _follow_level(self, level):
        """The controller's root level changed: ours follows, unless the spec or the far code set one."""
        with self._level_lock:
            settings = self.logging
            if settings is None or not settings.get("follow") or not isinstance(level, int):
                return
            if self._logging is None:
                settings["level"] = level  # logging is not imported yet: it starts with this one
                return
            root = self._logging.getLogger()
            if self._given_level is None or root.level != self._given_level:
                self._given_level = None  # the far code set its own level: it stays
                return
            root.setLevel(level)
            self._given_level = level

    def send(self, message):
        """Send ``message`` to the controller, after what the code printed before it."""
        self.flush()
        self.channel.send(message)

    def flush(self):
        """Send what the code printed so far (if something printing registered a hook)."""
        for hook in list(self.flush_hooks):
            try:
                hook()
            except Exception:
                pass


def current():
    """The Upstream of this far process, or None (a gateway not started by execwire's boot)."""
    return _link


class _ArrivalQueue(ItemQueue):
    """The upstream channel's item queue: what arrives is handled at once, by the thread that delivers it."""

    link = None  # the Upstream it belongs to

    def put(self, item, block=True, timeout=None):
        ItemQueue.put(self, item)
        self.link._arrived()


class OnImport(object):
    """A meta path finder that runs an action on a module right after its first import, then leaves.

    It finds nothing itself: it asks the finders after it and wraps the loader
    they give, so the module is imported exactly as it would be without it.
    """

    def __init__(self, actions):
        self._actions = actions  # module name -> function(module)
        self._lock = threading.Lock()

    def find_spec(self, name, path=None, target=None):
        if name not in self._actions:
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ThenLoader(spec.loader, self._take(name))
        return spec

    def _take(self, name):
        with self._lock:
            action = self._actions.pop(name, None)
            if not self._actions and self in sys.meta_path:
                sys.meta_path.remove(self)
        return action


class _ThenLoader(object):
    """The real loader, followed by an action on the module it executed."""

    def __init__(self, loader, action):
        self._loader = loader
        self._action = action

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self._loader  # the module keeps the real loader (linecache, inspect read it)
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        if self._action is not None:
            _run_action(self._action, module)


def _run_action(action, module):
    try:
        action(module)
    except Exception as exc:  # the import itself must not fail because of us
        sys.stderr.write("execwire: could not set up %s forwarding: %s: %s\n"
                         % (module.__name__, exc.__class__.__name__, exc))
