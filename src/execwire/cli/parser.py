"""The arguments of ``execwire``: exit statuses, help texts, the parser and the ``--on`` gateways it names."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from .._far.channel import Channel
from .._far.errors import Error
from ..gateway import Gateway
from ..spec import FLAG_KEYS, KNOWN_KEYS, XSpec
from .shim import add_shim_path_option

OK = 0
CODE_RAISED = 1
USAGE = 2
START_FAILED = 3
TIMED_OUT = 4

SPEC_HELP = """\
gateway specs (--on SPEC, repeatable; without --on: one "popen" gateway):
  A spec is KEY=VALUE items joined by "//". It names one gateway type (popen,
  ssh=HOST or socket=HOST:PORT; via=ID alone means popen through gateway ID)
  and any options. Quote specs that hold spaces.
    popen                          a Python subprocess (this very interpreter)
    popen//python=python3.12       another local interpreter (a path or a name on PATH)
    ssh=host//python=python3       Python on an ssh host (your ~/.ssh/config applies)
    'ssh=-p 2222 user@host'        ssh with extra options
    socket=127.0.0.1:8888          a running `python -m execwire.server`
    popen//via=ID                  a Python started through gateway ID (an earlier --on)
    popen//env:NAME=value          set an environment variable on the far side
    popen//chdir=DIR               far working directory (made if missing)
    popen//nice=10                 lower the priority of the whole far process
    popen//id=NAME                 the gateway id shown in prefixes (default gw0, gw1, ...)
{other_keys}
"""

EXIT_HELP = """\
exit status:
  0    every gateway ran the code without error
  1    the code raised on some gateway (its remote traceback is printed, prefixed)
       or a gateway was lost while the code ran
  2    usage error or bad gateway spec (the message names the bad key)
  3    a gateway could not start (its error is printed; the others still ran)
  4    --timeout passed; gateways still running were terminated
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
  When several apply, the highest of 4, 3, 1 wins.
"""

INFO_EXIT_HELP = """\
exit status:
  0    every gateway answered
  2    usage error or bad gateway spec (the message names the bad key)
  3    a gateway could not start (its error is printed; the others are still shown)
  4    --timeout passed before every gateway had started
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
"""

ENV_HELP = """\
environment:
  EXECWIRE_DEBUG=1   trace every message of both sides to stderr
"""

RUN_DESCRIPTION = """\
Run Python code on one or many gateways at once. The code sees `channel` (and
__name__ == "__channelexec__"). What it prints reaches stdout and stderr; every
item it sends with channel.send() is printed on a line of its own (str as is,
anything else as repr). With several gateways every line is prefixed with the
gateway id, e.g. "[gw0] ".
"""

RUN_EXAMPLES = """\
examples:
  execwire run -c 'import sys; print(sys.version)'
  execwire run --on popen//id=old//python=python3.8 --on popen//id=new script.py
  echo 'import os; channel.send(os.getpid())' | execwire run -
  execwire run --timeout 10 --on ssh=web1 --on ssh=web2 -c 'import socket; print(socket.gethostname())'
"""

INFO_DESCRIPTION = """\
Print for each gateway its id, spec, executable, version, implementation,
platform, pid and cwd: one block per gateway, or one JSON object per line with
--json (a gateway that failed gives an object with "error").
"""

INFO_EXAMPLES = """\
examples:
  execwire info
  execwire info --on popen//python=python3.12 --on ssh=host --json
"""

TOP_DESCRIPTION = """\
execwire starts Python interpreters elsewhere (subprocesses, ssh hosts, socket
servers, containers, other users, or any of those through another gateway),
ships code to them and prints what comes back. Run `execwire COMMAND --help`
for the options of a command.
"""


def _other_keys() -> str:
    shown = {"popen", "ssh", "socket", "via", "python", "chdir", "nice", "id"}
    keys = [key if key in FLAG_KEYS else f"{key}=..." for key in KNOWN_KEYS if key not in shown]
    return textwrap.fill("Other keys: " + ", ".join(keys) + ".", width=78, initial_indent="  ",
                         subsequent_indent="    ")


def _epilog(*parts: str) -> str:
    return "\n".join(parts)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"needs a positive number of seconds, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``execwire`` and its subcommands."""
    spec_help = SPEC_HELP.format(other_keys=_other_keys())
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="execwire", description=TOP_DESCRIPTION, formatter_class=raw,
        epilog=_epilog(spec_help, EXIT_HELP, ENV_HELP))
    parser.add_argument("--version", action="version", version=f"execwire {__version__}")
    add_shim_path_option(parser)
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--on", action="append", default=[], metavar="SPEC",
                        help="a gateway to use (repeat for several; default: popen); see 'gateway specs' below")
    common.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                        help="terminate gateways still running (or starting) after SECONDS; exit status 4")

    run = commands.add_parser(
        "run", parents=[common], formatter_class=raw, help="run Python code on one or many gateways at once",
        description=RUN_DESCRIPTION, epilog=_epilog(RUN_EXAMPLES, spec_help, EXIT_HELP, ENV_HELP))
    run.add_argument("-c", dest="code", metavar="CODE", help="the code to run, as a string")
    run.add_argument("file", nargs="?", metavar="FILE", help="a file of Python code to run; - reads standard input")

    info = commands.add_parser(
        "info", parents=[common], formatter_class=raw, help="print facts about each gateway's interpreter",
        description=INFO_DESCRIPTION, epilog=_epilog(INFO_EXAMPLES, spec_help, INFO_EXIT_HELP, ENV_HELP))
    info.add_argument("--json", action="store_true", help="one JSON object per gateway and line")
    run.set_defaults(parser=run)
    info.set_defaults(parser=info)
    return parser


# -- gateways to start ---------------------------------------------------------


class Target:
    """One ``--on`` gateway: its id, the spec as written, and how it fared."""

    def __init__(self, gateway_id: str, text: str, spec: XSpec) -> None:
        self.id = gateway_id
        self.text = text
        self.spec = spec  # the spec as written plus //id=, so the group uses our id
        self.gateway: Gateway | None = None
        self.channel: Channel | None = None
        self.error: str | None = None  # why it could not start
        self.outcome: str | None = None  # "ok", "raised", "lost", "timeout", "failed"

    @property
    def state(self) -> str:
        """'starting', 'up', 'failed' or 'closed', noting a start-up failure on the way."""
        if self.error is not None:
            return "failed"
        if self.gateway is None:
            return "starting"
        state = self.gateway.state
        if state == "failed":
            try:
                self.gateway.wait_ready(0)
            except Error as exc:
                self.error = str(exc)
        return state


def parse_targets(texts: Sequence[str], parser: argparse.ArgumentParser) -> list[Target]:
    """Check every spec before anything starts; give each gateway its id (explicit ones are reserved)."""
    specs: list[XSpec] = []
    for text in texts or ["popen"]:
        try:
            specs.append(XSpec(text))
        except ValueError as exc:
            _usage_error(parser, f"--on {text!r}: {exc}")
    explicit: set[str] = set()
    for spec in specs:
        if spec.id is not None:
            if spec.id in explicit:
                _usage_error(parser, f"gateway id {spec.id!r} is given by two --on specs; ids must differ")
            explicit.add(spec.id)
    targets: list[Target] = []
    number = 0
    for spec in specs:
        gateway_id = spec.id
        full = spec
        if gateway_id is None:
            while f"gw{number}" in explicit:
                number += 1
            gateway_id = f"gw{number}"
            number += 1
            full = XSpec(f"{spec}//id={gateway_id}")
        for key in ("via", "installvia"):
            other = getattr(spec, key)
            if other is not None and other not in {target.id for target in targets}:
                _usage_error(parser, f"--on {str(spec)!r}: key {key!r} names gateway {other!r}, which no earlier "
                                     f"--on defines; add //id={other} to the spec of that gateway, before this one")
        targets.append(Target(gateway_id, str(spec), full))
    return targets


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.error(message)
