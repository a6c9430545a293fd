"""Far pdb sessions of async gateways on the controller's terminal (see ``_far/debugger.py``).

The session is the threaded side's own (execwire/debugger.py: the terminal lock, the
header, the console with its prompt, Tab and typed-ahead lines, the end of a session),
run in a daemon thread of its own: it blocks in input(), and a prompt nobody answers
must hold up neither the loop nor the interpreter's exit. It talks to the far pdb
through a ThreadChannel, which runs each send and receive in the loop and waits for
it. Ctrl-C while the far code runs under the session is the program's own (the
loop's): it is not passed on to the far code as the threaded API's console does.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import debugger
from .._far.errors import GatewayLostError
from .backend import Backend
from .channel import Channel

if TYPE_CHECKING:
    from .._far.channel import Channel as ThreadedChannel
    from ..gateway import Gateway
    from .gateway import AsyncGateway

T = TypeVar("T")


class ThreadChannel:
    """An async channel used from a thread that is not the loop's: each call runs in the loop, the thread waits."""

    def __init__(self, backend: Backend, channel: Channel) -> None:
        self._backend = backend
        self._channel = channel

    def _in_loop(self, function: Callable[[], Awaitable[T]]) -> T:
        done = threading.Event()
        outcome: list[tuple[bool, Any]] = []

        async def run() -> None:
            try:
                outcome.append((True, await function()))
            except Exception as exc:  # handed to the waiting thread
                outcome.append((False, exc))
            except BaseException:  # cancelled: the loop ends, and the session with it
                outcome.append((False, GatewayLostError("the event loop of this gateway ended")))
                raise
            finally:
                done.set()

        backend = self._backend
        try:
            backend.call_soon_threadsafe(lambda: backend.spawn(run, "execwire-pdb-io"))
        except RuntimeError:
            raise GatewayLostError("the event loop of this gateway has ended") from None
        done.wait()
        succeeded, value = outcome[0]
        if not succeeded:
            raise value
        return cast(T, value)

    def send(self, item: Any) -> None:
        self._in_loop(lambda: self._channel.send(item))

    def receive(self, timeout: float | None = None) -> Any:
        return self._in_loop(lambda: self._channel.receive(timeout))

    def close(self) -> None:
        self._in_loop(self._channel.close)


class _SessionGateway:
    """What the threaded session needs of its gateway: the id for the header, and the wait for far output
    that came before the prompt, which the async face needs not (its output is written as it is read)."""

    def __init__(self, gateway_id: str) -> None:
        self.id = gateway_id

    def _wait_callbacks(self, timeout: float) -> bool:
        return True


def start_session(gateway: AsyncGateway, channel: Channel, facts: dict[str, Any]) -> None:
    """Serve the far pdb session on ``channel`` in a daemon thread (called in the loop: returns at once)."""
    facts = {key: value for key, value in facts.items() if key != "interrupts"}  # see the module's docstring
    session = cast("ThreadedChannel", ThreadChannel(gateway._backend, channel))
    threading.Thread(target=debugger._serve, args=(cast("Gateway", _SessionGateway(gateway.id)), session, facts),
                     name=f"execwire-pdb-{gateway.id}", daemon=True).start()
