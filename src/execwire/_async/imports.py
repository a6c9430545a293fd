"""Import forwarding for the async faces: the threaded side's answers, received and sent by a task.

What is served, and how each answer is made, is imports.ModuleServer's (the same policy,
the same send-ahead, the same records as for a threaded gateway). Only the driver
differs: the far end is shipped with an awaited remote_exec, and a background task
of the gateway receives the far side's requests on the service channel, has each one
answered in a worker thread (looking up files must not hold up the loop) and sends
the replies in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from .. import _imports_far
from .._far.channel import Channel as ThreadedChannel
from .._far.errors import Error, GatewayLostError, TimeoutError
from ..imports import ImportPolicy, ModuleServer, requested_policy, spec_policy
from .backend import Wakeups
from .channel import Channel

if TYPE_CHECKING:
    from .gateway import AsyncGateway


class Replies:
    """Stands in for the service channel while ModuleServer._answer runs: keeps what it sends, in order.

    Sent by value: the async faces' via= middles keep nothing for their relays to write.
    """

    def __init__(self) -> None:
        self.items: list[Any] = []

    def send(self, item: Any) -> None:
        self.items.append(item)


class AsyncImportService(ModuleServer):
    """Import forwarding and the call runner of one async gateway.

    Concurrency: only the loop's thread touches the start-up state; the answering
    state (ModuleServer's) is touched by one worker thread at a time, as the task
    waits for each answer before it receives the next request; hints come from the
    loop under ModuleServer's lock.
    """

    gateway: AsyncGateway

    def __init__(self, gateway: AsyncGateway, policy: ImportPolicy) -> None:
        super().__init__(gateway, policy)
        self._ready = False
        self._error: BaseException | None = None
        self._changes = Wakeups(gateway._backend)  # the far end is in place, or failed to be
        self._service_channel: Channel | None = None

    @property
    def ready(self) -> bool:
        """True once the far end is in place (or failed to be)."""
        return self._ready

    def start(self) -> None:
        """Ship the far end once, in a task of the gateway's (a cancelled caller cannot leave it half done)."""
        if not self._started:
            self._started = True
            self.gateway._backend.spawn(self._install, f"execwire-imports-{self.gateway.id}")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until the far finder is in place; its error if it could not be."""
        self.start()
        if not self._ready and not await self._wait(timeout):
            raise TimeoutError(f"gateway {self.gateway.id!r}: import forwarding was not in place within "
                               f"{timeout} seconds")
        if self._error is not None:
            raise self._error

    async def _wait(self, timeout: float | None) -> bool:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            await self._changes.wait(remaining)
        return True

    async def _install(self) -> None:
        gateway = self.gateway
        error: BaseException | None = None
        try:
            channel = await gateway.remote_exec(_imports_far)
            await channel.send(self.policy.forward)
            service = await channel.receive(gateway.startup_timeout)
            if not isinstance(service, Channel):
                raise GatewayLostError(f"gateway {gateway.id!r}: the far side of import forwarding sent "
                                       f"{type(service).__name__}, not its service channel")
            self._service_channel = service
            gateway._backend.spawn(lambda: self._serve(service), f"execwire-imports-serve-{gateway.id}")
            # in place once its remote_exec has ended (main_thread_only: the next one waits for that)
            await channel.waitclose(gateway.startup_timeout)
        except (Error, EOFError) as exc:
            error = exc if not isinstance(exc, EOFError) else GatewayLostError(
                f"gateway {gateway.id!r}: the far side of import forwarding did not start")
        except BaseException:  # cancelled (the loop ends): a waiter gets an error of its own, not the cancellation
            error = GatewayLostError(f"gateway {gateway.id!r}: import forwarding was being set up when its task "
                                     "was cancelled")
            raise
        finally:
            self._error = error
            self._ready = True
            self._changes.wake_all()

    async def _serve(self, channel: Channel) -> None:
        """Answer the far side's requests until its service channel ends (with the gateway)."""
        backend = self.gateway._backend
        while True:
            try:
                request = await channel.receive()
            except (EOFError, Error):
                return
            try:
                replies = await backend.run_in_thread(self.replies_to, request)
            except Exception as exc:  # a bug here: the far import fails at once, saying so, instead of waiting
                number = request[-1] if isinstance(request, tuple) and request else None
                replies = [(number, ("error", f"{type(exc).__name__}: {exc}"))]
            try:
                for item in replies:
                    await channel.send(item)
            except Error:
                return  # the gateway is gone: nobody asks any more

    def replies_to(self, request: Any) -> list[Any]:
        """What to send back for ``request``, in order (ModuleServer._answer sends only by channel.send)."""
        replies = Replies()
        self._answer(cast(ThreadedChannel, replies), request)
        return replies.items


def service(gateway: AsyncGateway) -> AsyncImportService:
    """The gateway's import service, made with the policy of its spec on first use."""
    existing = gateway._import_service
    if existing is None:
        existing = gateway._import_service = AsyncImportService(gateway, spec_policy(gateway))
    return existing


async def forward_imports(gateway: AsyncGateway, allow: str | Iterable[str] | None = None,
                          deny: str | Iterable[str] | None = None, timeout: float | None = None) -> None:
    """Turn import forwarding on for ``gateway`` now with this policy; return once it is in place.

    ``allow`` or ``deny`` left None is what the spec says (imports_allow=, imports_deny=), as for threads.
    """
    policy = requested_policy(gateway, allow, deny)
    existing = gateway._import_service
    if existing is not None:
        existing.change_policy(policy, gateway.id)
    else:
        existing = gateway._import_service = AsyncImportService(gateway, policy)
    await existing.wait_ready(gateway.startup_timeout if timeout is None else timeout)
