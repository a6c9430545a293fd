"""Import forwarding: the controller serves pure-Python modules that a far side lacks.

Per gateway, an ImportService ships ``_imports_far`` once (remote_exec), which puts a finder at the
end of the far sys.meta_path and opens a service channel back here; its requests are answered on the
service's own thread from what this interpreter can import (sys.path, outside the standard
library), narrowed by the gateway's ImportPolicy. Each module goes to a gateway once; with it go the
modules of the same package that its source imports unconditionally at module level, which the far
side will certainly ask for next.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import _imports_far
from ._far.channel import Channel
from ._far.errors import Error, GatewayLostError

if TYPE_CHECKING:
    from .gateway import Gateway
    from .spec import XSpec

MAIN_MODULE = _imports_far.MAIN_MODULE
MAX_FILES = 2000  # data files listed per package
AHEAD_BYTES = 8 * 1024 * 1024  # at most this much source sent ahead with one answer


class ServedGateway(Protocol):
    """What the answering half needs of a gateway, of either face."""

    @property
    def id(self) -> str: ...

    @property
    def spec(self) -> XSpec: ...


def _names(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    names = tuple(name.strip() for name in value if name.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{name!r} is not a module name (allow and deny list dotted module names)")
    return names


def _covers(prefixes: tuple[str, ...], fullname: str) -> bool:
    return any(fullname == prefix or fullname.startswith(prefix + ".") for prefix in prefixes)


@dataclass(frozen=True)
class ImportPolicy:
    """What a gateway may import from the controller.

    ``forward``: False serves nothing (calls still get the controller's __main__ script).
    ``allow``: if given, only these modules and their submodules; ``deny``: never these
    (and their submodules), even if allowed. The standard library and compiled modules are
    never served.
    """

    forward: bool = True
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()

    @classmethod
    def make(cls, forward: bool = True, allow: str | Iterable[str] | None = None,
             deny: str | Iterable[str] | None = None) -> ImportPolicy:
        return cls(forward, _names(allow), _names(deny) or ())

    def refusal(self, fullname: str) -> str | None:
        """Why ``fullname`` may not be served, or None."""
        if _covers(self.deny, fullname):
            return f"the controller's import policy for this gateway denies it (deny={','.join(self.deny)})"
        if self.allow is not None and not _covers(self.allow, fullname):
            return (f"the controller's import policy for this gateway does not allow it "
                    f"(allow={','.join(self.allow)})")
        return None


# -- finding modules on this side ---------------------------------------------------------------

@dataclass(frozen=True)
class Located:
    """A module as this interpreter would import it."""

    name: str
    origin: str | None
    package: bool
    locations: tuple[str, ...]  # a package's folders
    source: str | None
    kind: str  # "source", "compiled", "stdlib", "nosource", "missing"


@functools.cache
def _stdlib_folders() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    folders = {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib") if key in paths}
    return tuple(sorted(folders))


@functools.cache
def _site_folders() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(sorted({os.path.realpath(paths[key]) for key in ("purelib", "platlib") if key in paths}))


def _in_stdlib(origin: str) -> bool:
    real = os.path.realpath(origin)
    if any(real.startswith(folder + os.sep) for folder in _site_folders()):
        return False
    return any(real.startswith(folder + os.sep) for folder in _stdlib_folders())


def _find_spec(fullname: str, path: list[str] | None) -> importlib.machinery.ModuleSpec | None:
    """The spec this interpreter would use, without importing anything (not even the parents)."""
    module = sys.modules.get(fullname)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is not None:
        return spec  # type: ignore[no-any-return]
    try:
        found = importlib.machinery.PathFinder.find_spec(fullname, path)
    except KeyError:  # a namespace package inside one that is not imported here: its folders, then
        tail = fullname.rpartition(".")[2]
        folders = [os.path.join(entry, tail) for entry in path or () if os.path.isdir(os.path.join(entry, tail))]
        found = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        found.submodule_search_locations = folders
    if found is not None:
        return found
    for finder in sys.meta_path:  # editable installs and the like add finders of their own
        if finder in (importlib.machinery.PathFinder, importlib.machinery.BuiltinImporter,
                      importlib.machinery.FrozenImporter):
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            found = find(fullname, path)
        except Exception:  # a third-party finder that fails is one that does not have it
            continue
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None


def locate(fullname: str, parent_locations: tuple[str, ...] | None) -> Located:
    """Find ``fullname`` here: top-level on sys.path, a submodule in its parent's folders."""
    top = fullname.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return Located(fullname, None, False, (), None, "stdlib")
    if fullname == MAIN_MODULE:
        return _main_script()
    spec = _find_spec(fullname, list(parent_locations) if parent_locations is not None else None)
    if spec is None:
        return Located(fullname, None, False, (), None, "missing")
    locations = tuple(spec.submodule_search_locations or ())
    package = spec.submodule_search_locations is not None
    origin = spec.origin if spec.has_location else None
    if origin is None:
        if package:  # a namespace package: nothing to run, only folders
            return Located(fullname, None, True, locations, "", "source")
        return Located(fullname, None, False, (), None, "stdlib" if spec.origin in ("built-in", "frozen")
                       else "nosource")
    if _in_stdlib(origin):
        return Located(fullname, origin, package, locations, None, "stdlib")
    loader = spec.loader
    if isinstance(loader, importlib.machinery.ExtensionFileLoader) or origin.endswith(
            tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return Located(fullname, origin, package, locations, None, "compiled")
    get_source = getattr(loader, "get_source", None)
    try:
        source = get_source(fullname) if get_source is not None else None
    except (ImportError, OSError, SyntaxError, UnicodeDecodeError):
        source = None
    if source is None:
        return Located(fullname, origin, package, locations, None, "nosource")
    return Located(fullname, origin, package, locations, source, "source")


def _main_script() -> Located:
    main = sys.modules.get("__main__")
    filename = getattr(main, "__file__", None)
    if filename is None or not os.path.isfile(filename):
        return Located(MAIN_MODULE, None, False, (), None, "missing")
    source = importlib.util.decode_source(Path(filename).read_bytes())
    return Located(MAIN_MODULE, os.path.abspath(filename), False, (), source, "source")


def _distribution(top: str) -> str | None:
    try:
        from importlib.metadata import packages_distributions

        names = packages_distributions().get(top)
    except Exception:
        return None
    return names[0] if names else None


def refusal_text(located: Located) -> str:
    """The far ImportError's message for a module that exists here but is not sent."""
    name = located.name
    if located.kind == "compiled":
        top = name.partition(".")[0]
        dist = _distribution(top) or top
        return (f"No module named {name!r} on the far side, and execwire cannot forward it: it is a compiled "
                f"extension module ({located.origin} on the controller) and only pure-Python modules travel; "
                f"install it on the far side (for example: pip install {dist})")
    if located.kind == "nosource":
        return (f"No module named {name!r} on the far side, and execwire cannot forward it: the controller "
                f"has no source for it ({located.origin}); install it on the far side")
    return f"No module named {name!r} on the far side"


# -- what a module will certainly import next ----------------------------------------------------

def certain_imports(source: str, fullname: str, package: bool) -> list[str]:
    """Absolute names of what the module's top level imports unconditionally (outside try, if, def)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    here = fullname if package else fullname.rpartition(".")[0]
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found.extend(".".join(parts[:index]) for index in range(1, len(parts) + 1))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here.split(".")
                if node.level - 1 >= len(base_parts) or not here:
                    continue
                base = ".".join(base_parts[:len(base_parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            elif node.module:
                target = node.module
            else:
                continue
            parts = target.split(".")
            found.extend(".".join(parts[:index]) for index in range(1, len(parts) + 1))
            found.extend(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


@functools.lru_cache(maxsize=64)
def _shipped_imports(source: str) -> tuple[str, ...]:
    """What shipped code imports for certain (the same code is often shipped again and again)."""
    return tuple(name for name in certain_imports(source, "__channelexec__", False) if "." in name)


def _data_files(folder: str) -> list[str]:
    """A package folder's files other than Python code, as relative posix paths."""
    files: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            files.append(Path(root, name).relative_to(folder).as_posix())
            if len(files) >= MAX_FILES:
                return files
    return files


# -- one gateway's service ------------------------------------------------------------------------

class ModuleServer:
    """What a gateway's far finder is told: the answering half of import forwarding, whatever drives it.

    A driver receives the far side's requests on the service channel and hands each to
    _answer(), which sends the replies on what it is given: the threaded ImportService
    below, and the async faces' service (execwire/_async/imports.py). Requests are
    answered one at a time; ``_lock`` guards the hints, which the code that ships
    code and calls functions adds to meanwhile.
    """

    def __init__(self, gateway: ServedGateway, policy: ImportPolicy) -> None:
        self.gateway = gateway
        self.policy = policy
        self.requests = 0  # requests answered: the round trips imports cost
        self.sent: set[str] = set()  # modules this gateway was sent
        self.hints: set[str] = set()  # modules shipped code imports for certain: sent with the first of them
        self._located: dict[str, Located] = {}
        self._served_folders: set[str] = set()
        self._lock = threading.Lock()
        self._started = False  # the driver shipped the far end: the policy is fixed from then on

    def change_policy(self, policy: ImportPolicy, gateway_id: str) -> None:
        """forward_imports() with another policy: taken if nothing was served yet, else refused."""
        if policy == self.policy:
            return
        if self._started:
            raise RuntimeError(f"gateway {gateway_id!r} forwards imports already with {self.policy}; "
                               "the policy is set once per gateway, before its first call")
        self.policy = policy

    def _answer(self, channel: Channel, request: Any) -> None:
        number = request[-1] if isinstance(request, tuple) and len(request) == 3 else None
        try:
            kind, what, number = request
            answer: Any = self.find(what) if kind == "find" else self.data(what)
        except Exception as exc:  # the far import must not wait for an answer that never comes
            answer = ("error", f"{type(exc).__name__}: {exc}")
        self.requests += 1
        from .transports import middle_cache  # (hashlib: only when answers are sent)

        try:
            if middle_cache.by_reference(channel):
                self._reply_by_reference(channel, number, answer)
            else:
                channel.send((number, answer))
        except Error:
            pass

    @staticmethod
    def _reply_by_reference(channel: Channel, number: Any, answer: Any) -> None:
        """Behind via=, sources and data files go by reference: they cross the link to the middle
        once for all the gateways behind it (transports/middle_cache.py)."""
        from .transports import middle_cache

        if isinstance(answer, bytes):
            answer = middle_cache.Blob.of(answer)
        elif isinstance(answer, dict):
            answer = {name: middle_cache.Blob.of(record) if len(record.get("source") or "") >= middle_cache.WORTH_IT
                      else record for name, record in answer.items()}
        middle_cache.send_pieces(channel, middle_cache.encode_pieces((number, answer)))

    def _locate(self, fullname: str) -> Located:
        located = self._located.get(fullname)
        if located is None:
            parent, _, _ = fullname.rpartition(".")
            if parent:
                parent_located = self._locate(parent)
                if not parent_located.package:
                    located = Located(fullname, None, False, (), None, "missing")
                else:
                    located = locate(fullname, parent_located.locations)
            else:
                located = locate(fullname, None)
            self._located[fullname] = located
        return located

    def _may_serve(self, fullname: str) -> str | None:
        """Why the policy refuses ``fullname`` (the controller's __main__ script is always served)."""
        if fullname == MAIN_MODULE:
            return None
        if not self.policy.forward:
            return "import forwarding is off for this gateway"
        return self.policy.refusal(fullname)

    def _record(self, located: Located) -> dict[str, Any]:
        record: dict[str, Any] = {"source": located.source, "origin": located.origin,  # None: namespace
                                  "package": located.package}
        if located.package:
            folder = os.path.dirname(located.origin) if located.origin else None
            if folder is not None:
                self._served_folders.add(os.path.realpath(folder))
                record["files"] = _data_files(folder)
        return record

    def find(self, fullname: str) -> dict[str, Any]:
        """The answer to ("find", fullname): its record and those certain to be wanted next."""
        refused = self._may_serve(fullname)
        located = self._locate(fullname)
        if located.kind in ("missing", "stdlib"):
            return {fullname: {"missing": True}}
        if refused is not None:
            return {fullname: {"refused": f"No module named {fullname!r} on the far side, and execwire does "
                                          f"not forward it: {refused}"}}
        if located.kind != "source":
            return {fullname: {"refused": refusal_text(located)}}
        answer = {fullname: self._record(located)}
        self.sent.add(fullname)
        self._send_ahead(located, answer)
        return answer

    def hint(self, source: str) -> None:
        """Shipped code is about to run: what its top level imports for certain goes with the first answer."""
        if self.policy.forward:
            names = _shipped_imports(source)
            with self._lock:
                self.hints.update(names)

    def _send_ahead(self, first: Located, answer: dict[str, Any]) -> None:
        top = first.name.partition(".")[0]
        budget = AHEAD_BYTES
        todo = [first]
        with self._lock:
            hinted = sorted(name for name in self.hints if name.partition(".")[0] == top)
        while todo:
            current = todo.pop()
            assert current.source is not None
            wanted = certain_imports(current.source, current.name, current.package)
            if current is first:
                wanted += hinted
            for name in wanted:
                if name in answer or name in self.sent or name.partition(".")[0] != top:
                    continue
                if self._may_serve(name) is not None:
                    continue
                located = self._locate(name)
                if located.kind != "source" or located.source is None or len(located.source) > budget:
                    continue
                budget -= len(located.source)
                answer[name] = self._record(located)
                self.sent.add(name)
                todo.append(located)

    def data(self, path: str) -> bytes | None:
        """A data file of a package this gateway was sent, or None."""
        real = os.path.realpath(path)
        if not any(real.startswith(folder + os.sep) for folder in self._served_folders):
            return None
        try:
            return Path(real).read_bytes()
        except OSError:
            return None


class ImportService(ModuleServer):
    """Import forwarding and the call runner of one threaded gateway.

    Concurrency: requests are answered by a thread of the service's own, one at a time
    (the far side asks one at a time too); ``_lock`` guards the start-up state and the
    hints, which the threads that ship code and call functions share with it.
    """

    gateway: Gateway

    def __init__(self, gateway: Gateway, policy: ImportPolicy) -> None:
        super().__init__(gateway, policy)
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._waiting: list[Callable[[Exception | None], None]] = []
        self._service_channel: Channel | None = None  # the far end's requests come on it

    def start(self) -> None:
        """Ship the far end (once); readiness is reported to when_ready() callbacks."""
        with self._lock:
            if self._started:
                return
            self._started = True
        try:
            channel = self.gateway.remote_exec(_imports_far)
            channel.send(self.policy.forward)
        except Error as exc:
            self._became_ready(exc)
            return
        channel.setcallback(functools.partial(self._installed, channel), endmarker=None)

    def _installed(self, channel: Channel, item: Any) -> None:
        """The far end sent its service channel; it is in place once its remote_exec has ended
        (with the main_thread_only exec model, the next remote_exec waits for that)."""
        if isinstance(item, Channel):
            # a thread of its own, not the callback thread: a slow callback of the user's must not hold
            # up imports, and the far side may import while the callback thread waits for a call
            threading.Thread(target=self._serve, args=(item,), daemon=True,
                             name=f"execwire-imports-{self.gateway.id}").start()
            self._service_channel = item
        elif not self._ready.is_set():
            if self._service_channel is not None:
                self._became_ready(None)
                return
            error = self.gateway._start_error or getattr(channel, "_error", None) or GatewayLostError(
                f"gateway {self.gateway.id!r}: the far side of import forwarding did not start")
            self._became_ready(error)

    def _became_ready(self, error: Exception | None) -> None:
        with self._lock:
            if self._ready.is_set():
                return
            self._error = error
            self._ready.set()
            waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback(error)

    def when_ready(self, callback: Callable[[Exception | None], None]) -> None:
        """Call ``callback(None)`` once the far end is in place (now if it is), or with the error."""
        self.start()
        with self._lock:
            if not self._ready.is_set():
                self._waiting.append(callback)
                return
        callback(self._error)

    @property
    def ready(self) -> bool:
        """True once the far end is in place (or failed to be)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> None:
        self.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"gateway {self.gateway.id!r}: import forwarding was not in place within "
                               f"{timeout} seconds")
        if self._error is not None:
            raise self._error

    # -- answering ----------------------------------------------------------------------------
    def _serve(self, channel: Channel) -> None:
        """Answer the far side's requests until its service channel ends (with the gateway)."""
        while True:
            try:
                request = channel.receive()
            except (EOFError, Error):
                return
            self._answer(channel, request)


_services_lock = threading.Lock()


def service(gateway: Gateway) -> ImportService:
    """The gateway's ImportService, made (with the policy of its spec) on first use."""
    existing: ImportService | None = getattr(gateway, "_import_service", None)
    if existing is not None:
        return existing
    with _services_lock:
        existing = getattr(gateway, "_import_service", None)
        if existing is None:
            existing = ImportService(gateway, spec_policy(gateway))
            gateway._import_service = existing  # type: ignore[attr-defined]
    return existing


def spec_policy(gateway: ServedGateway) -> ImportPolicy:
    spec = gateway.spec
    mode = getattr(spec, "imports", None)
    if mode not in (None, "on", "off", "auto"):
        raise ValueError(f"imports={mode} in gateway spec {str(spec)!r}: use on, off or auto")
    return ImportPolicy.make(mode != "off", getattr(spec, "imports_allow", None),
                             getattr(spec, "imports_deny", None))


def requested_policy(gateway: Any, allow: str | Iterable[str] | None,
                     deny: str | Iterable[str] | None) -> ImportPolicy:
    """The policy forward_imports(allow, deny) asks for: what is left None, the spec says."""
    from_spec = spec_policy(gateway)
    return ImportPolicy.make(True, from_spec.allow if allow is None else allow,
                             from_spec.deny if deny is None else deny)


def forward_imports(gateway: Gateway, allow: str | Iterable[str] | None = None,
                    deny: str | Iterable[str] | None = None, timeout: float | None = None) -> ImportService:
    """Turn import forwarding on for ``gateway`` now, with this policy; wait until it is in place.

    ``allow`` or ``deny`` left None is what the spec says (imports_allow=, imports_deny=).
    """
    policy = requested_policy(gateway, allow, deny)
    with _services_lock:
        existing: ImportService | None = getattr(gateway, "_import_service", None)
        if existing is not None:
            existing.change_policy(policy, gateway.id)
        else:
            existing = ImportService(gateway, policy)
            gateway._import_service = existing  # type: ignore[attr-defined]
    existing.wait_ready(gateway.startup_timeout if timeout is None else timeout)
    return existing
