"""The ``execwire`` command: run code on many gateways at once, or ask them who they are.

``execwire run`` ships code to every ``--on`` gateway at once and prints what it
prints and sends, prefixed by gateway id when there are several; ``execwire
info`` prints facts about each far interpreter. While gateways start, a terminal
on stderr shows one status line per gateway, updated in place.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .parser import USAGE, build_parser, parse_targets
from .run import Interrupted, Runner, _on_signal, _read_code, info
from .session import Session

__all__ = ["main"]

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``execwire`` console script and of ``python -m execwire``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return USAGE
    subparser: argparse.ArgumentParser = args.parser
    code = _read_code(args, subparser) if args.command == "run" else ""
    targets = parse_targets(args.on, subparser)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    session = Session(targets, args.timeout)
    try:
        if args.command == "run":
            return Runner(session, code).run()
        return info(session, args.json)
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        count = len(session.group)
        session.console.text(2, f"execwire: interrupted; terminating {count} gateway{'s' if count != 1 else ''}\n")
        session.close(timeout=1.0)
        return 128 + signum
    finally:
        session.group.terminate(timeout=1.0)
