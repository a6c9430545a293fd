"""The ``execwire`` command: run code on many gateways at once, ask them who they are, or talk to one.

``execwire run`` ships code to every ``--on`` gateway (at most ``--max-parallel`` at
once) and prints what it prints and sends, prefixed by gateway id when there are
several; ``execwire info`` prints facts about each far interpreter; ``execwire
shell`` is an interactive prompt on one; ``execwire map`` calls a function once per input
line over gateways (cli/mapping.py); ``execwire rsync`` copies a directory tree to
gateways (cli/sync.py). While gateways start (and while rsync copies), a terminal on
stderr shows one status line per gateway, updated in place.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Callable, Sequence

from .. import debugger
from . import far_logs
from .parser import USAGE, build_parser
from .run import Interrupted, Program, RunJob, _on_signal, info
from .session import Session
from .stdin import StdinFan
from .targets import parse_targets

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``execwire`` console script and of ``python -m execwire``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return USAGE
    subparser: argparse.ArgumentParser = args.parser
    if args.command == "shell":
        from .shell import shell

        return shell(args.spec, subparser)
    if args.command == "map":
        from .mapping import run_map

        return run_map(args, subparser)
    work: Callable[[], int]
    if args.command == "rsync":
        from .sync import prepare

        session, work = prepare(args, subparser)
    else:
        program = Program.from_args(args, subparser) if args.command == "run" else None
        targets = parse_targets(args.on, subparser, main_thread=program is not None)
        options = {"grouped": args.group_output, "as_json": args.json} if program is not None else {}
        session = Session(targets, args.timeout, args.max_parallel, options)
        work = functools.partial(info, session, args.json) if program is None else \
            functools.partial(_run, session, program, args)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    records = far_logs.install(session.router) if args.command == "run" else None
    debugger.before_session.append(session.end_status)  # a pdb session writes below the status block
    try:
        return work()
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        count = len(session.active)
        session.console.text(2, f"execwire: interrupted; terminating {count} gateway{'s' if count != 1 else ''}\n")
        session.stop_all("interrupted")
        return 128 + signum
    finally:
        session.group.terminate(timeout=1.0)
        if records is not None:
            far_logs.remove(records)
        debugger.before_session.remove(session.end_status)


def _run(session: Session, program: Program, args: argparse.Namespace) -> int:
    from . import summary

    stdin = StdinFan([target.id for target in session.targets]) if args.stdin and program.filename != "<stdin>" \
        else None
    session.run(RunJob(session, program, stdin, pdb=args.pdb))
    session.close(timeout=1.0)
    status = session.exit_status()
    if session.stopped_by is not None:
        return status
    several = len(session.targets) > 1
    show_table = args.summary if args.summary is not None else (several and session.console.ttys[2])
    if show_table:
        session.console.text(2, summary.table(session.targets, status))
    elif several and args.summary is None:
        session.console.text(2, summary.line(session.targets, status))
    return status
