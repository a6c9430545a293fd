"""Functions that tests call on far sides by reference (stdlib only: far Pythons import it by forwarding)."""

import os
import time


def add(a, b=0):
    return a + b


def far_pid():
    return os.getpid()


def fail(message):
    raise ValueError(message)


def unsendable():
    return {"fine": [1, 2], "bad": [object()]}


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def outer():
    scale = 3

    def inner(x):
        return x * scale

    return inner


class Tools:
    factor = 10

    @staticmethod
    def twice(x):
        return 2 * x

    @classmethod
    def scaled(cls, x):
        return cls.factor * x

    def method(self):
        return self


def square(x):
    return x * x


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def die_once(marker, value):
    """Kill this far process the first time (marker is a file path that does not exist yet)."""
    if not os.path.exists(marker):
        with open(marker, "w") as file:
            file.write(str(os.getpid()))
        os.kill(os.getpid(), 9)
    return value


def log_and_level(what):
    import logging

    log = logging.getLogger("far.calls")
    log.debug("%s debug", what)
    log.info("%s info", what)
    return logging.getLogger().level
