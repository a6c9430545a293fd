"""Small thread-synchronisation pieces the channels and gateways share.

Far-side module: stdlib only, Python >= 3.6.

ItemQueue is the C SimpleQueue where there is one, else DequeQueue; Flag is
a one-way event that wakes queues, so a thread waiting for it waits the way
receivers do and reads frames meanwhile (see BaseGateway._wait_flag).
"""

import threading
import time

try:
    from _queue import Empty  # 3.7+: a C queue, cheapest hand-off
    from _queue import SimpleQueue as ItemQueue
except ImportError:  # Python 3.6 and PyPy: see DequeQueue below
    from queue import Empty

    ItemQueue = None

try:
    _clock = time.monotonic
except AttributeError:  # pragma: no cover
    _clock = time.time


class Flag(object):
    """A one-way event (set once, never cleared) that puts True into each queue waiting for it."""

    __slots__ = ("_set", "_waiters", "_lock")

    def __init__(self):
        self._set = False
        self._waiters = None
        self._lock = _new_lock()

    def is_set(self):
        return self._set

    def set(self):
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters or (), None
        for queue in waiters:
            queue.put(True)

    def add_queue(self, queue):
        """Put True into ``queue`` when set; False if it is set already."""
        with self._lock:
            if self._set:
                return False
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(queue)
            return True

    def remove_queue(self, queue):
        with self._lock:
            if self._waiters is not None and queue in self._waiters:
                self._waiters.remove(queue)


_new_lock = threading.Lock


class DequeQueue(object):
    """What execwire uses of queue.SimpleQueue, for Pythons without it (3.6, PyPy).

    queue.Queue would do, but costs several times more per item: on Python 3.6
    it made streaming small items four times slower.
    """

    def __init__(self):
        import collections

        self._items = collections.deque()
        self._getters = collections.deque()  # a held lock per blocked get(), released by put()
        self._lock = _new_lock()

    def put(self, item):
        with self._lock:
            self._items.append(item)
            if self._getters:
                self._getters.popleft().release()

    def get(self, block=True, timeout=None):
        deadline = None if timeout is None else _clock() + timeout
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if not block:
                    raise Empty
                waiter = _new_lock()
                waiter.acquire()
                self._getters.append(waiter)
            if deadline is None:
                waiter.acquire()
                continue  # woken by a put(); another getter may have been quicker
            remaining = deadline - _clock()
            if remaining > 0 and waiter.acquire(True, remaining):
                continue
            with self._lock:
                try:
                    self._getters.remove(waiter)
                except ValueError:  # a put() released it just now: its item is there
                    pass
                if self._items:
                    return self._items.popleft()
            raise Empty

    def empty(self):
        return not self._items

    def qsize(self):
        return len(self._items)


if ItemQueue is None:
    ItemQueue = DequeQueue
