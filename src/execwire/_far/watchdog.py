"""The far side's watchdog: a tiny process that ends the far side once its controller has hung up.

Far-side module: stdlib only, Python >= 3.6.

Threads of the far Python cannot be relied on to notice that the controller is
gone: code holding the interpreter lock in C (``sum(range(10**14))``) keeps
them from running, and a main thread blocked writing to a full pipe never gets
to look. So at boot, before any thread exists, the far process forks a
watchdog that runs no Python code of ours once it sleeps: one poll() on two
things, the hang-up of the protocol's input (the controller closed it or died;
for ssh, sudo, containers and via the same hang-up arrives through the tool in
between) and a pipe whose only writer is the far process (it ends when the far
process ends). The far process leads a process group of its own, which its
subprocesses join unless they start a session of their own:

- the far process ended: the watchdog kills the group at once (whatever the
  shipped code started dies with it) and, being a member, itself;
- the input hung up: the far process gets GRACE seconds to end by itself (after
  a TERMINATE it does within milliseconds; without one, running code first gets
  its second to finish); then the group, far process included, gets SIGKILL,
  which nothing can ignore.

Where the far process cannot lead a group of its own, only it is killed,
never a group that holds others. The watchdog is a child of the far process
(forked once: the far process waits for nothing), and it ends after it; shipped
code only meets it if it waits for "any child" while having none of its own.
"""

import os
import select
import signal
import sys

GRACE = 1.5  # seconds the far process has to end by itself after the controller hung up (it lets running
# code finish for up to 1 s when the controller went away without a word: see execution.FINISH_GRACE)
# poll() reports a pipe's hang-up without being asked (events 0); a socket's peer shutting down its side
# is POLLRDHUP, which some Pythons (PyPy) do not name
_RDHUP = getattr(select, "POLLRDHUP", 0x2000 if sys.platform.startswith("linux") else 0)


def start(input_fd):
    """Fork the watchdog of this process, watching ``input_fd`` (call before any thread starts).

    Returns False where there can be none (no fork or poll, or fork failed).
    """
    if not hasattr(os, "fork") or not hasattr(select, "poll"):
        return False
    far = os.getpid()
    # the group to end: ours alone, never one that holds others (a container runtime's, say)
    group = far if _lead_own_process_group() else None
    alive_read, alive_write = os.pipe()  # this process holds the write end until it ends
    try:
        pid = os.fork()
    except OSError:
        os.close(alive_read)
        os.close(alive_write)
        return False
    if pid == 0:
        _watch(input_fd, alive_read, far, group)  # never returns
    os.close(alive_read)
    return True


def _lead_own_process_group():
    """Make this process the leader of a process group of its own (its subprocesses join it); True if it is."""
    try:
        if os.getpgrp() != os.getpid():
            os.setpgid(0, 0)  # fails only for a session leader, which leads its group already
        return os.getpgrp() == os.getpid()
    except OSError:
        return False


def _watch(input_fd, alive_fd, far, group):
    """The watchdog's whole life: wait, kill the group (or else the far process alone), exit."""
    try:
        _close_all_but(input_fd, alive_fd)  # first: until then the controller cannot see the far process end
        import gc

        gc.disable()  # a collection would touch (and so copy) every object page shared with the far process
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_IGN)  # what is sent to the group is for the far process
        os.chdir("/")  # keep no directory busy
        poller = select.poll()
        poller.register(alive_fd, 0)
        poller.register(input_fd, _RDHUP if _is_socket(input_fd) else 0)
        hung_up = far_ended = False
        while True:
            try:
                events = poller.poll(GRACE * 1000 if hung_up else None)
            except InterruptedError:
                continue
            if not events:  # the grace is over
                break
            if any(fd == alive_fd for fd, _ in events):
                far_ended = True
                break
            if not hung_up:
                hung_up = True
                poller.unregister(input_fd)
        if group is not None:
            os.killpg(group, signal.SIGKILL)  # the far process, what it started, and this watchdog
        elif not far_ended:
            os.kill(far, signal.SIGKILL)  # still running (its pid cannot be another's yet)
    finally:
        os._exit(0)


def _is_socket(fd):
    import stat

    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def _close_all_but(*keep):
    """Close every other descriptor: above all the protocol's output, whose reader must see the
    far process's end when it comes, not the watchdog's."""
    try:
        fds = [int(name) for name in os.listdir("/dev/fd")]
    except (OSError, ValueError):
        fds = list(range(256))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
