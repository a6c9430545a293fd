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
