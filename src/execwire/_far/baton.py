"""The reading baton: which thread reads a gateway's frames, and how it passes on.

Far-side module: stdlib only, Python >= 3.6.

Whoever waits for an item reads the frames itself (its reply then needs no
thread hand-off); a reader thread reads what nobody else is reading. The baton
says who may. Its rules, each with a test in tests/test_concurrency.py:

1. One reader at a time: only the thread holding ``lock`` reads bytes or parses
   frames (and looks at the protocol core's read buffer).
2. The reader thread never blocks on ``lock``: it only tries it, and it stays
   away for LINGER seconds after a receiver gave the baton back, so it does not
   take the baton between two items of a receiver in a loop.
3. A receiver that finds the baton taken puts its queue in ``wanted``; it gets
   TAKE in that queue when the holder leaves without an item of its own, or when
   the reader thread finds the baton free. A holder that got its item keeps
   reading for itself until it leaves.
4. A holder that leaves while the reader thread sleeps waiting for it (a long
   hold: an idle worker waiting for work) wakes it; so an idle gateway sleeps.
5. The end of the connection wakes the reader thread at once (``wake()``), and
   the end markers put into every queue wake every receiver: nobody waits for a
   baton that nobody will hand over.
"""

import threading
import time

try:
    _clock = time.monotonic
except AttributeError:  # pragma: no cover
    _clock = time.time

TAKE = object()  # put in a waiting receiver's queue: the baton is free, take it
LINGER = 0.002  # seconds the reader thread leaves reading to receivers after one was active
LONG_HOLD = 0.02  # a baton held this long is held by someone waiting for a slow answer...
MAX_DOZE = 1.0  # ...and the reader sleeps until it is let go (this long at most)


class Baton(object):
    """The right to read a gateway's frames (see the rules above)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.wanted = []  # queues of receivers waiting for the baton, oldest first
        self.left_at = 0.0  # when a receiver last gave the baton back
        self.taken_at = 0.0  # when a receiver or idle worker last took it
        self.dozing = False  # the reader thread sleeps until the holder leaves
        self._alarm = threading.Lock()  # released to cut the reader thread's sleep short
        self._alarm.acquire()

    # -- receivers and idle workers ---------------------------------------------
    def took(self):
        """The caller took ``lock`` to read until it has what it waits for."""
        self.taken_at = _clock()

    def leave(self, empty_handed):
        """The holder gives the baton back (``empty_handed``: without an item of its own)."""
        self.lock.release()
        self.left_at = _clock()
        if self.dozing:  # it waits for us to leave: it is the reader again after LINGER
            self.wake()
        if empty_handed and self.wanted:  # let a waiter read
            self.hand_over()

    def ask(self, queue):
        """Be woken (TAKE in ``queue``) when the baton is free; False if it is free already (then taken)."""
        self.wanted.append(queue)
        if self.lock.acquire(False):  # given back before we asked: nobody would wake us
            self.withdraw(queue)
            return False
        return True

    def withdraw(self, queue):
        try:
            self.wanted.remove(queue)
        except ValueError:  # already taken off by the thread that woke us
            pass

    def hand_over(self):
        """Wake the oldest receiver waiting for the baton (the caller just gave it back)."""
        try:
            queue = self.wanted.pop(0)
        except IndexError:  # another thread woke it first
            return
        queue.put(TAKE)

    # -- the reader thread --------------------------------------------------------
    def receiver_active(self):
        """Sleep and say True while a receiver gave the baton back less than LINGER ago."""
        idle = _clock() - self.left_at
        if 0 <= idle < LINGER:
            self._alarm.acquire(True, LINGER - idle)  # a sleep that wake() cuts short
            return True
        return False

    def hand_over_if_wanted(self):
        """The reader thread found the baton free or gave it back: a waiting receiver reads now."""
        if self.wanted:
            self.left_at = _clock()  # the woken receiver reads from now on
            self.hand_over()
            return True
        return False

    def wait_for_holder(self):
        """The baton is taken: look again in LINGER, or when its holder leaves if it holds it long.

        A receiver in a tight loop holds the baton for short spells, so looking again
        soon costs little; a receiver waiting for a slow answer (or an idle exec
        worker waiting for work) holds it for long, and then the reader sleeps
        until that holder wakes it on leaving, so an idle gateway does not poll.
        """
        if _clock() - self.taken_at < LONG_HOLD:
            self._alarm.acquire(True, LINGER)
            return
        self.dozing = True
        try:
            if self.lock.locked():  # the holder looks at dozing after it let go
                self._alarm.acquire(True, MAX_DOZE)
        finally:
            self.dozing = False

    def wake(self):
        """Cut the reader thread's sleep short."""
        try:
            self._alarm.release()
        except RuntimeError:  # released already
            pass
