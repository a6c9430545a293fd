"""``execwire map MODULE:FUNCTION``: call a function once per input line, spread over gateways.

The function is imported here (the current directory first on sys.path) and called by reference
on the gateways through an execwire.Executor, its module brought over by import forwarding; results
are printed in input order. A progress bar on stderr shows how far it got when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .._far.errors import GatewayStartError, RemoteError
from .._far.wire import DumpError
from ..calls import CallError
from .targets import parse_targets, usage_error

MAP_DESCRIPTION = """\
Call FUNCTION of MODULE once for each line of FILE (or of standard input), on
the --on gateways (default: one popen), and print the results in input order,
one per line (str() of each). Each line, without its newline, is the call's one
argument; with --json each line is a JSON value and each result is printed as
JSON. The function must be importable here (the current directory comes first
on sys.path); the far sides get its module by import forwarding if they lack
it. Calls run at once on all gateways (--workers in all, spread evenly), and a
gateway that is lost is started again and its calls run once more (so the
function should be idempotent). A progress bar on stderr (when it is a
terminal, or with --progress) counts the calls done.
"""

MAP_EXAMPLES = """\
examples:
  seq 1000 | execwire map mymodule:slow_square --on popen,popen,popen,popen
  execwire map --json tasks:run jobs.jsonl --on @hosts.txt --workers 32 > results.jsonl
"""

MAP_EXIT_HELP = """\
exit status:
  0    every call returned
  1    a call raised: its far traceback is printed, the calls not started are cancelled
  2    usage error, bad gateway spec, or MODULE:FUNCTION cannot be imported here
  3    a gateway could not start
  130  interrupted by Ctrl-C (143: by SIGTERM)
"""

BAR_WIDTH = 30
BAR_EVERY = 0.1  # seconds between redraws of the progress bar


def add_parser(commands: Any, parents: list[argparse.ArgumentParser], epilog: Callable[..., str],
               spec_help: str, env_help: str) -> argparse.ArgumentParser:
    """Add the ``map`` command to the subcommands of ``execwire``."""
    command: argparse.ArgumentParser = commands.add_parser(
        "map", parents=parents, formatter_class=argparse.RawDescriptionHelpFormatter,
        help="call a function once per input line, spread over gateways",
        usage="execwire map [options] MODULE:FUNCTION [FILE]", description=MAP_DESCRIPTION,
        epilog=epilog(MAP_EXAMPLES, spec_help, MAP_EXIT_HELP, env_help))
    command.add_argument("function", metavar="MODULE:FUNCTION",
                         help="the function to call, e.g. tasks:resize or pkg.jobs:Runner.run")
    command.add_argument("input", nargs="?", metavar="FILE", help="the input lines (default: standard input)")
    command.add_argument("--json", action="store_true", help="each line is a JSON value; print results as JSON")
    command.add_argument("--workers", type=int, metavar="N",
                         help="calls running at once, in all (default: one per gateway)")
    command.add_argument("--chunksize", type=int, default=1, metavar="N",
                         help="send N calls as one job (fewer round trips for quick calls; default 1)")
    command.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="the progress bar on stderr (default: when stderr is a terminal)")
    command.set_defaults(parser=command)
    return command


def import_function(text: str, parser: argparse.ArgumentParser) -> Callable[..., Any]:
    module_name, colon, qualname = text.partition(":")
    if not colon or not module_name or not qualname:
        usage_error(parser, f"{text!r}: name the function as MODULE:FUNCTION, e.g. tasks:resize")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception as exc:
        usage_error(parser, f"{text!r}: cannot import it here: {type(exc).__name__}: {exc}")
    if not callable(target):
        usage_error(parser, f"{text!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


class ProgressBar:
    """``[#####.....] 12/40 calls`` on a terminal line of its own, redrawn at most every BAR_EVERY seconds."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.done = 0
        self.total = 0
        self._drawn = 0.0
        self._lock = threading.Lock()

    def update(self, done: int, total: int) -> None:
        with self._lock:
            self.done, self.total = done, total
            now = time.monotonic()
            if now - self._drawn >= BAR_EVERY or done == total:
                self._drawn = now
                self._draw()

    def _draw(self) -> None:
        filled = BAR_WIDTH * self.done // self.total if self.total else 0
        self.stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.done}/{self.total} calls")
        self.stream.flush()

    def finish(self) -> None:
        with self._lock:
            if self._drawn:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line[:-1] if line.endswith("\n") else line


def run_map(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..executor import Executor

    if args.chunksize < 1:
        usage_error(parser, f"--chunksize needs at least 1, not {args.chunksize}")
    if args.workers is not None and args.workers < 1:
        usage_error(parser, f"--workers needs at least 1, not {args.workers}")
    func = import_function(args.function, parser)
    targets = parse_targets(args.on, parser)
    try:
        source = open(args.input, encoding="utf-8") if args.input else sys.stdin
    except OSError as exc:
        usage_error(parser, f"{args.input}: cannot read it: {exc.strerror}")
    with source:
        items: list[Any] = list(_lines(source))
    if args.json:
        try:
            items = [json.loads(line) for line in items]
        except ValueError as exc:
            usage_error(parser, f"--json: an input line is not JSON: {exc}")
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = ProgressBar(sys.stderr) if show else None
    try:
        executor = Executor([target.spec for target in targets], max_workers=args.workers,
                            progress=bar.update if bar is not None else None)
    except GatewayStartError as exc:
        sys.stderr.write(f"execwire: {exc}\n")
        return 3
    status = 0
    try:
        for result in executor.map(func, items, chunksize=args.chunksize):
            line = json.dumps(result) if args.json else str(result)
            if bar is not None:
                sys.stderr.write("\r\033[K")  # the bar's line is cleared before a result is printed
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except RemoteError as exc:
        sys.stderr.write(("\n" if bar is not None else "") + exc.formatted)
        status = 1
    except (CallError, DumpError) as exc:
        sys.stderr.write(f"execwire map: {exc}\n")
        status = 1
    except GatewayStartError as exc:
        sys.stderr.write(f"execwire: {exc}\n")
        status = 3
    except KeyboardInterrupt:
        status = 130
    finally:
        executor.shutdown(wait=status == 0, cancel_futures=True)
        if bar is not None and status == 0:
            bar.finish()
        if status:
            executor.group.terminate(timeout=1.0)
    return status
