"""remote_exec of functions and modules, and the purity check that refuses what cannot run far away."""

from __future__ import annotations

import importlib.util
import inspect
import os
import textwrap
from pathlib import Path

import pytest

import execwire

pytestmark = pytest.mark.timeout(60)

SOME_GLOBAL = 10


def add(channel, x, y=1):
    channel.send(x + y)


def echo_twice(channel):
    for item in channel:
        channel.send([item, item])


def uses_imports_and_builtins(channel, path):
    import os
    import os.path

    channel.send((os.path.basename(path), len(path), sorted({3, 1, 2})))


def with_nested_helper(channel, values):
    def square(v):
        return v * v

    total = 0
    for value in values:
        total += square(value)
    channel.send([square(v) for v in values] + [total])


def raises_on_a_known_line(channel):
    x = 1
    raise RuntimeError("raised at a known line %d" % x)  # RAISE-LINE


def decorated_noop(func):
    return func


@decorated_noop
def decorated(channel):
    channel.send("decorated ran")


def reads_a_global(channel):
    channel.send(SOME_GLOBAL)


def reads_a_module_global(channel):
    channel.send(os.getpid())


def no_parameters():
    pass


def test_function_with_keyword_arguments(gw):
    channel = gw.remote_exec(add, x=41)
    assert channel.receive(timeout=10) == 42
    channel = gw.remote_exec(add, x="a", y="b")
    assert channel.receive(timeout=10) == "ab"


def test_function_talks_both_ways(gw):
    channel = gw.remote_exec(echo_twice)
    channel.send("x")
    assert channel.receive(timeout=10) == ["x", "x"]
    channel.close()


def test_function_may_import_inside_and_use_builtins(gw):
    channel = gw.remote_exec(uses_imports_and_builtins, path="/a/b/name.txt")
    assert channel.receive(timeout=10) == ("name.txt", len("/a/b/name.txt"), [1, 2, 3])


def test_function_with_a_nested_helper(gw):
    channel = gw.remote_exec(with_nested_helper, values=[1, 2, 3])
    assert channel.receive(timeout=10) == [1, 4, 9, 14]


def test_decorated_function_runs_without_its_decorator(gw):
    channel = gw.remote_exec(decorated)
    assert channel.receive(timeout=10) == "decorated ran"


def test_far_traceback_of_a_function_shows_its_file_and_line(gw):
    lines, first = inspect.getsourcelines(raises_on_a_known_line)
    raise_line = first + next(i for i, line in enumerate(lines) if "RAISE-LINE" in line)
    channel = gw.remote_exec(raises_on_a_known_line)
    with pytest.raises(execwire.RemoteError) as info:
        channel.receive(timeout=10)
    text = info.value.formatted
    assert f'File "{__file__}", line {raise_line}, in raises_on_a_known_line' in text, text
    assert "RuntimeError: raised at a known line 1" in text


def test_function_using_a_global_is_refused_naming_it(gw):
    with pytest.raises(ValueError, match="SOME_GLOBAL"):
        gw.remote_exec(reads_a_global)


def test_function_using_a_module_imported_globally_is_refused_naming_it(gw):
    with pytest.raises(ValueError, match=r"\bos\b"):
        gw.remote_exec(reads_a_module_global)


def test_closure_is_refused_naming_the_captured_name(gw):
    captured_value = 5

    def closure(channel):
        channel.send(captured_value)

    with pytest.raises(ValueError, match="captured_value"):
        gw.remote_exec(closure)


def test_lambda_and_parameterless_function_are_refused(gw):
    with pytest.raises(ValueError, match="lambda"):
        gw.remote_exec(lambda channel: None)
    with pytest.raises(ValueError, match="no_parameters"):
        gw.remote_exec(no_parameters)


def test_non_function_callables_and_stray_kwargs_are_refused(gw):
    with pytest.raises(TypeError):
        gw.remote_exec(len)
    with pytest.raises(TypeError):
        gw.remote_exec(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keyword"):
        gw.remote_exec("pass", x=1)


def test_unserializable_keyword_argument_names_it(gw):
    with pytest.raises(execwire.DumpError, match="x"):
        gw.remote_exec(add, x=object())
    # the gateway is still fine afterwards
    assert gw.remote_exec(add, x=1, y=2).receive(timeout=10) == 3


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_module_source_is_shipped_and_sees_channelexec(gw, tmp_path):
    path = tmp_path / "shipped_mod.py"
    path.write_text(textwrap.dedent("""
        import sys

        def double(x):
            return 2 * x

        if __name__ == "__channelexec__":
            for item in channel:
                channel.send(double(item))
    """))
    module = _load_module(path, "shipped_mod")
    channel = gw.remote_exec(module)
    channel.send(21)
    assert channel.receive(timeout=10) == 42
    channel.close()


def test_module_error_traceback_names_the_module_file(gw, tmp_path):
    path = tmp_path / "failing_mod.py"
    path.write_text("x = 1\n\nif __name__ == '__channelexec__':\n    raise OSError('from the module')\n")
    module = _load_module(path, "failing_mod")
    channel = gw.remote_exec(module)
    with pytest.raises(execwire.RemoteError) as info:
        channel.waitclose(10)
    assert f'File "{path}", line 4' in info.value.formatted
    assert "OSError: from the module" in info.value.formatted


def test_group_remote_exec_of_a_function_runs_on_every_gateway(group):
    group.makegateway()
    group.makegateway()
    multi = group.remote_exec(add, x=1, y=1)
    assert multi.receive_each() == [2, 2]
