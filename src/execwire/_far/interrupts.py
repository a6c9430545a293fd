"""Ctrl-C that cannot cut a frame in half or lose an item.

Far-side module: stdlib only, Python >= 3.6.

Python raises KeyboardInterrupt in the main thread between bytecodes, also right
after a C call returned a value and before that value was stored. A thread that
reads frames (the main thread does, when it waits in receive()) must not be
interrupted between taking bytes off the stream and recording them, nor after
taking an item off a queue and before handing it to its caller. So the main
thread marks its receive(), send() and frame reading as stretches
(``critical()`` ... ``done()``). While one runs, the SIGINT handler installed
here only notes the interrupt; done() says whether one came, and the caller
raises it where nothing is lost (receive() keeps the item it took for the next
call). Waits that take nothing (select, poll) are let go with ``allow()``, so
Ctrl-C ends them at once; waits on queues use ``get()``, which looks for a noted
interrupt every SLICE seconds.

The handler replaces Python's default one only (``signal.default_int_handler``),
and outside those stretches behaves exactly like it. A program that installs its
own SIGINT handler keeps it (and the protection is then off). Other threads never
get signals in Python, so they skip all this.
"""

import signal
import threading

try:
    from time import monotonic as _clock
except ImportError:  # pragma: no cover
    from time import time as _clock

from .sync import Empty

SLICE = 0.02  # a wait on a queue in a stretch looks for a noted interrupt this often
_main_ident = threading.main_thread().ident
_get_ident = threading.get_ident
_depth = [0]  # stretches the main thread is in
_pending = [False]  # an interrupt arrived during one
_installed = [False]


def _handler(signum, frame):
    if _depth[0]:
        _pending[0] = True
        return
    raise KeyboardInterrupt


def critical():
    """Enter a stretch that an interrupt must not cut; False (and nothing done) outside the main thread."""
    if _get_ident() != _main_ident:
        return False
    if not _installed[0]:
        _install()
    _depth[0] += 1
    return True


def done():
    """Leave a stretch entered by critical(); True if an interrupt came during it (it is now taken)."""
    _depth[0] -= 1
    if _pending[0] and not _depth[0]:
        _pending[0] = False
        return True
    return False


def allow():
    """Before a wait that takes nothing: let an interrupt end it at once. Pass the result to disallow()."""
    depth = _depth[0]
    if not depth or _get_ident() != _main_ident:
        return 0
    if _pending[0]:  # it came earlier in this stretch: nothing is taken yet, so raise it now
        _pending[0] = False
        raise KeyboardInterrupt
    _depth[0] = 0
    return depth


def disallow(depth):
    """After the wait: back in the stretch."""
    if depth:
        _depth[0] = depth


def get(items, deadline):
    """``items.get()`` until ``deadline`` (None: none), interruptible but never losing what it took."""
    if not _depth[0] or _get_ident() != _main_ident:
        return items.get() if deadline is None else items.get(True, max(deadline - _clock(), 0))
    while True:
        if _pending[0]:
            _pending[0] = False
            raise KeyboardInterrupt
        wait = SLICE if deadline is None else min(SLICE, max(deadline - _clock(), 0))
        try:
            return items.get(True, wait)
        except Empty:
            if deadline is not None and _clock() >= deadline:
                raise


def _install():
    _installed[0] = True
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
    except (ValueError, AttributeError):  # not the main thread of the main interpreter
        pass
