"""The arguments of ``execwire``: exit statuses, help texts and the parser of every command."""

from __future__ import annotations

import argparse
import textwrap

from .. import __version__
from ..spec import FLAG_KEYS, KNOWN_KEYS
from .shim import add_shim_path_option

OK = 0
CODE_RAISED = 1
USAGE = 2
START_FAILED = 3
TIMED_OUT = 4
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
STDOUT_CLOSED = 141  # 128 + SIGPIPE: what `yes | head -1` gives `yes`

SPEC_HELP = """\
gateway specs (--on SPEC; without --on: one "popen" gateway):
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
    popen//timeout=SECONDS         how long the far side may take to start (default 60)
{other_keys}
  Many gateways: repeat --on, give a list (--on ssh=web1,ssh=web2: a comma
  separates specs), or name a hosts file (--on @hosts.txt: one spec per line;
  blank lines and comments, from a "#" at the start of a line or after a space,
  are left out; a spec that holds a comma must come from such a file).
"""

RUN_EXIT_HELP = """\
exit status:
  N    with one gateway: the far code's own, as python gives it: 0 at its end,
       N for sys.exit(N), 1 (and the traceback) for an uncaught exception
  1    a gateway was lost while the code ran (or the far process's exit code)
  2    usage error or bad gateway spec (the message names the bad key)
  3    a gateway could not start (its error is printed; the others still ran)
  4    --timeout passed on a gateway; it was terminated
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
  141  standard output was closed (as by `| head -1`); every gateway was terminated
  With several gateways: the highest of theirs, and a line on stderr saying
  which gateway gave what (the summary table, on a terminal).
"""

INFO_EXIT_HELP = """\
exit status:
  0    every gateway answered
  2    usage error or bad gateway spec (the message names the bad key)
  3    a gateway could not start (its error is printed; the others are still shown)
  4    --timeout passed before a gateway had started
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
"""

SHELL_EXIT_HELP = """\
exit status:
  0    Ctrl-D (or end of input) left the shell
  N    sys.exit(N) (or exit(N)) on the far side
  1    the gateway was lost
  2    usage error or bad gateway spec
  3    the gateway could not start
"""

ENV_HELP = """\
environment:
  EXECWIRE_DEBUG=1   trace every message of both sides to stderr
"""

RUN_DESCRIPTION = """\
Run Python code on one or many gateways at once, as python runs a script: the
code runs as __main__ with sys.argv set (FILE ARG... or -c CODE ARG...) and
__file__ naming FILE, in the far main thread (unless the spec sets execmodel=
or other gateways start through this one); tracebacks name FILE and leave out
execwire's own frames. It also sees `channel`: every item it sends with
channel.send() is printed as its repr on a line of its own (or as JSON with
--json). What one gateway prints and sends appears in the order it happened.
(What its subprocesses write to the file descriptors 1 and 2 travels another
way and may overtake.)

What the code logs with `logging` is shown on stderr as python shows it (by
default warnings and worse, as their message; the spec key logging=LEVEL sets
the far root level), or as JSON records of kind "log" with --json. breakpoint()
opens pdb on this terminal, and --pdb opens it at an uncaught exception.

With several gateways every line is prefixed with the gateway id ("[gw0] "),
as the lines come (interleaved) or gateway by gateway (--group-output); at the
end a summary table (gateway, status, time, exit) is shown on a terminal.

Standard input is forwarded: the far sys.stdin reads ours, which is read only
when the far code asks for it. With several gateways, each one reads its own
copy of all of it (kept in memory until each has read it or ended); -n gives
the far code an empty standard input instead. When our standard output is
closed (`execwire run ... | head -1`) every gateway is terminated at once.
"""

RUN_EXAMPLES = """\
examples:
  execwire run -c 'import sys; print(sys.version)'
  execwire run script.py --verbose input.txt       # sys.argv == ['script.py', '--verbose', 'input.txt']
  execwire run --on popen//id=old//python=python3.8 --on popen//id=new script.py
  echo 'import os; channel.send(os.getpid())' | execwire run -
  sort data.txt | execwire run -c 'import sys; print(len(sys.stdin.readlines()))'
  execwire run --on @hosts.txt --max-parallel 50 --timeout 30 -c 'import os; print(os.uname().release)'
  execwire run --on ssh=web1,ssh=web2 --json -c 'import socket; channel.send(socket.gethostname())'
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

SHELL_DESCRIPTION = """\
An interactive Python prompt on a far interpreter: statements run there (in its
main thread, as __main__), what they print and the repr of expressions comes
back. Line editing and history (kept in ~/.execwire_history, or in the file
$EXECWIRE_HISTORY names) are this side's readline; Tab completes names of the
far namespace; Ctrl-C interrupts the statement that runs (a KeyboardInterrupt
on the far side, which cuts a time.sleep or a read short) and keeps the
gateway; Ctrl-D leaves. `channel.send(x)` prints repr(x). The far code's
input() and sys.stdin read our terminal.
"""

SHELL_EXAMPLES = """\
examples:
  execwire shell
  execwire shell ssh=web1//python=python3
  execwire shell 'popen//python=python3.12//chdir=/srv'
"""

RSYNC_DESCRIPTION = """\
Copy the directory tree SRC to DEST on each gateway, sending only what
differs: a file of the same size and modification time is taken as unchanged,
one of the same size but another time is compared by its sha256 there. Files
travel in chunks (never a whole file in memory); modes, modification times and
symlinks are kept (a symlink into SRC points into DEST there). DEST becomes a
copy of SRC's contents (as `rsync SRC/ DEST`), made if missing; a relative DEST
is relative to the far working directory (chdir= in the spec, else the far
default: the current directory for popen, the home directory for ssh).

Targets: SPEC:DEST, as many as you like (the spec ends at the last ':' before
which a valid spec stands: socket=127.0.0.1:8888:/srv/app works), or --on SPEC
(and lists and @hosts.txt, as for `execwire run`) with DEST given once for all.
Gateways start and copy side by side (at most --max-parallel at once). On a
terminal, stderr shows a progress bar per gateway, updated in place; each
gateway that is done prints a line on stdout (DEST, files and bytes sent,
files deleted, seconds), prefixed with its id when there are several; -q
prints neither.
"""

RSYNC_EXAMPLES = """\
examples:
  execwire rsync ./site popen:/tmp/site-copy
  execwire rsync --delete ./app ssh=web1:/srv/app ssh=web2:/srv/app
  execwire rsync --on @hosts.txt --max-parallel 20 -v ./conf /etc/myapp
"""

RSYNC_EXIT_HELP = """\
exit status:
  0    every DEST is a copy of SRC
  1    copying failed on a gateway (its error names the path), or it was lost
  2    usage error, bad gateway spec or target, SRC missing or not a directory
  3    a gateway could not start (its error is printed; the others still copy)
  4    --timeout passed on a gateway; it was terminated
  130  interrupted by Ctrl-C (143: by SIGTERM); every gateway was terminated
  With several gateways: the highest, and a line on stderr saying which gave what.
"""

TOP_DESCRIPTION = """\
execwire starts Python interpreters elsewhere (subprocesses, ssh hosts, socket
servers, containers, other users, or any of those through another gateway),
ships code to them and prints what comes back. Run `execwire COMMAND --help`
for the options of a command.
"""

TOP_EXIT_HELP = """\
exit status:
  execwire run: the far code's own (the highest of several gateways'); 2 usage
  error or bad spec, 3 a gateway could not start, 4 --timeout, 130 Ctrl-C,
  141 standard output closed. See `execwire run --help`.
  execwire rsync: 0 copied, 1 copying failed, 2, 3, 4 and 130 as for run.
"""


def _other_keys() -> str:
    shown = {"popen", "ssh", "socket", "via", "python", "chdir", "nice", "id", "timeout"}
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
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"needs a positive number of seconds, not {text!r}")
    return value


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``execwire`` and its subcommands."""
    spec_help = SPEC_HELP.format(other_keys=_other_keys())
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="execwire", description=TOP_DESCRIPTION, formatter_class=raw,
        epilog=_epilog(spec_help, TOP_EXIT_HELP, ENV_HELP))
    parser.add_argument("--version", action="version", version=f"execwire {__version__}")
    add_shim_path_option(parser)
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    many = argparse.ArgumentParser(add_help=False)
    many.add_argument("--on", action="append", default=[], metavar="SPEC",
                      help="a gateway to use: a spec, a comma-separated list of specs or @FILE, a hosts file "
                           "(repeat for more; default: popen); see 'gateway specs' below")
    many.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                      help="terminate a gateway still starting or running SECONDS after it was started; "
                           "exit status 4")
    many.add_argument("--max-parallel", type=_positive_count, metavar="N",
                      help="start at most N gateways at once; the next one starts when one ends "
                           "(default: all at once)")

    run = commands.add_parser(
        "run", parents=[many], formatter_class=raw, help="run Python code on one or many gateways at once",
        usage="execwire run [options] (-c CODE | FILE | -) [ARG ...]",
        description=RUN_DESCRIPTION, epilog=_epilog(RUN_EXAMPLES, spec_help, RUN_EXIT_HELP, ENV_HELP))
    run.add_argument("-c", dest="code", metavar="CODE", help="the code to run, as a string (sys.argv[0] is '-c')")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="FILE | - [ARG ...]",
                     help="a file of Python code to run (- reads the code from standard input) and the "
                          "arguments it gets in sys.argv; after -c CODE, all of them are arguments. "
                          "execwire's options go before; put -- before arguments of -c CODE that start with -")
    run.add_argument("--json", action="store_true",
                     help='one JSON object per line on stdout: {"gateway": ID, "kind": "item", "stdout", '
                          '"stderr" or "exit", "value": ...}; an item JSON cannot hold has "value": null and '
                          'its "repr"; "exit" also has "status", "seconds" (and "error")')
    run.add_argument("--group-output", action="store_true",
                     help="hold each gateway's lines until it ends, then print them together (still prefixed), "
                          "gateway after gateway; default: interleaved as they come")
    run.add_argument("--summary", action=argparse.BooleanOptionalAction, default=None,
                     help="the table of gateways, status, time and exit status at the end, on stderr "
                          "(default: with several gateways, when stderr is a terminal)")
    run.add_argument("-n", "--no-stdin", dest="stdin", action="store_false",
                     help="the far sys.stdin is empty; ours is not read (as ssh -n)")
    run.add_argument("--pdb", action="store_true",
                     help="at an uncaught exception, start pdb (post-mortem) on the far side, on this terminal "
                          "(one gateway's session at a time; without a terminal it says so and does not wait)")

    info = commands.add_parser(
        "info", parents=[many], formatter_class=raw, help="print facts about each gateway's interpreter",
        description=INFO_DESCRIPTION, epilog=_epilog(INFO_EXAMPLES, spec_help, INFO_EXIT_HELP, ENV_HELP))
    info.add_argument("--json", action="store_true", help="one JSON object per gateway and line")

    shell = commands.add_parser(
        "shell", formatter_class=raw, help="an interactive Python prompt on a far interpreter",
        description=SHELL_DESCRIPTION, epilog=_epilog(SHELL_EXAMPLES, spec_help, SHELL_EXIT_HELP, ENV_HELP))
    shell.add_argument("spec", nargs="?", default="popen", metavar="SPEC", help="the gateway (default: popen)")
    rsync = commands.add_parser(
        "rsync", parents=[many], formatter_class=raw, help="copy a directory tree to gateways, sending what differs",
        usage="execwire rsync [options] SRC SPEC:DEST [SPEC:DEST ...]\n"
              "       execwire rsync [options] --on SPEC [--on SPEC ...] SRC DEST",
        description=RSYNC_DESCRIPTION, epilog=_epilog(RSYNC_EXAMPLES, spec_help, RSYNC_EXIT_HELP, ENV_HELP))
    rsync.add_argument("source", metavar="SRC", help="the directory to copy")
    rsync.add_argument("targets", nargs="+", metavar="SPEC:DEST",
                       help="where to copy it: a gateway spec, ':' and the far directory; with --on, DEST alone")
    rsync.add_argument("--delete", action="store_true",
                       help="remove from DEST what SRC does not have (default: leave it)")
    rsync.add_argument("-v", "--verbose", action="store_true", help="print every file whose contents are sent")
    rsync.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar and no line per gateway; errors are still printed")
    for command in (run, info, shell, rsync):
        command.set_defaults(parser=command)
    from .mapping import add_parser as add_map_parser

    add_map_parser(commands, [many], _epilog, spec_help, ENV_HELP)
    return parser
