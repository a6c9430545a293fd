"""The functions bench/calls.py runs on far sides and in process pools (stdlib only)."""

import time


def tiny(x):
    return x + 1


def nap(seconds):
    time.sleep(seconds)
    return seconds
