"""The public face is complete and true, and the far-side modules keep to their rules."""

from __future__ import annotations

import ast
import builtins
import glob
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import execwire

pytestmark = pytest.mark.timeout(60)

PACKAGE = Path(execwire.__file__).parent
FAR_FILES = sorted((PACKAGE / "_far").glob("*.py"))

# modules whose every public class and function is part of the public API
FULLY_PUBLIC = ["execwire._far.errors", "execwire.multi", "execwire.group"]
# other modules: the names of theirs that the public API re-exports
PARTLY_PUBLIC = {
    "execwire._far.channel": {"Channel"},
    "execwire._far.wire": {"DataFormatError", "DumpError", "LoadError", "dump", "dumps", "load", "loads"},
    "execwire.gateway": {"Gateway", "RInfo", "RemoteStatus"},
    "execwire.spec": {"XSpec"},
}
# what the seed and execnet 2.x users name (DESIGN.md), as far as the core provides it
CONTRACT = {"PopenGateway", "makegateway", "RemoteError", "XSpec", "MultiChannel", "Group", "default_group",
            "TimeoutError", "HostNotFound", "DataFormatError", "dumps", "loads", "dump", "load", "Channel",
            "Gateway", "set_execmodel"}


def _public_defined_in(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module_name:
            names.add(name)
    return names


def test_all_is_sorted_without_duplicates():
    assert len(set(execwire.__all__)) == len(execwire.__all__)
    assert list(execwire.__all__) == sorted(execwire.__all__)


def test_every_name_in_all_exists():
    missing = [name for name in execwire.__all__ if not hasattr(execwire, name)]
    assert not missing


def test_star_import_gives_exactly_all():
    namespace: dict[str, object] = {}
    exec("from execwire import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(execwire.__all__)


def test_all_holds_every_public_name_of_the_package_namespace():
    public = {name for name in vars(execwire) if not name.startswith("_") and
              not inspect.ismodule(getattr(execwire, name))}
    assert public - set(execwire.__all__) == set(), "public but not in __all__"


@pytest.mark.parametrize("module_name", FULLY_PUBLIC)
def test_every_public_class_and_function_of_a_public_module_is_exported(module_name):
    module = importlib.import_module(module_name)
    for name in _public_defined_in(module_name):
        assert name in execwire.__all__, f"{module_name}.{name} is public but not in execwire.__all__"
        assert getattr(execwire, name) is getattr(module, name)


@pytest.mark.parametrize("module_name", sorted(PARTLY_PUBLIC))
def test_reexported_names_are_the_module_objects(module_name):
    module = importlib.import_module(module_name)
    for name in PARTLY_PUBLIC[module_name]:
        assert name in execwire.__all__
        assert getattr(execwire, name) is getattr(module, name)


def test_the_contract_names_are_exported():
    assert CONTRACT - set(execwire.__all__) == set()


def test_exported_objects_come_from_execwire():
    for name in execwire.__all__:
        value = getattr(execwire, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("execwire"), (name, value.__module__)
    assert isinstance(execwire.default_group, execwire.Group)
    assert isinstance(execwire.__version__, str) and execwire.__version__


def test_error_hierarchy_by_cause():
    assert issubclass(execwire.TimeoutError, builtins.TimeoutError)
    assert issubclass(execwire.TimeoutError, execwire.Error)
    assert issubclass(execwire.GatewayLostError, ConnectionError)
    assert issubclass(execwire.HostNotFound, execwire.GatewayStartError)
    assert issubclass(execwire.DumpError, execwire.DataFormatError)
    assert issubclass(execwire.LoadError, execwire.DataFormatError)
    for name in ("RemoteError", "ChannelClosedError", "GatewayLostError", "GatewayStartError", "ProtocolError"):
        assert issubclass(getattr(execwire, name), execwire.Error), name
    assert execwire.Channel.RemoteError is execwire.RemoteError
    assert execwire.Channel.TimeoutError is execwire.TimeoutError


def test_importing_execwire_starts_no_thread_and_no_process():
    code = ("import threading, execwire; "
            "print(threading.active_count(), len(execwire.default_group))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0"]


# -- the serializer's public functions ------------------------------------------------------------------------
def test_dumps_loads_round_trip_and_dump_load_on_files(tmp_path):
    value = {"k": [1, 2.5, None, (b"x", bytearray(b"y"))], 2**80: frozenset({"a"}), "s": {1j}}
    assert execwire.loads(execwire.dumps(value)) == value
    path = tmp_path / "records"
    with path.open("wb") as out:
        execwire.dump(out, value)
        execwire.dump(out, "second")
    with path.open("rb") as source:
        assert execwire.load(source) == value
        assert execwire.load(source) == "second"
        with pytest.raises(EOFError):
            execwire.load(source)


def test_dumps_error_names_the_type_and_path():
    with pytest.raises(execwire.DumpError) as info:
        execwire.dumps([1, 2, {"key": object()}])
    assert "'object'" in str(info.value)
    assert "[2]['key']" in str(info.value)
    with pytest.raises(execwire.DumpError, match="function"):
        execwire.dumps({"f": test_dumps_error_names_the_type_and_path})


@pytest.mark.parametrize("data", [b"", b"\xe7W", b"garbage!", execwire.dumps([1, 2, 3])[:-1],
                                  execwire.dumps("x") + b"tail", b"\xe7W\x01\x00\x00\x00\x01\xff"])
def test_loads_of_malformed_bytes_raises_load_error(data):
    with pytest.raises(execwire.LoadError):
        execwire.loads(data)


# -- far-side modules --------------------------------------------------------------------------------------------
def _imports(tree: ast.AST) -> list[tuple[int, str | None, int]]:
    """(relative level, module, line) of every import anywhere in the tree."""
    found: list[tuple[int, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module, node.lineno))
    return found


def test_far_modules_exist():
    assert {path.stem for path in FAR_FILES} >= {"__init__", "errors", "frames", "wire", "protocol", "streams",
                                                "interrupts", "channel", "gateway", "boot"}


@pytest.mark.parametrize("path", FAR_FILES, ids=lambda path: path.name)
def test_far_module_imports_only_stdlib_and_its_own_package(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = {file.stem for file in FAR_FILES}
    for level, module, line in _imports(tree):
        where = f"{path.name}:{line}"
        if level == 0:
            top = (module or "").split(".")[0]
            assert top in sys.stdlib_module_names, f"{where} imports {module!r}, which is not in the stdlib"
        else:
            assert level == 1, f"{where} imports from outside its own package (level {level})"
            assert module is None or module.split(".")[0] in own, f"{where} imports .{module}, not a far module"


@pytest.mark.parametrize("path", FAR_FILES, ids=lambda path: path.name)
def test_far_module_opens_with_a_docstring(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring and docstring.strip(), f"{path.name} has no module docstring"


PY36 = sorted(glob.glob("/root/.pyenv/versions/3.6*/bin/python"))


@pytest.mark.parametrize("python", PY36 or ["<none>"])
def test_far_modules_compile_on_python_36(python):
    if python == "<none>":
        pytest.skip("NO Python 3.6 found at /root/.pyenv/versions/3.6*/bin/python: "
                    "the far side's Python 3.6 syntax is NOT checked")
    code = ("import sys\n"
            "for name in sys.argv[1:]:\n"
            "    with open(name, 'rb') as f: compile(f.read(), name, 'exec', dont_inherit=True)\n")
    result = subprocess.run([python, "-c", code, *map(str, FAR_FILES)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_near_side_imports_far_modules_without_copies():
    from execwire import bootstrap

    sources = bootstrap.far_sources()
    for name, text in sources.items():
        assert text == (PACKAGE / "_far" / f"{name}.py").read_text(encoding="utf-8")
    shipped = {path.stem for path in FAR_FILES} - {"__init__"}
    assert shipped == set(bootstrap.FAR_MODULES), "a far module is not shipped, or a shipped one does not exist"
