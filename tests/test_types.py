"""A user who runs ``mypy --strict`` on code using execwire sees real types, and the far side's stubs match its code.

The far-side modules are Python 3.6 code without annotations; their types live in stubs next to them
(``_far/*.pyi``). A stub that drifts from the code lies to users, so the names and signatures are
compared with the running modules here: by hand for what stubtest cannot see (attributes set in
``__init__``), and by mypy's stubtest for the rest.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import re
import textwrap
from pathlib import Path

import pytest
from mypy import api, stubtest

import execwire

pytestmark = pytest.mark.timeout(120)

FAR = Path(execwire.__file__).parent / "_far"
STUBBED = ("channel", "errors", "gateway", "wire")
# names that exist only for type checkers (import them under `if TYPE_CHECKING:`)
STUB_ONLY = {"execwire._far.channel.Item", "execwire._far.wire.Data", "execwire._far.wire.Part"}
# dunder methods a stub must declare when the code defines them (__repr__ and __str__ are object's)
PROTOCOL_DUNDERS = {"__init__", "__iter__", "__next__", "__call__", "__enter__", "__exit__", "__len__",
                    "__getitem__", "__contains__"}

# A user's program, written the way the README uses execwire. `# reveals: T` says what reveal_type
# must show; `# error: CODE` (or `# error`) that mypy must report that line; every other line must pass.
# A real type is shown either by reveal_type or by a pair of assignments: one to the right type that
# passes and one to a wrong type that is reported (an Any would pass both).
USER_PROGRAM = textwrap.dedent('''\
    from __future__ import annotations

    import collections
    import datetime
    import io
    from typing import TYPE_CHECKING, Any

    import execwire

    if TYPE_CHECKING:
        from execwire._far.channel import Item
        from execwire._far.wire import Data

    gw = execwire.PopenGateway()
    ch = gw.remote_exec("channel.send(channel.receive())")
    reveal_type(ch)                                     # reveals: execwire._far.channel.Channel
    x = ch.receive()
    reveal_type(x)                                      # reveals: Any
    answer: int = ch.receive()
    reveal_type(ch.receive(timeout=1.5))                # reveals: Any
    ch.send(1)
    ch.send("text")
    ch.send([1, "a", None, (2.5, b"x", 2j)])
    ch.send({"a": [1, 2], "b": {"c": {1, 2}, "d": frozenset("x")}})
    numbers: list[int] = [1, 2]
    table: dict[str, list[str]] = {}
    Point = collections.namedtuple("Point", "x y")
    unknown: Any = object()
    ch.send(numbers)
    ch.send(table)
    ch.send(Point(1, 2))
    ch.send(unknown)
    ch.send(gw.newchannel())
    ch.send({"reply_to": [gw.newchannel()]})
    reveal_type(ch.waitclose(timeout=5))                # reveals: None
    reveal_type(ch.close())                             # reveals: None
    ch.close(error="it failed")
    ch.close(error=ValueError("it failed"))
    closed: bool = ch.isclosed()
    not_closed: str = ch.isclosed()                     # error: assignment
    for item in ch:
        reveal_type(item)                               # reveals: Any
    reveal_type(iter(ch))                               # reveals: execwire._far.channel.Channel
    reveal_type(next(ch))                               # reveals: Any
    reveal_type(ch.makefile("w"))                       # reveals: execwire._far.channel.ChannelFileWrite
    reveal_type(ch.makefile("r"))                       # reveals: execwire._far.channel.ChannelFileRead
    ch.makefile("w").write("a line\\n")
    ch.setcallback(print)
    ch.setcallback(lambda item: None, endmarker=None)
    reveal_type(ch.gateway)                             # reveals: execwire._far.gateway.BaseGateway
    reveal_type(ch.gateway.newchannel())                # reveals: execwire._far.channel.Channel
    gateway_name: str = ch.gateway.id


    def forward(channel: execwire.Channel, items: list[Item], record: Data) -> None:
        for item in items:
            channel.send(item)
        channel.send(record)
        execwire.dumps(record)


    channel_id: int = ch.id
    reveal_type(execwire.loads(execwire.dumps([1])))    # reveals: Any
    record: bytes = execwire.dumps({"a": (1, 2.5)})
    not_record: str = execwire.dumps([1])               # error: assignment
    buffer = io.BytesIO()
    execwire.dump(buffer, [1, "two"])
    reveal_type(execwire.load(buffer))                  # reveals: Any
    try:
        ch.receive()
    except execwire.RemoteError as exc:
        formatted: str = exc.formatted
        not_formatted: int = exc.formatted              # error: assignment
        type_name: str = exc.type_name
        not_type_name: bytes = exc.type_name            # error: assignment
        gateway_id: str | None = exc.gateway_id
        not_gateway_id: str = exc.gateway_id            # error: assignment
        remote_channel: int | None = exc.channel_id
    except execwire.TimeoutError:
        pass
    try:
        execwire.loads(b"")
    except execwire.DataFormatError as error:
        reveal_type(error)                              # reveals: execwire._far.wire.DataFormatError
    load_error: execwire.DataFormatError = execwire.LoadError("bad")
    dump_error: execwire.DataFormatError = execwire.DumpError("bad")
    ch.send(1, 2)                                       # error: call-arg
    ch.receive(timeout="x")                             # error: arg-type
    ch.waitclose(timeout="5")                           # error: arg-type
    ch.send(object())                                   # error: arg-type
    ch.send(datetime.datetime.now())                    # error: arg-type
    ch.send({"key": [1, 2, object()]})                  # error
    execwire.dumps(gw.newchannel())                     # error: arg-type
    ch.makefile("x")                                    # error: call-overload
    ch.setcallback(42)                                  # error: arg-type
    ch.close(error=42)                                  # error: arg-type
    execwire.dump([1], buffer)                          # error: arg-type
''')
EXPECTATION = re.compile(r"#\s*(reveals|error)(?::\s*(.*?))?\s*$")
USER_FILE = "user_program.py"


def _expectations() -> list[tuple[int, str, str | None, str]]:
    """(line number, "reveals" or "error", the type or error code, the line's code) of each marked line."""
    found = []
    for number, line in enumerate(USER_PROGRAM.splitlines(), 1):
        match = EXPECTATION.search(line)
        if match:
            found.append((number, match.group(1), match.group(2), line[:match.start()].strip()))
    return found


EXPECTATIONS = _expectations()


def _mypy_config(folder: Path, *settings: str) -> Path:
    """A mypy configuration that finds the execwire under test, with its cache in ``folder``.

    A checkout is put on mypy's path (ahead of any other install); an installed package is found
    the way users find it, through its py.typed.
    """
    lines = ["[mypy]", f"cache_dir = {folder / 'cache'}", *settings]
    source_root = FAR.parent.parent
    if "site-packages" not in source_root.parts:
        lines.append(f"mypy_path = {source_root}")
    config = folder / "mypy.ini"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[tuple[str, str]]]:
    """Run mypy --strict once on the user program: its (kind, message) findings by line."""
    folder = tmp_path_factory.mktemp("mypy-user")
    (folder / USER_FILE).write_text(USER_PROGRAM, encoding="utf-8")
    # report only the user's file, as mypy does for an installed package
    config = _mypy_config(folder, "follow_imports = silent")
    stdout, stderr, status = api.run(["--strict", "--config-file", str(config), "--no-error-summary",
                                      "--show-error-codes", str(folder / USER_FILE)])
    assert status in (0, 1) and not stderr, stdout + stderr  # 1: the misuses were found, as they must be
    findings: dict[int, list[tuple[str, str]]] = {}
    for line in stdout.splitlines():
        match = re.match(rf".*{re.escape(USER_FILE)}:(\d+): (error|note): (.*)", line)
        assert match, f"unexpected mypy output: {line}"
        findings.setdefault(int(match.group(1)), []).append((match.group(2), match.group(3)))
    return findings


def _revealed(findings: list[tuple[str, str]]) -> list[str]:
    shown = []
    for kind, message in findings:
        match = re.match(r'Revealed type is "(.*)"', message)
        if kind == "note" and match:
            shown.append(match.group(1).replace("builtins.", ""))
    return shown


@pytest.mark.parametrize(("number", "kind", "expected", "code"), EXPECTATIONS,
                         ids=[f"{number}:{code}" for number, _, _, code in EXPECTATIONS])
def test_mypy_sees_this_line_of_a_user_program_as_expected(mypy_report, number, kind, expected, code):
    findings = mypy_report.get(number, [])
    errors = [message for found_kind, message in findings if found_kind == "error"]
    if kind == "reveals":
        assert not errors, f"line {number} `{code}`: {errors}"
        assert _revealed(findings) == [expected], f"line {number} `{code}`: {findings}"
    else:
        assert errors, f"line {number} `{code}` should be reported by mypy, but it passes"
        if expected:
            assert any(message.endswith(f"[{expected}]") for message in errors), f"line {number}: {errors}"


def test_mypy_passes_every_other_line_of_the_user_program(mypy_report):
    marked = {number for number, _, _, _ in EXPECTATIONS}
    lines = USER_PROGRAM.splitlines()
    unexpected = {f"{number}: {lines[number - 1].strip()}": findings
                  for number, findings in sorted(mypy_report.items()) if number not in marked}
    assert not unexpected, "mypy --strict reports lines that a user may write:\n" + "\n".join(
        f"  {line}\n    {findings}" for line, findings in unexpected.items())


# -- the stubs match the code ----------------------------------------------------------------------------------
def _stub(name: str) -> ast.Module:
    return ast.parse((FAR / f"{name}.pyi").read_text(encoding="utf-8"), filename=f"{name}.pyi")


def _declared(body: list[ast.stmt]) -> set[str]:
    """Names a stub body declares: classes, functions, annotated or assigned names."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def _stub_classes(name: str) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in _stub(name).body if isinstance(node, ast.ClassDef)}


def _wants_a_stub(attribute: str) -> bool:
    return not attribute.startswith("_") or attribute in PROTOCOL_DUNDERS


def test_the_stubs_are_exactly_those_of_stubbed_far_modules():
    assert sorted(path.stem for path in FAR.glob("*.pyi")) == sorted(STUBBED)
    for name in STUBBED:
        assert (FAR / f"{name}.py").is_file(), f"{name}.pyi has no {name}.py next to it"


@pytest.mark.parametrize("name", STUBBED)
def test_the_stub_parses(name):
    tree = _stub(name)
    assert ast.get_docstring(tree), f"{name}.pyi should say what it is"
    assert _declared(tree.body)


@pytest.mark.parametrize("name", STUBBED)
def test_every_public_class_and_function_of_the_module_has_a_stub(name):
    module = importlib.import_module(f"execwire._far.{name}")
    public = {attribute for attribute, value in vars(module).items()
              if not attribute.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
              and value.__module__ == module.__name__}
    missing = public - _declared(_stub(name).body)
    assert not missing, f"{name}.py defines {sorted(missing)}, which {name}.pyi does not declare"


@pytest.mark.parametrize("name", STUBBED)
def test_every_public_method_and_class_attribute_has_a_stub(name):
    module = importlib.import_module(f"execwire._far.{name}")
    for class_name, node in _stub_classes(name).items():
        runtime = getattr(module, class_name)
        public = {attribute for attribute in vars(runtime) if _wants_a_stub(attribute)}
        missing = public - _declared(node.body)
        assert not missing, f"{name}.{class_name} has {sorted(missing)}, which {name}.pyi does not declare"


def _assigned_on_self(cls: type) -> set[str]:
    """Attributes that the methods of ``cls`` and its bases set on ``self``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("execwire."):
            continue  # object, Exception: builtins, no source
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                names.add(node.attr)
    return names


@pytest.mark.parametrize("name", STUBBED)
def test_every_attribute_a_stub_declares_exists_in_the_code(name):
    """stubtest cannot see attributes set in __init__: a renamed one would go unnoticed without this."""
    module = importlib.import_module(f"execwire._far.{name}")
    for class_name, node in _stub_classes(name).items():
        runtime = getattr(module, class_name, None)
        assert inspect.isclass(runtime), f"{name}.pyi declares class {class_name}, which {name}.py lacks"
        real = set(dir(runtime)) | _assigned_on_self(runtime)
        unknown = _declared(node.body) - real
        assert not unknown, f"{name}.pyi declares {class_name}.{sorted(unknown)}, which {name}.py never sets"


def test_stubtest_finds_no_difference_between_stubs_and_code(tmp_path):
    """mypy's stubtest: every name, signature, default and base of the stubs against the imported modules."""
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("\n".join(sorted(STUB_ONLY)) + "\n", encoding="utf-8")
    config = _mypy_config(tmp_path)
    modules = [f"execwire._far.{name}" for name in STUBBED]
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = stubtest.test_stubs(stubtest.parse_options(
            [*modules, "--allowlist", str(allowlist), "--mypy-config-file", str(config)]))
    assert status == 0, output.getvalue()
