"""Far end of import forwarding and of calls by reference.

Far-side code: stdlib only, Python >= 3.6. It is shipped with remote_exec(module) once per gateway
(execwire/imports.py) and runs as ``__channelexec__``: it opens a service channel of its own, puts a
finder at the end of sys.meta_path that asks the controller over it for modules this interpreter lacks,
registers itself in sys.modules as ``_execwire_service`` (so each call's tiny shipped code finds
``run_call``) and sends the service channel back, which tells the controller that all is in place.

Service channel, far to near: ("find", fullname, number) and ("data", path, number); near to far:
(number, answer), where the answer is for "find" a dict
{fullname: record or None} (the module asked for and those certain to be imported next), for "data"
the bytes or None. A record is a dict: source, origin, package, files (a package's data files, paths
relative to its folder) or refused (why the controller does not serve it) and missing (the far side
should act as if nothing had been found). Nothing is written on this side: sources live in memory.
"""

import io
import os
import sys
import threading
import time
import types

try:
    from importlib.machinery import ModuleSpec
except ImportError:  # pragma: no cover
    ModuleSpec = None

SERVICE_MODULE = "_execwire_service"
MAIN_MODULE = "__execwire_main__"  # the controller's __main__ script, imported under this name
ANSWER_TIMEOUT = 120.0  # seconds a far import waits for the controller's answer
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


class ForwardingFinder(object):
    """The last finder on sys.meta_path: what nothing else found, the controller may have."""

    def __init__(self, channel, forward=True):
        self.channel = channel
        self.forward = forward  # False: only the controller's __main__ script (for calls)
        self.records = {}  # fullname -> record, or None for "not found there either"
        self.lock = threading.Lock()  # one request on the channel at a time
        self.asked = 0  # requests sent (they are numbered)
        self.folders = []  # the controller's folders of the packages it sent (their data files are served)

    def find_spec(self, fullname, path=None, target=None):
        if not self.forward and fullname != MAIN_MODULE:
            return None
        if fullname in _STDLIB or fullname.partition(".")[0] in _STDLIB:
            return None  # this Python's standard library is its own business
        parent, _, _ = fullname.rpartition(".")
        if parent and not isinstance(getattr(sys.modules.get(parent), "__loader__", None), ForwardingLoader):
            return None  # only submodules of packages that came from the controller
        record = self.lookup(fullname)
        if record is None or record.get("missing"):
            return None
        if record.get("refused"):
            # the import fails, saying why; a probe (importlib.util.find_spec) gets a spec, not an error
            return ModuleSpec(fullname, RefusedLoader(fullname, record["refused"]))
        loader = ForwardingLoader(self, fullname, record)
        spec = ModuleSpec(fullname, loader, origin=record["origin"], is_package=record["package"])
        # __file__ is the controller's path, so tracebacks name the real file (a namespace package has none)
        spec.has_location = record["origin"] is not None
        return spec

    def lookup(self, fullname):
        with self.lock:
            if fullname not in self.records:
                answer = self.ask(("find", fullname), fullname)
                for record in answer.values():
                    if record and record.get("package") and record.get("origin"):
                        self.folders.append(os.path.dirname(record["origin"]) + os.sep)
                self.records.update(answer)
            return self.records.get(fullname)

    def serves(self, path):
        """Whether ``path`` lies in the folder of a package that came from the controller."""
        return any(path.startswith(folder) for folder in self.folders)

    def ask(self, request, what):
        """Send a request and wait for its answer (holding self.lock).

        Requests are numbered, so the late answer to one that timed out is not
        taken for the answer to the next.
        """
        self.asked += 1
        number = self.asked
        deadline = time.monotonic() + ANSWER_TIMEOUT
        try:
            self.channel.send(request + (number,))
            while True:
                answered, answer = self.channel.receive(max(deadline - time.monotonic(), 0))
                if answered == number:
                    break
        except Exception as exc:
            raise ImportError("execwire could not ask the controller for %s: %s: %s"
                              % (what, exc.__class__.__name__, exc))
        if isinstance(answer, tuple) and answer and answer[0] == "error":
            raise ImportError("the controller failed to serve %s: %s" % (what, answer[1]))
        return answer

    def read_data(self, path):
        with self.lock:
            data = self.ask(("data", path), path)
        if data is None:
            raise FileNotFoundError("%s: not on this machine, and the controller does not serve it "
                                    "(it serves the data files of packages it forwarded)" % (path,))
        return data

    def invalidate_caches(self):
        pass


class RefusedLoader(object):
    """For a module the controller has but does not send: importing it raises, saying why."""

    def __init__(self, fullname, reason):
        self.name = fullname
        self.reason = reason

    def create_module(self, spec):
        raise ModuleNotFoundError(self.reason, name=self.name)

    def exec_module(self, module):  # pragma: no cover - create_module raised
        raise ModuleNotFoundError(self.reason, name=self.name)


class ForwardingLoader(object):
    """Loads a module from source the controller sent; also serves its data files and source."""

    def __init__(self, finder, fullname, record):
        self.finder = finder
        self.name = fullname
        self.record = record
        self.path = record["origin"] or "<namespace package %s>" % fullname

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.record["source"]
        try:
            code = compile(source, self.path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise ImportError(
                "module %r (%s) came from the controller but this Python %s cannot compile it: %s: %s "
                "(line %s); run a newer Python on the far side (python= in the spec) or install a version "
                "of the module that supports this one" % (self.name, self.path, sys.version.split()[0],
                                                           exc.__class__.__name__, exc.msg, exc.lineno),
                name=self.name)
        exec(code, module.__dict__)

    def is_package(self, fullname):
        return bool(self.record["package"])

    def get_source(self, fullname):
        return self.record["source"]

    def get_filename(self, fullname):
        return self.path

    def get_data(self, path):
        return self.finder.read_data(path)

    def get_resource_reader(self, fullname):
        if not self.record["package"] or self.record["origin"] is None:
            return None
        return ResourceReader(self)


class ResourceReader(object):
    """importlib.resources for a forwarded package (contents/open_resource; files() on 3.10+)."""

    def __init__(self, loader):
        self.loader = loader
        self.folder = os.path.dirname(loader.path)
        self.files_list = list(loader.record.get("files") or ())

    def open_resource(self, resource):
        return io.BytesIO(self.loader.get_data(os.path.join(self.folder, resource)))

    def resource_path(self, resource):
        raise FileNotFoundError("%s of package %s is not on this machine" % (resource, self.loader.name))

    def is_resource(self, name):
        return name in self.files_list

    def contents(self):
        return sorted(set(name.split("/")[0] for name in self.files_list))

    def files(self):
        return Resource(self, "")


class Resource(object):
    """A file or folder of a forwarded package (an importlib.resources Traversable)."""

    def __init__(self, reader, relative):
        self._reader = reader
        self._relative = relative

    @property
    def name(self):
        return self._relative.rpartition("/")[2]

    def __repr__(self):
        return "<forwarded resource %s/%s>" % (self._reader.loader.name, self._relative)

    def _children(self):
        prefix = self._relative + "/" if self._relative else ""
        names = set()
        for path in self._reader.files_list:
            if path.startswith(prefix):
                names.add(path[len(prefix):].split("/")[0])
        return sorted(names)

    def is_file(self):
        return self._relative in self._reader.files_list

    def is_dir(self):
        return not self.is_file() and (not self._relative or bool(self._children()))

    def iterdir(self):
        for name in self._children():
            yield self.joinpath(name)

    def joinpath(self, *parts):
        path = "/".join([self._relative] + [str(part).strip("/") for part in parts if part]).strip("/")
        return Resource(self._reader, path)

    __truediv__ = joinpath

    def read_bytes(self):
        return self._reader.loader.get_data(os.path.join(self._reader.folder, *self._relative.split("/")))

    def read_text(self, encoding=None, errors=None):
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")

    def open(self, mode="r", *args, **kwargs):
        data = io.BytesIO(self.read_bytes())
        if "b" in mode:
            return data
        return io.TextIOWrapper(data, *args, **kwargs)


# -- calls by reference ---------------------------------------------------------------------------

_snippets = {}  # (source, filename) -> the function a shipped snippet defines
_snippets_lock = threading.Lock()


def run_call(channel):
    """Run the call the channel's first item describes; send ("ok", result) or ("unsendable", text)."""
    request = channel.receive()
    func = _resolve(request)
    if request["batch"]:
        result = _run_batch(func, request)
    else:
        result = func(*request["args"], **request["kwargs"])
    try:
        channel.send(("ok", result))
    except Exception as exc:
        if exc.__class__.__name__ != "DumpError":
            raise
        channel.send(("unsendable", str(exc)))


def serve_calls(channel):
    """Run the calls that arrive on the channel one after another, answering each in order.

    An Executor's slot sends its next call while this one runs, so no round trip is
    waited for between calls; the answers are ("ok", result), ("raised", traceback text)
    or ("unsendable", text).
    """
    import traceback

    for request in channel:
        try:
            func = _resolve(request)
            if request["batch"]:
                answer = ("ok", _run_batch(func, request))
            else:
                answer = ("ok", func(*request["args"], **request["kwargs"]))
        except BaseException:  # KeyboardInterrupt and SystemExit too: they end this call only
            kind, exc, tb = sys.exc_info()
            answer = ("raised", "".join(traceback.format_exception(kind, exc, tb.tb_next)))
            del tb
        try:
            channel.send(answer)
        except Exception as exc:
            if exc.__class__.__name__ != "DumpError":
                raise
            channel.send(("unsendable", str(exc)))


def _run_batch(func, request):
    """The calls of a chunk: "items" holds their positional arguments, "keywords" (if any) the rest."""
    keywords = request.get("keywords")
    if keywords is None:
        return [func(*args) for args in request["items"]]
    return [func(*args, **kwargs) for args, kwargs in zip(request["items"], keywords)]


def _resolve(request):
    snippet = request.get("snippet")
    if snippet is not None:
        return _snippet_function(*snippet)
    import importlib

    target = importlib.import_module(request["module"])
    for part in request["qualname"].split("."):
        target = getattr(target, part)
    return target


def _snippet_function(source, name, filename):
    """The function defined by shipped source (a __main__ function whose script cannot be shipped)."""
    key = (source, filename)
    with _snippets_lock:
        func = _snippets.get(key)
        if func is None:
            namespace = {"__name__": "__execwire_main__", "__file__": filename}
            _remember_lines(filename, source)
            exec(compile(source, filename, "exec", dont_inherit=True), namespace)
            func = _snippets[key] = namespace[name]
        return func


def _remember_lines(filename, source):
    import linecache

    lines = source.splitlines(True)
    linecache.cache[filename] = (len(source), None, lines, filename)


# -- installation ---------------------------------------------------------------------------------


def forward_open(finder):
    """Let open() for reading serve the data files of forwarded packages that are not on this machine.

    Only when the file is not found here and lies in such a package's folder (as a path made
    from its __file__ does); everything else is the original open(), exception included.
    """
    import builtins

    original = builtins.open

    def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True,
             opener=None):
        try:
            return original(file, mode, buffering, encoding, errors, newline, closefd, opener)
        except FileNotFoundError:
            if isinstance(file, int) or any(flag in mode for flag in "wax+") or not finder.folders:
                raise
            path = os.fspath(file)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            path = os.path.abspath(path)
            if not finder.serves(path):
                raise
            try:
                data = finder.read_data(path)
            except (FileNotFoundError, ImportError):
                raise FileNotFoundError(2, "No such file or directory (here, nor among the data files the "
                                           "controller serves)", path)
            stream = io.BytesIO(data)
            if "b" in mode:
                return stream
            return io.TextIOWrapper(stream, encoding=encoding, errors=errors, newline=newline)

    open.__doc__ = original.__doc__
    open.__wrapped__ = original
    builtins.open = io.open = open


def install(channel):
    """Open the service channel, put the finder in place, say so by sending the service channel."""
    service = channel.gateway.newchannel()
    module = types.ModuleType(SERVICE_MODULE)
    module.run_call = run_call
    module.serve_calls = serve_calls
    finder = ForwardingFinder(service, channel.receive())  # True: forward imports; False: only __main__
    sys.meta_path.append(finder)
    if finder.forward:
        forward_open(finder)
    module.finder = finder
    sys.modules[SERVICE_MODULE] = module
    channel.send(service)


if __name__ == "__channelexec__":
    install(channel)  # noqa: F821 - shipped code sees its channel
