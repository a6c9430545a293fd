"""Turn a pure function into source that runs on the far side with its line numbers."""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

_BUILTIN_NAMES = frozenset(dir(builtins))


def function_source(func: Callable[..., Any]) -> tuple[str, str, str]:
    """Return (source, function name, filename) for ``remote_exec(func, **kwargs)``.

    The function must be pure: no closure and no global names other than
    builtins (import modules inside it, pass values as keyword arguments).
    Raises ValueError naming what makes it impure.
    """
    if not isinstance(func, types.FunctionType):
        raise TypeError(f"remote_exec takes a plain function, not {type(func).__name__}")
    name = func.__name__
    code = func.__code__
    if func.__closure__:
        raise ValueError(
            f"cannot ship function {name!r}: it is a closure over {', '.join(code.co_freevars)}; "
            "define it at module level and pass values as keyword arguments")
    if name == "<lambda>":
        raise ValueError("cannot ship a lambda; define a named function whose first parameter is 'channel'")
    if code.co_flags & inspect.CO_ASYNC_GENERATOR:
        raise ValueError(f"cannot ship function {name!r}: it is an async generator (async def with yield); "
                         "ship an async def function without yield, which sends items with await channel.send()")
    if code.co_argcount < 1 and not code.co_flags & inspect.CO_VARARGS:
        raise ValueError(f"cannot ship function {name!r}: its first parameter must receive the channel")
    used = sorted(_global_names(code) - _BUILTIN_NAMES)
    if used:
        raise ValueError(
            f"cannot ship function {name!r}: it uses the global name{'s' if len(used) > 1 else ''} "
            f"{', '.join(used)}; import modules inside the function and pass values as keyword arguments")
    try:
        lines, first_line = inspect.getsourcelines(func)
    except (OSError, TypeError) as exc:
        raise ValueError(f"cannot ship function {name!r}: its source is not available ({exc})") from None
    source = textwrap.dedent("".join(lines))
    # drop decorators (lines before the def), then pad so far tracebacks show the file's line numbers
    skip = ast.parse(source).body[0].lineno - 1
    source = "\n" * (first_line - 1 + skip) + "".join(source.splitlines(True)[skip:])
    filename = code.co_filename
    return source, name, filename


def _global_names(code: types.CodeType) -> set[str]:
    """Global names the code and its nested code objects read but do not assign."""
    loaded: set[str] = set()
    stored: set[str] = set()
    for each in _code_tree(code):
        for instruction in dis.get_instructions(each):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                loaded.add(str(instruction.argval))
            elif instruction.opname in ("STORE_GLOBAL", "STORE_NAME"):
                stored.add(str(instruction.argval))
    return loaded - stored


def _code_tree(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_tree(const)
