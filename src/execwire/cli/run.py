"""The commands ``execwire run`` and ``execwire info``, and the signals that interrupt them."""

from __future__ import annotations

import argparse
import functools
import json
import queue
import sys
import threading
from types import FrameType
from typing import Any

from .._far.errors import Error, GatewayStartError, RemoteError
from ..gateway import Gateway
from .parser import Target, _usage_error
from .session import Session

# -- the commands ----------------------------------------------------------------


_END = object()


class Runner:
    """``execwire run``: the code on every gateway at once, results as they come."""

    def __init__(self, session: Session, code: str) -> None:
        self.session = session
        self.code = code
        self.finished: queue.SimpleQueue[Target] = queue.SimpleQueue()

    def run(self) -> int:
        session = self.session
        session.start()
        active = [target for target in session.targets if target.gateway is not None]
        for target in list(active):
            assert target.gateway is not None
            try:
                channel = target.gateway.remote_exec(self.code)
            except Error as exc:
                session.fail(target, self._why_not_started(target.gateway, exc))
                active.remove(target)
                continue
            target.channel = channel
            channel.setcallback(functools.partial(self._received, target), endmarker=_END)
        while active:
            try:
                target = self.finished.get(timeout=session.tick())
            except queue.Empty:
                session.update_status()
                if session.expired():
                    session.time_out(active)
                    break
                continue
            active.remove(target)
            self._report(target)
            session.update_status()
        session.close(timeout=0.0 if session.expired() else 5.0)
        return session.exit_status()

    def _why_not_started(self, gateway: Gateway, error: Error) -> str:
        """The start-up error behind a failed remote_exec (a broken pipe says little by itself)."""
        try:
            gateway.wait_ready(5.0)
        except Error as start_error:
            return str(start_error)
        return str(error)

    def _received(self, target: Target, item: object) -> None:
        """Channel callback (the gateway's callback thread): print an item, or end at the endmarker."""
        if item is not _END:
            self.session.router.item(target.id, item)
            return
        # the code is done: end its gateway now, so all it printed is in before the verdict
        threading.Thread(target=self._finish, args=(target,), name=f"execwire-finish-{target.id}",
                         daemon=True).start()

    def _finish(self, target: Target) -> None:
        try:
            if target.gateway is not None:
                target.gateway.exit(timeout=2.0)
            self.session.router.flush(target.id)
        finally:
            self.finished.put(target)

    def _report(self, target: Target) -> None:
        assert target.channel is not None
        session = self.session
        try:
            target.channel.waitclose(0)
        except RemoteError as exc:
            target.outcome = "raised"
            session.router.text(target.id, 2, exc.formatted.rstrip("\n"))
        except GatewayStartError as exc:
            session.fail(target, str(exc))
        except Error as exc:
            target.outcome = "lost"
            session.notice(target, f"gateway lost while the code ran: {exc}")
        else:
            target.outcome = "ok"


def info(session: Session, as_json: bool) -> int:
    """``execwire info``: wait for every gateway, then one block or JSON object each."""
    session.start()
    session.wait_started()
    late = [target for target in session.targets if target.state == "starting"]
    if late:
        session.time_out(late)
    for target in session.targets:
        record: dict[str, Any] = {"id": target.id, "spec": target.text}
        if target.outcome in ("failed", "timeout") or target.gateway is None:
            record["error"] = target.error or "still starting at the --timeout"
        else:
            try:
                rinfo = target.gateway._rinfo()
            except Error as exc:
                session.fail(target, str(exc))
                record["error"] = str(exc)
            else:
                target.outcome = "ok"
                facts = vars(rinfo)
                version = tuple(facts.get("version_info", ()))
                record.update(
                    executable=facts.get("executable"),
                    version=".".join(str(part) for part in version[:3]),
                    version_info=list(version),
                    implementation=facts.get("implementation"),
                    platform=facts.get("platform"),
                    pid=facts.get("pid"),
                    cwd=facts.get("cwd"),
                )
        if as_json:
            session.console.text(1, json.dumps(record) + "\n")
        elif "error" not in record:
            session.console.text(1, _info_block(record))
    session.close(timeout=0.0 if session.expired() else 5.0)
    return session.exit_status()


def _info_block(record: dict[str, Any]) -> str:
    fields = ("spec", "executable", "version", "implementation", "platform", "pid", "cwd")
    width = max(len(name) for name in fields) + 1
    lines = [f"{record['id']}:"] + [f"  {name + ':':<{width}} {record[name]}" for name in fields]
    return "\n".join(lines) + "\n\n"


def _read_code(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.code is not None and args.file is not None:
        _usage_error(parser, "give either -c CODE or FILE, not both")
    if args.code is not None:
        return str(args.code)
    if args.file is None:
        _usage_error(parser, "nothing to run: give -c CODE, a FILE, or - to read the code from standard input")
    if args.file == "-":
        return sys.stdin.read()
    try:
        with open(args.file, encoding="utf-8") as source:
            return source.read()
    except (OSError, UnicodeDecodeError) as exc:
        _usage_error(parser, f"cannot read {args.file!r}: {exc}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop, but terminate the gateways first."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)
