"""Ctrl-C that cannot cut a frame in half.

Far-side module: stdlib only, Python >= 3.6.

Python raises KeyboardInterrupt in the main thread between any two bytecodes.
A thread that reads frames (the main thread may, when it waits in receive()) or
writes one must not be interrupted between taking bytes off the stream and
recording them, or half-way through a frame: the stream would be corrupt. So
the main thread marks those stretches with ``critical()`` / ``done()``; while one
runs, the SIGINT handler installed here only notes the interrupt, and done()
raises it the moment the stretch ends, with everything consistent. Waiting
(for data, for credit, for an item) is never in such a stretch, so Ctrl-C
interrupts a wait at once. A second Ctrl-C during the same stretch raises at
once (a write that the peer never takes would otherwise hold it forever); the
writer then marks its stream unusable.

The handler replaces Python's default one only (``signal.default_int_handler``),
and behaves exactly like it outside those stretches. A program that installs
its own SIGINT handler keeps it, and its handler runs as it would anyway.
Other threads never get signals in Python, so they skip all this.
"""

import signal
import threading

_main_ident = threading.main_thread().ident
_depth = [0]  # stretches the main thread is in
_pending = [False]  # an interrupt arrived during one
_state = {"installed": False}


def _handler(signum, frame):
    if _depth[0] and not _pending[0]:
        _pending[0] = True
        return
    _pending[0] = False
    raise KeyboardInterrupt


def critical():
    """Enter a stretch that an interrupt must not cut (no-op outside the main thread); True if entered."""
    if threading.get_ident() != _main_ident:
        return False
    if not _state["installed"]:
        _install()
    _depth[0] += 1
    return True


def done():
    """Leave the stretch entered by critical() (only if it returned True); raise a deferred interrupt."""
    _depth[0] -= 1
    if _pending[0] and not _depth[0]:
        _pending[0] = False
        raise KeyboardInterrupt


def _install():
    _state["installed"] = True
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
    except (ValueError, AttributeError):  # not the main thread of the main interpreter
        pass
