"""Calls by reference: run an importable function on a gateway and get its result back.

The function travels as its module's name and its qualified name; the far side imports the module
(from its own installation, or from the controller by import forwarding) and calls it. A function of
``__main__`` comes with the controller's script, imported there as ``__execwire_main__`` (its
``if __name__ == "__main__":`` block does not run); when the script cannot be read (``python -c``,
an interactive session, exec'd code), the function's own source is shipped, which must then use no
global names but modules and builtins. Arguments and results are data that execwire's serializer
carries (no pickle).
"""

from __future__ import annotations

import builtins
import concurrent.futures
import functools
import inspect
import os
import sys
import textwrap
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import imports, upstream
from ._far import wire
from ._far.channel import Channel
from ._far.errors import Error, RemoteError

if TYPE_CHECKING:
    from .gateway import Gateway

# what each call ships: tiny, the same every time (the far side keeps its compiled code)
RUNNER = "import sys; sys.modules['_execwire_service'].run_call(channel)"


class CallError(Error, ValueError):
    """The function cannot be called by reference; the message says why and what to do."""


def _describe(func: Any) -> str:
    func = _unwrap(func)[0]
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _unwrap(func: Any) -> tuple[Any, list[Any], dict[str, Any]]:
    """A functools.partial as (the function, the arguments it adds in front, its keyword arguments)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    while isinstance(func, functools.partial):
        args = list(func.args) + args
        kwargs = {**func.keywords, **kwargs}
        func = func.func
    return func, args, kwargs


def request_for(func: Callable[..., Any], args: Any, kwargs: dict[str, Any], batch: bool) -> dict[str, Any]:
    """The request a far call runs: the function by reference and its arguments (``batch``: ``args``
    is a list of (args, kwargs), one call each)."""
    target, front, keywords = _unwrap(func)
    request = reference(target)
    if batch:
        items = [front + list(each) for each, _ in args] if front else [list(each) for each, _ in args]
        request.update(batch=True, items=items)
        if keywords or any(each_kwargs for _, each_kwargs in args):  # map() has none: not sent
            request["keywords"] = [{**keywords, **each_kwargs} for _, each_kwargs in args]
    else:
        request.update(batch=False, args=front + list(args), kwargs={**keywords, **kwargs})
    return request


def reference(func: Callable[..., Any]) -> dict[str, Any]:
    """The part of a call request that names the function; raises CallError for what cannot be named."""
    target = _unwrap(func)[0]
    if isinstance(func, (classmethod, staticmethod)):
        target = func.__func__
    if isinstance(target, types.MethodType):
        owner = target.__self__
        if not isinstance(owner, type):
            raise CallError(f"cannot call {_describe(func)} by reference: it is a method bound to an instance "
                            f"of {type(owner).__name__}; call a module-level function, a staticmethod or a "
                            "classmethod, and pass the data it needs as arguments")
        target = target.__func__
    name = getattr(target, "__name__", None)
    qualname = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    if name == "<lambda>":
        raise CallError("cannot call a lambda by reference: the far side finds functions by module and "
                        "name; define it with def at module level")
    if not isinstance(qualname, str) or not isinstance(module, str):
        raise CallError(f"cannot call {func!r} by reference: it has no module and qualified name; "
                        "call a module-level function")
    if "<locals>" in qualname:
        closure = getattr(target, "__code__", None)
        free = f" (it uses {', '.join(closure.co_freevars)} of its enclosing function)" if closure and \
            closure.co_freevars else ""
        raise CallError(f"cannot call {qualname} by reference: it is defined inside another function{free}, "
                        "so the far side cannot import it; define it at module level and pass values as "
                        "arguments")
    if module == "__main__":
        return _main_reference(target, qualname)
    return {"module": module, "qualname": qualname}


def _main_reference(func: Any, qualname: str) -> dict[str, Any]:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None) and not spec.name.endswith(".__main__"):
        return {"module": spec.name, "qualname": qualname}  # run with python -m: importable by its name
    filename = getattr(main, "__file__", None)
    code = getattr(func, "__code__", None)
    if filename is not None and os.path.isfile(filename) and code is not None and \
            os.path.abspath(code.co_filename) == os.path.abspath(filename):
        return {"module": imports.MAIN_MODULE, "qualname": qualname}
    return {"snippet": _snippet(func, qualname)}


def _snippet(func: Any, qualname: str) -> tuple[str, str, str]:
    """(source, name, filename) of a __main__ function that ships by itself."""
    if "." in qualname or not isinstance(func, types.FunctionType):
        raise CallError(f"cannot call {qualname} by reference: it belongs to __main__, whose script cannot be "
                        "shipped; move it to a module")
    try:
        lines, first_line = inspect.getsourcelines(func)
    except (OSError, TypeError) as exc:
        raise CallError(f"cannot call {qualname}: it belongs to __main__ and its source is not available "
                        f"({exc}); move it to a module") from None
    from .source import _global_names

    imported: list[str] = []
    others: list[str] = []
    for global_name in sorted(_global_names(func.__code__) - set(dir(builtins))):
        value = func.__globals__.get(global_name)
        if isinstance(value, types.ModuleType):
            alias = f" as {global_name}" if value.__name__ != global_name else ""
            imported.append(f"import {value.__name__}{alias}")
        else:
            others.append(global_name)
    if others:
        raise CallError(f"cannot call {qualname}: it belongs to __main__, whose script cannot be shipped, and it "
                        f"uses the global name{'s' if len(others) > 1 else ''} {', '.join(others)}; move it to a "
                        "module, or import what it needs inside it and pass values as arguments")
    source = textwrap.dedent("".join(lines))
    preamble = "; ".join(imported)
    # the function's lines keep their numbers: the imports go on the lines above it
    padding = max(first_line - 1, 1)
    source = preamble + "\n" * padding + source if preamble else "\n" * (first_line - 1) + source
    return source, func.__name__, func.__code__.co_filename


def call_async(gateway: Gateway, func: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
    """Start ``func(*args, **kwargs)`` on ``gateway``; the future gets its result or error."""
    request = request_for(func, args, kwargs, batch=False)
    return _start(gateway, request, _describe(func))


def check_sendable(request: dict[str, Any], what: str, channel_type: type) -> None:
    """DumpError naming the place if the call's arguments cannot travel (before anything is sent)."""
    try:
        wire.encode(request, channel_type)
    except wire.DumpError as exc:
        raise wire.DumpError(f"the arguments of the call of {what} cannot be sent: {exc}") from None


def outcome(answer: Any, what: str, gateway_id: str, channel_id: int) -> Any:
    """The result a far call loop's answer carries; its far exception as RemoteError."""
    kind, value = answer
    if kind == "ok":
        return value
    if kind == "raised":
        raise RemoteError(value, gateway_id, channel_id)
    raise wire.DumpError(f"the result of {what} on gateway {gateway_id!r} cannot be sent back: {value}")


def _start(gateway: Gateway, request: dict[str, Any], what: str) -> concurrent.futures.Future[Any]:
    check_sendable(request, what, Channel)
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()

    def send(error: Exception | None) -> None:
        if error is not None:
            future.set_exception(error)
            return
        try:
            channel = gateway.remote_exec(RUNNER)
            channel.send(request)
        except Error as exc:
            future.set_exception(exc)
            return
        answer: list[Any] = []
        channel.setcallback(lambda item: _settle(future, item, channel, answer, what), endmarker=_END)

    imports.service(gateway).when_ready(send)
    return future


_END = object()


def _settle(future: concurrent.futures.Future[Any], item: Any, channel: Channel, answer: list[Any],
            what: str) -> None:
    """Runs on the gateway's callback thread: keep the answer; settle once the far job has ended.

    Not earlier: with the main_thread_only exec model the next remote_exec is refused
    while this one is still finishing.
    """
    if future.done():
        return
    gateway = channel.gateway
    if item is not _END:
        answer.append(item)
        return
    if not answer:  # ended before an answer: the far code raised, or the gateway was lost
        error: Exception | None = getattr(channel, "_error", None)  # set before the end is scheduled
        future.set_exception(error if error is not None else Error(
            f"the call of {what} on gateway {gateway.id!r} ended without a result"))
        return
    kind, value = answer[0]
    if kind == "ok":
        future.set_result(value)
    else:
        future.set_exception(wire.DumpError(f"the result of {what} on gateway {gateway.id!r} cannot be sent "
                                            f"back: {value}"))


STREAM_RUNNER = "import sys; sys.modules['_execwire_service'].serve_calls(channel)"


class CallStream:
    """A far loop that runs calls one after another, in the order sent (an Executor's slot).

    A call may be sent before the ones ahead of it have finished, so the far side
    finds its next call waiting instead of a round trip; answers come in order.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        imports.service(gateway).wait_ready(gateway.startup_timeout)
        self.channel = gateway.remote_exec(STREAM_RUNNER)

    def send(self, func: Callable[..., Any], args: Any, kwargs: dict[str, Any], batch: bool) -> None:
        """Send a call (``batch``: ``args`` is a list of (args, kwargs)); DumpError if they cannot travel."""
        request = request_for(func, args, kwargs, batch)
        upstream.send_root_level(self.gateway)  # the far root level before the call runs (upstream.py)
        try:
            self.channel.send(request)
        except wire.DumpError as exc:
            raise wire.DumpError(f"the arguments of the call of {_describe(func)} cannot be sent: {exc}") from None

    def receive(self, func: Callable[..., Any]) -> Any:
        """The result of the oldest call sent; its far exception as RemoteError."""
        return outcome(self.channel.receive(), _describe(func), self.gateway.id, self.channel.id)

    def close(self) -> None:
        try:
            self.channel.close()
        except Error:
            pass


MAX_IDLE_STREAMS = 4  # call streams a gateway keeps for the next call(); more are closed after use


class _Streams:
    """The idle call streams of one gateway: call() takes one, or opens one if none is idle."""

    def __init__(self) -> None:
        self.idle: list[CallStream] = []
        self.lock = threading.Lock()


_streams_lock = threading.Lock()


def _streams(gateway: Gateway) -> _Streams:
    streams: _Streams | None = getattr(gateway, "_call_streams", None)
    if streams is None:
        with _streams_lock:
            streams = getattr(gateway, "_call_streams", None)
            if streams is None:
                streams = _Streams()
                gateway._call_streams = streams  # type: ignore[attr-defined]
    return streams


def call(gateway: Gateway, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run the call in this thread on an idle call stream of the gateway: one round trip."""
    if threading.current_thread() is gateway._callback_thread and not imports.service(gateway).ready:
        raise RuntimeError(f"gateway {gateway.id!r}: the first call() of a gateway cannot come from one of its "
                           "callbacks: it would wait for that very thread (which tells that calls can start); "
                           "use call_async() there, or make a call before")
    if gateway.spec.execmodel == "main_thread_only":  # an idle stream would hold the only thread
        return call_async(gateway, func, args, kwargs).result()
    pool = _streams(gateway)
    with pool.lock:
        stream = pool.idle.pop() if pool.idle else None
    if stream is None:
        stream = CallStream(gateway)
    try:
        stream.send(func, args, kwargs, batch=False)
    except wire.DumpError:
        _give_back(pool, stream)  # nothing was sent
        raise
    except BaseException:
        stream.close()
        raise
    try:
        result = stream.receive(func)
    except (RemoteError, wire.DumpError):
        _give_back(pool, stream)  # the far loop answered and waits for the next call
        raise
    except BaseException:  # lost, or interrupted here: what comes on it now is not for the next call
        stream.close()
        raise
    _give_back(pool, stream)
    return result


def _give_back(pool: _Streams, stream: CallStream) -> None:
    with pool.lock:
        if len(pool.idle) < MAX_IDLE_STREAMS:
            pool.idle.append(stream)
            return
    stream.close()


__all__ = ["CallError", "CallStream", "call", "call_async", "check_sendable", "outcome", "reference", "request_for"]
