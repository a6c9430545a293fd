"""Far pdb sessions of async gateways on the controller's terminal (see ``_far/debugger.py``).

The threaded side's session (execwire/debugger.py), driven by a task: the same
messages, the same one-session-at-a-time terminal lock, the same header and refusal
without a terminal. What blocks (waiting for the terminal, input() at the prompt)
runs in a daemon thread, so the loop, the other gateways and the rest of this one go
on meanwhile, and a prompt nobody answers does not hold up the interpreter's exit.
Tab asks the far pdb for completions through the loop.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, cast

from .. import debugger
from .._far.errors import Error
from .channel import Channel

if TYPE_CHECKING:
    from ..gateway import Gateway
    from .gateway import AsyncGateway


async def serve_session(gateway: AsyncGateway, channel: Channel, facts: dict[str, Any]) -> None:
    """Serve one far pdb session on ``channel`` (a task of the gateway's)."""
    why = debugger.no_terminal_reason()
    try:
        if why is not None:
            await channel.send(("refused", why))
            await channel.close()
            return
        await take_terminal(gateway)
        try:
            await channel.send(("attached",))
            for hook in list(debugger.before_session):
                hook()
            debugger._header(cast("Gateway", gateway), facts)
            debugger._save_terminal()
            try:
                await Console(gateway, channel).run()
            finally:
                debugger._restore_terminal()
        finally:
            debugger.TERMINAL.release()
    except Error:
        pass  # the gateway is gone: its session with it


async def take_terminal(gateway: AsyncGateway) -> None:
    """Until this session has the terminal (debugger.TERMINAL); a task cancelled meanwhile never takes it."""
    guard = threading.Lock()
    state: list[bool | None] = [None]  # None: waiting; True: taken for the task; False: the task gave up

    def take() -> None:
        while True:
            if debugger.TERMINAL.acquire(timeout=0.1):
                with guard:
                    if state[0] is None:
                        state[0] = True
                        return
                debugger.TERMINAL.release()
                return
            with guard:
                if state[0] is False:
                    return

    try:
        await gateway._backend.run_in_daemon_thread(take)
    except BaseException:
        with guard:
            if state[0] is True:  # taken just as the task was cancelled: give it back
                debugger.TERMINAL.release()
            state[0] = False
        raise


class Console(debugger.Console):
    """The threaded Console's output and prompt handling; reading and Tab go through the loop."""

    def __init__(self, gateway: AsyncGateway, channel: Channel) -> None:
        # far output is written as it is dispatched, so what came before the prompt is shown already:
        # the threaded Console's wait for the callback thread is not needed
        super().__init__(cast("Gateway", _NoWait()), cast(Any, channel))
        self.async_gateway = gateway
        self.async_channel = channel
        self._answered = threading.Event()
        self._completions: Any = None

    async def run(self) -> None:  # type: ignore[override]
        while True:
            try:
                message = await self.async_channel.receive()
            except EOFError:
                break
            kind = message[0] if isinstance(message, tuple) and message else None
            if kind == "out":
                self.write(str(message[1]))
            elif kind == "read":
                line = await self.async_gateway._backend.run_in_daemon_thread(self.read_terminal_line)
                await self.async_channel.send(("line", line))
        self.write("")
        if self.partial:
            sys.stdout.write(self.partial + "\n")
            self.partial = ""
        sys.stdout.flush()

    def read_terminal_line(self) -> str:
        """debugger.Console.read_line, in the daemon thread."""
        return self.read_line()

    def complete(self, text: str, state: int) -> str | None:
        """readline's completer, in the reading thread: a task asks the far pdb (which answers while it
        waits for the line) and hands the answer over."""
        if state == 0:
            readline = self.readline
            self.matches = []
            self._answered.clear()
            question = ("complete", text, readline.get_line_buffer(), readline.get_begidx(), readline.get_endidx())
            backend = self.async_gateway._backend
            try:
                backend.call_soon_threadsafe(lambda: backend.spawn(lambda: self._ask(question), "execwire-pdb-tab"))
            except RuntimeError:
                return None
            if self._answered.wait(debugger.COMPLETE_WAIT):
                reply = self._completions
                if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[1], list):
                    self.matches = [str(match) for match in reply[1]]
        return self.matches[state] if state < len(self.matches) else None

    async def _ask(self, question: tuple[Any, ...]) -> None:
        try:
            await self.async_channel.send(question)
            self._completions = await self.async_channel.receive(debugger.COMPLETE_WAIT)
        except (Error, EOFError):
            pass
        finally:
            self._answered.set()


class _NoWait:
    """Stands for the threaded gateway's callback wait, which the async face does not need."""

    @staticmethod
    def _wait_callbacks(timeout: float) -> bool:
        return True

