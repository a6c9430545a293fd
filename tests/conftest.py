"""Shared fixtures: fresh gateways and groups that never outlive their test, and process helpers."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import execwire

PYENV = Path("/root/.pyenv/versions")


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie that nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed; return its last verdict."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def find_python(pattern: str) -> str | None:
    """The first pyenv interpreter matching ``pattern`` (e.g. "3.6*"), or None."""
    for candidate in sorted(PYENV.glob(f"{pattern}/bin/python")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def write_wrapper(folder: Path, name: str, body: str) -> Path:
    """A tiny shell script that runs ``body`` and then execs our Python with its arguments."""
    script = folder / name
    script.write_text(f'#!/bin/sh\n{body}\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script


@pytest.fixture
def group() -> Iterator[execwire.Group]:
    """A fresh group, terminated at teardown; its far processes must all be gone then."""
    made = execwire.Group()
    try:
        yield made
    finally:
        pids = [gw._process.pid for gw in made if gw._process is not None]
        made.terminate(timeout=2.0)
        leftover = [pid for pid in pids if not wait_until(lambda pid=pid: pid_gone(pid), 5.0)]
        assert not leftover, f"far processes still running after terminate: {leftover}"


@pytest.fixture
def gw(group: execwire.Group) -> Iterator[execwire.Gateway]:
    """A fresh popen gateway in its own group, exited at teardown."""
    gateway = group.makegateway("popen")
    pid = gateway._process.pid if gateway._process is not None else None
    try:
        yield gateway
    finally:
        gateway.exit()
        if pid is not None:
            assert wait_until(lambda: pid_gone(pid), 5), f"far process {pid} still running after exit()"


@pytest.fixture
def clean_default_group() -> Iterator[execwire.Group]:
    """For tests that use the module-level default group: terminate what they left there."""
    before = set(map(id, execwire.default_group))
    try:
        yield execwire.default_group
    finally:
        for gateway in list(execwire.default_group):
            if id(gateway) not in before:
                gateway.exit()
