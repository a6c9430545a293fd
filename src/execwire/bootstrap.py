"""What a new far interpreter is started with.

Stage 1 is the ``python -c`` argument: a few lines, valid even on Python 2, that
refuse a too-old interpreter with a message the near side recognises, then read a
fixed number of bytes from stdin and run them. Those bytes (stage 2) are the
zlib-compressed sources of ``execwire._far``, installed on the far side as real
modules of a package named ``_execwire_far``, followed by the call to its boot.
Settings travel afterwards as a CONFIG frame: data, never code.

When the far interpreter is this very interpreter (a popen gateway without
``python=``), stage 2 travels compiled (marshal), which saves compiling the far
modules at every start; marshal data is only valid for the same Python version.
"""

from __future__ import annotations

import functools
import importlib.util
import marshal
import types
import zlib
from pathlib import Path

from ._far import frames, wire

FAR_PACKAGE = "_execwire_far"
# dependency order: a module is installed after those it imports
FAR_MODULES = ("errors", "frames", "wire", "protocol", "sync", "streams", "interrupts", "baton", "channel", "gateway",
               "asyncrun", "execution", "upstream", "logforward", "debugger", "watchdog", "boot")
MIN_VERSION = (3, 6)

_STAGE2_TEMPLATE = '''\
import sys, types


class _Loader(object):
    """Hands module sources to linecache so far tracebacks show their lines."""

    def __init__(self, sources):
        self.sources = sources

    def get_source(self, fullname):
        return self.sources.get(fullname.rpartition(".")[2])


def _install(package, names, sources, codes):
    pkg = types.ModuleType(package)
    pkg.__path__ = []
    pkg.__package__ = package
    sys.modules[package] = pkg
    loader = _Loader(sources)
    for name in names:
        module = types.ModuleType(package + "." + name)
        module.__file__ = "execwire/_far/%s.py" % name
        module.__package__ = package
        module.__loader__ = loader
        sys.modules[module.__name__] = module
        code = codes[name] if codes else compile(sources[name], module.__file__, "exec")
        exec(code, module.__dict__)
        setattr(pkg, name, module)
    return pkg


_install(@PACKAGE@, @NAMES@, @SOURCES@, @CODES@).boot.main()
'''


def far_sources() -> dict[str, str]:
    """The source text of every far-side module, by short name."""
    folder = Path(__file__).parent / "_far"
    return {name: (folder / f"{name}.py").read_text(encoding="utf-8") for name in FAR_MODULES}


def _stage2_text(sources: str, codes: str) -> str:
    return (_STAGE2_TEMPLATE.replace("@PACKAGE@", repr(FAR_PACKAGE))
            .replace("@NAMES@", repr(FAR_MODULES))
            .replace("@SOURCES@", sources)
            .replace("@CODES@", codes))


@functools.cache
def stage2(marshalled: bool = False) -> bytes:
    """The compressed far-side program (built once per process and form)."""
    if not marshalled:
        return zlib.compress(_stage2_text(repr(far_sources()), "None").encode("utf-8"), 9)
    # the far side runs marshal.loads(...) of (program, its globals); the module code comes from
    # the import system, which reuses this interpreter's bytecode cache where it can. Its file names
    # are those of this machine's far modules, which tracebacks read, so no sources travel. It goes
    # through a local pipe, so quick compression beats small.
    program = compile(_stage2_text("{}", "CODES"), "<execwire stage 2>", "exec")
    codes = {name: _module_code(name) for name in FAR_MODULES}
    return zlib.compress(marshal.dumps((program, {"CODES": codes})), 1)


def _module_code(name: str) -> types.CodeType:
    """The code of far module ``name``, as this interpreter's import system would load it."""
    fullname = f"{__package__}._far.{name}"
    spec = importlib.util.find_spec(fullname)
    code = spec.loader.get_code(fullname) if spec is not None and spec.loader is not None else None  # type: ignore[attr-defined]
    if code is None:  # no loader that gives code: compile the source
        code = compile(far_sources()[name], f"execwire/_far/{name}.py", "exec")
    return code


@functools.cache
def stage1(marshalled: bool = False) -> str:
    """The ``python -c`` program: version check, then read and run stage 2."""
    marker = frames.TOO_OLD_MARKER.decode("ascii")
    # d (and the source text) must not stay referenced while the far side runs: memory it would keep
    if marshalled:
        run = "p=marshal.loads(zlib.decompress(d));del d,c\nexec(*p)"
    else:
        run = "p=compile(zlib.decompress(d),'<execwire stage 2>','exec');del d,c\nexec(p)"
    return (
        "import sys,os,zlib" + (",marshal" if marshalled else "") + "\n"
        f"if sys.version_info<{MIN_VERSION!r}:"
        f"os.write(1,('{marker} %s is Python %s; execwire needs Python "
        f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer on the far side\\n'"
        "%(sys.executable,sys.version.split()[0])).encode());sys.exit(3)\n"
        f"n={len(stage2(marshalled))};d=b''\n"
        "while len(d)<n:\n"
        " c=os.read(0,n-len(d))\n"
        " if not c:sys.exit(4)\n"
        " d+=c\n"
        f"{run}\n"
    )


def boot_bytes(config: dict[str, object], marshalled: bool = False) -> bytes:
    """Everything the near side writes first: stage 2, then the CONFIG frame."""
    return stage2(marshalled) + config_frame(config)


def config_frame(config: dict[str, object]) -> bytes:
    payload = b"".join(bytes(part) for part in wire.encode(config))
    return frames.header(frames.CONFIG, 0, len(payload)) + payload
