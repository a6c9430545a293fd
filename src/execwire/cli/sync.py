"""The command ``execwire rsync``: copy a directory tree to one or many gateways, with a progress bar.

Each gateway gets its own RSync (execwire.rsync), so gateways start and copy
side by side, one that fails does not hold up the others, and ``--max-parallel``
and ``--timeout`` mean what they mean for ``execwire run``.
"""

from __future__ import annotations

import argparse
import functools
import os
import threading
import time
from collections.abc import Callable

from .._far.errors import Error, RemoteError
from ..gateway import Gateway
from ..rsync import Progress, RSync
from ..spec import XSpec
from . import summary
from .parser import CODE_RAISED, OK
from .session import Session
from .targets import Target, make_targets, spec_texts, start_error_text, usage_error

BAR_WIDTH = 20


def split_target(text: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """``SPEC:DEST`` split at the last colon whose left part is a valid spec (specs may hold colons)."""
    if ":" not in text:
        usage_error(parser, f"target {text!r} has no ':'; write SPEC:DEST (popen:/tmp/copy, ssh=web1:/srv/app), "
                            f"or name the gateways with --on and give DEST alone")
    first_error = ""
    index = len(text)
    while True:
        index = text.rfind(":", 0, index)
        if index < 0:
            break
        spec, dest = text[:index], text[index + 1:]
        if not spec:
            break
        try:
            XSpec(spec)
        except ValueError as exc:
            first_error = first_error or f"{spec!r}: {exc}"
            continue
        if not dest:
            usage_error(parser, f"target {text!r} names no DEST after the ':'")
        return spec, dest
    usage_error(parser, f"target {text!r}: no gateway spec before a ':' ({first_error or 'the spec is empty'})")


def parse_rsync_targets(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list[Target],
                                                                                            dict[str, str]]:
    """The gateways and the DEST of each: ``--on ... DEST`` or ``SPEC:DEST ...``."""
    if args.on:
        if len(args.targets) != 1:
            usage_error(parser, f"with --on, give one DEST (the same on every gateway) after SRC, not "
                                f"{len(args.targets)}: {' '.join(args.targets)}")
        found = spec_texts(args.on, parser)
        dests = [args.targets[0]] * len(found)
    else:
        pairs = [split_target(text, parser) for text in args.targets]
        found = [(spec, "") for spec, _ in pairs]
        dests = [dest for _, dest in pairs]
    targets = make_targets(found, parser)
    return targets, {target.id: dest for target, dest in zip(targets, dests, strict=True)}


def check_source(source: str, parser: argparse.ArgumentParser) -> None:
    if not os.path.exists(source):
        usage_error(parser, f"SRC {source!r}: no such directory")
    if not os.path.isdir(source):
        usage_error(parser, f"SRC {source!r} is not a directory (rsync copies a directory tree; give the directory "
                            f"that holds the file)")
    if not os.access(source, os.R_OK | os.X_OK):
        usage_error(parser, f"SRC {source!r}: cannot read the directory (permission denied)")


def size(count: int) -> str:
    """A byte count for people: 512 B, 12.3 kB, 4.0 MB."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


def bar(done: int, total: int) -> str:
    """``[#########-----------]  45%``; an empty total is complete."""
    fraction = 1.0 if total <= 0 else min(done / total, 1.0)
    filled = int(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {int(fraction * 100):3d}%"


class _Copy(RSync):
    """An RSync for one gateway that names the files it sends when asked (-v)."""

    def __init__(self, source: str, job: RsyncJob, target: Target) -> None:
        super().__init__(source, progress=functools.partial(job.progress, target))
        self._job = job
        self._target = target

    def _report_send_file(self, gateway: Gateway, modified_rel_path: str) -> None:
        if self._job.verbose:
            self._job.say(self._target, modified_rel_path)


class RsyncJob:
    """``execwire rsync`` on one gateway: copy, note the figures, end the gateway."""

    def __init__(self, session: Session, source: str, dests: dict[str, str], delete: bool, verbose: bool,
                 quiet: bool) -> None:
        self.session = session
        self.source = source
        self.dests = dests
        self.delete = delete
        self.verbose = verbose
        self.quiet = quiet
        self._progress: dict[str, Progress] = {}
        self._results: dict[str, str] = {}

    def launch(self, target: Target) -> None:
        threading.Thread(target=self._copy, args=(target,), name=f"execwire-rsync-{target.id}", daemon=True).start()

    def progress(self, target: Target, progress: Progress) -> None:
        self._progress[target.id] = progress

    def describe(self, target: Target) -> str | None:
        """The progress bar of a gateway (the status block shows it in place of "up")."""
        result = self._results.get(target.id)
        if result is not None:
            return result
        progress = self._progress.get(target.id)
        if progress is None:
            return "comparing"
        text = f"{bar(progress.bytes_sent, progress.bytes_total)} {size(progress.bytes_sent)}/" \
               f"{size(progress.bytes_total)} {progress.files_done}/{progress.files_total} files"
        return text + (f" {progress.path}" if progress.path else "")

    def say(self, target: Target, text: str) -> None:
        """A line of ours on stdout, prefixed by the gateway id when there are several."""
        self.session.console.text(1, f"{self.session.router.prefix(target.id)}{text}\n")

    def _copy(self, target: Target) -> None:
        gateway = target.gateway
        assert gateway is not None
        dest = self.dests[target.id]
        started = time.monotonic()
        copy = _Copy(self.source, self, target)
        try:
            copy.add_target(gateway, dest, delete=self.delete)
            copy.send()
        except RemoteError as exc:  # the far side could not write: the last line of its traceback says why
            self._failed(target, dest, exc.formatted.strip().splitlines()[-1])
        except Error as exc:
            if gateway.state == "failed":
                self.session.fail(target, start_error_text(gateway))
            elif not target.timed_out and target.stopped_by is None:
                target.lost = str(exc)
                self.session.notice(target, f"gateway lost while copying to {dest}: {exc}")
        except (OSError, ValueError) as exc:  # this side: SRC holds a socket or fifo, or changed under us
            self._failed(target, dest, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug of ours: said, rather than a copy thread that dies and a command that waits
            self._failed(target, dest, f"{type(exc).__name__}: {exc} (please report this)")
        else:
            target.exit_status = OK
            self._finished(target, dest, copy.stats.get(gateway.id, {}), time.monotonic() - started)
        finally:
            try:
                gateway.exit(timeout=2.0)
            finally:
                self.session.end(target)

    def _failed(self, target: Target, dest: str, reason: str) -> None:
        target.exit_status, target.raised = CODE_RAISED, reason.split(":", 1)[0]
        self._results[target.id] = "failed"
        self.session.notice(target, f"rsync to {dest} failed: {reason}")

    def _finished(self, target: Target, dest: str, stats: dict[str, int], seconds: float) -> None:
        files, deleted = stats.get("files", 0), stats.get("deleted", 0)
        parts = [f"{files} file{'s' if files != 1 else ''} sent ({size(stats.get('bytes', 0))})"] if files else []
        parts += [f"{deleted} deleted"] if deleted else []
        what = ", ".join(parts) or "up to date, nothing sent"
        progress = self._progress.get(target.id)
        total = progress.bytes_total if progress is not None else 0
        self._results[target.id] = f"{bar(total, total)} done: {what}"
        if not self.quiet:
            self.say(target, f"{dest}: {what} in {seconds:.2f} s")


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Session, Callable[[], int]]:
    """Check the command line; the session of ``execwire rsync`` and the work to do in it."""
    check_source(args.source, parser)
    targets, dests = parse_rsync_targets(args, parser)
    session = Session(targets, args.timeout, args.max_parallel, status_block=not args.quiet)
    job = RsyncJob(session, args.source, dests, args.delete, args.verbose, args.quiet)

    def work() -> int:
        session.run(job)
        session.close(timeout=1.0)
        status = session.exit_status()
        if len(targets) > 1 and not args.quiet:
            session.console.text(2, summary.line(targets, status))
        return status

    return session, work
