"""The commands ``execwire run`` and ``execwire info``, and the signals that interrupt them."""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from .. import debugger
from .._far.errors import Error, GatewayStartError, RemoteError
from . import far_job
from .session import Session
from .stdin import StdinFan
from .targets import Target, usage_error

_END = object()


class Program:
    """What ``execwire run`` runs: the code, the name it goes by, and its sys.argv."""

    def __init__(self, source: str, filename: str, argv: list[str], path: str | None = None) -> None:
        self.source = source
        self.filename = filename  # what tracebacks name
        self.argv = argv
        self.path = path  # __file__ (absolute), for a FILE

    @classmethod
    def from_args(cls, args: argparse.Namespace, parser: argparse.ArgumentParser) -> Program:
        words = list(args.args)
        if args.code is not None:
            if words[:1] == ["--"]:
                words = words[1:]
            return cls(str(args.code), "<string>", ["-c", *words])
        if not words:
            usage_error(parser, "nothing to run: give -c CODE, a FILE, or - to read the code from standard input")
        name, rest = words[0], words[1:]
        if name == "-":
            return cls(sys.stdin.read(), "<stdin>", ["-", *rest])
        try:
            with open(name, encoding="utf-8") as source:
                text = source.read()
        except (OSError, UnicodeDecodeError) as exc:
            usage_error(parser, f"cannot read {name!r}: {exc}")
        path = os.path.abspath(name)
        return cls(text, path, [name, *rest], path)


class RunJob:
    """``execwire run`` on one gateway: ship the far job, route what it says, note how it ended."""

    def __init__(self, session: Session, program: Program, stdin: StdinFan | None, pdb: bool = False) -> None:
        self.session = session
        self.program = program
        self.stdin = stdin
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        self.settings: dict[str, Any] = {
            "mode": "run", "source": program.source, "filename": program.filename, "file": program.path,
            "argv": program.argv, "stdin": stdin is not None, "encoding": encoding, "pdb": pdb}

    def launch(self, target: Target) -> None:
        # in a thread: shipping the job writes to the far side's pipe, which waits while a far side that
        # is still starting (or stuck there) has not read it, and the main loop must go on meanwhile
        threading.Thread(target=self._ship, args=(target,), name=f"execwire-ship-{target.id}", daemon=True).start()

    def _ship(self, target: Target) -> None:
        gateway = target.gateway
        assert gateway is not None
        try:
            channel = gateway.remote_exec(far_job)
            channel.setcallback(functools.partial(self._received, target), endmarker=_END)
            channel.send(self.settings)
        except Error as exc:
            self.session.fail(target, self._why_not_started(target, exc))
            self._done(target)
            return
        target.channel = channel

    def _why_not_started(self, target: Target, error: Error) -> str:
        """The start-up error behind a failed remote_exec (a broken pipe says little by itself)."""
        assert target.gateway is not None
        try:
            target.gateway.wait_ready(5.0)
        except Error as start_error:
            return str(start_error)
        return str(error)

    def _received(self, target: Target, message: Any) -> None:
        """Channel callback (the gateway's callback thread): route one message of the far job."""
        router = self.session.router
        if message is _END:
            # the job is over: end its gateway now, so all it printed is in before the verdict
            threading.Thread(target=self._finish, args=(target,), name=f"execwire-finish-{target.id}",
                             daemon=True).start()
            return
        kind = message[0]
        if kind == "out":
            router.feed(target.id, 1, message[1])
        elif kind == "err":
            router.feed(target.id, 2, message[1])
        elif kind == "item":
            router.item(target.id, message[1])
        elif kind == "read":
            self._read(target, message[1])
        elif kind == "exit":
            target.exit_status, target.raised = int(message[1]), message[2]

    def _read(self, target: Target, size: int) -> None:
        channel = target.channel

        def reply(data: bytes) -> None:
            try:
                if channel is not None:
                    channel.send(("stdin", data))
            except Error:
                pass  # the far side is gone; nobody wants the data now

        if self.stdin is None:
            reply(b"")
        else:
            self.stdin.request(target.id, size, reply)

    def _finish(self, target: Target) -> None:
        try:
            gateway = target.gateway
            if gateway is not None and target.id not in self.session.passed_through:
                gateway.exit(timeout=2.0)  # others that start through it need it until the end
            popen = getattr(gateway._process, "popen", None) if gateway is not None else None
            if popen is not None:
                target.process_status = popen.returncode
            if target.exit_status is None and target.error is None and target.channel is not None:
                self._why_it_ended(target)
        finally:
            self._done(target)

    def _why_it_ended(self, target: Target) -> None:
        assert target.channel is not None
        try:
            target.channel.waitclose(5.0)  # closed already; this waits for its callbacks to be done
        except RemoteError as exc:  # the job itself failed (not the code: the job catches what it raises)
            target.exit_status, target.raised = 1, exc.type_name or "Error"
            self.session.router.text(target.id, 2, exc.formatted.rstrip("\n"))
        except GatewayStartError as exc:
            target.error = target.error or str(exc)
        except Error as exc:
            if not target.timed_out and target.stopped_by is None:
                target.lost = str(exc)
                self.session.notice(target, f"gateway lost while the code ran{target.how_the_process_ended()}: {exc}")
        else:
            if not target.timed_out and target.stopped_by is None:
                target.lost = "the far side ended the job without a word"
                self.session.notice(target, target.lost)

    def _done(self, target: Target) -> None:
        if self.stdin is not None:
            self.stdin.forget(target.id)
        self.session.end(target)


class InfoJob:
    """``execwire info`` on one gateway: wait until it answers and keep its facts."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.records: dict[str, dict[str, Any]] = {}

    def launch(self, target: Target) -> None:
        threading.Thread(target=self._ask, args=(target,), name=f"execwire-info-{target.id}", daemon=True).start()

    def _ask(self, target: Target) -> None:
        gateway = target.gateway
        assert gateway is not None
        try:
            rinfo = gateway._rinfo()
        except Error as exc:
            if not target.timed_out:
                target.error = target.error or str(exc)
        else:
            facts = vars(rinfo)
            version = tuple(facts.get("version_info", ()))
            self.records[target.id] = dict(
                executable=facts.get("executable"),
                version=".".join(str(part) for part in version[:3]),
                version_info=list(version),
                implementation=facts.get("implementation"),
                platform=facts.get("platform"),
                pid=facts.get("pid"),
                cwd=facts.get("cwd"),
            )
            target.exit_status = 0
        finally:
            gateway.exit(timeout=2.0)
            self.session.end(target)


def info(session: Session, as_json: bool) -> int:
    """``execwire info``: every gateway's facts, one block or JSON object each, in the order of --on."""
    job = InfoJob(session)
    session.run(job)
    for target in session.targets:
        record: dict[str, Any] = {"id": target.id, "spec": target.text}
        facts = job.records.get(target.id)
        if facts is None:
            record["error"] = target.error or ("still starting at the --timeout" if target.timed_out
                                               else "not started")
        else:
            record.update(facts)
        if as_json:
            session.console.text(1, json.dumps(record) + "\n")
        elif "error" not in record:
            session.console.text(1, _info_block(record))
    session.close(timeout=1.0)
    return session.exit_status()


def _info_block(record: dict[str, Any]) -> str:
    fields = ("spec", "executable", "version", "implementation", "platform", "pid", "cwd")
    width = max(len(name) for name in fields) + 1
    lines = [f"{record['id']}:"] + [f"  {name + ':':<{width}} {record[name]}" for name in fields]
    return "\n".join(lines) + "\n\n"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: stop, but terminate the gateways first."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGINT and debugger.interrupt():
        return  # Ctrl-C while far code runs under pdb: pdb stops it, as a local pdb would
    raise Interrupted(signum)
