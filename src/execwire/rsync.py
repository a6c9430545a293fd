"""RSync: copy a directory tree to one or more gateways, sending only what differs.

The far end (``_rsync_far``, shipped with each target) compares the listing
with what it has: a file of the same size and modification time is taken as
unchanged; one of the same size but another time is hashed there and sent only
if the hash differs. Files travel in chunks of 1 MiB, so no file is ever held
whole in memory on either side, and channel flow control keeps a slow target
from piling chunks up. Modes, modification times and symlinks are kept;
``delete=True`` removes what the source does not have.

The API is execnet's (``filter``, ``add_target``, ``send``, the ``callback``
of ("list" | "ack", size, channel) and the overridable ``_report_send_file``),
plus ``progress`` for a running count of bytes.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _rsync_far
from ._far.channel import Channel
from .gateway import Gateway

if TYPE_CHECKING:
    from ._far.channel import Item

CHUNK = _rsync_far.CHUNK
BATCH = 500  # listing entries per message
_END = object()


@dataclass
class Progress:
    """How far one target has come: bytes and files sent to it of those it asked for."""

    gateway: Gateway
    path: str  # the file being sent ("" before the first)
    bytes_sent: int
    bytes_total: int
    files_done: int
    files_total: int


@dataclass
class _Target:
    gateway: Gateway
    dest: str
    channel: Channel
    finished: Callable[[], None] | None
    sizes: dict[str, int]  # relpath -> size of the files it asked for
    asked: list[tuple[str, bytes | None]]  # (relpath, far digest) of files asked for, not yet sent
    progress: Progress | None = None


class RSync:
    """Send the tree at ``sourcedir`` to every target added, in one pass over the tree."""

    def __init__(self, sourcedir: str | os.PathLike[str], callback: Callable[[str, int, Channel], Any] | None = None,
                 verbose: bool = False, progress: Callable[[Progress], Any] | None = None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._sourcedir = str(sourcedir)
        self._verbose = verbose
        self._callback = callback
        self._progress = progress
        self._targets: dict[Channel, _Target] = {}
        self._events: queue.Queue[tuple[Channel, Any]] = queue.Queue()
        self._digests: dict[str, bytes] = {}
        # what each target's far end did, by gateway id, once it is done: files written, bytes, deleted
        self.stats: dict[str, dict[str, int]] = {}

    @property
    def _channels(self) -> dict[Channel, Callable[[], None] | None]:
        """The channels of the targets still to serve (execnet name)."""
        return {channel: target.finished for channel, target in self._targets.items()}

    def filter(self, path: str) -> bool:
        """Whether to send ``path`` (a path inside the source tree); override to leave things out."""
        return True

    def add_target(self, gateway: Gateway, destdir: str | os.PathLike[str],
                   finishedcallback: Callable[[], None] | None = None, **options: Any) -> None:
        """Send to ``destdir`` on ``gateway`` (relative to its working directory) at the next send().

        ``delete=True`` removes there what the source does not have.
        ``finishedcallback()`` is called once that target is up to date.
        """
        unknown = set(options) - {"delete"}
        if unknown:
            raise TypeError(f"add_target got unknown option(s) {', '.join(sorted(unknown))}; the only one is delete")
        channel = gateway.remote_exec(_rsync_far)
        events = self._events

        def deliver(item: Any, channel: Channel = channel) -> None:
            events.put((channel, item))

        channel.setcallback(deliver, endmarker=_END)
        channel.send((str(destdir), {"delete": bool(options.get("delete"))}))
        self._targets[channel] = _Target(gateway, str(destdir), channel, finishedcallback, {}, [])

    def send(self, raises: bool = True) -> None:
        """Bring every target up to date; targets are then forgotten (add them again for another send)."""
        if not self._targets:
            if raises:
                raise OSError("no targets available, maybe you are trying call send() twice?")
            return
        self._sourcedir = os.path.dirname(os.path.join(self._sourcedir, "x"))  # no trailing separator
        self._digests = {}
        try:
            batch: list[tuple[str, str, int, int, int, str | None]] = []
            for entry in self._walk():
                batch.append(entry)
                if len(batch) >= BATCH:
                    self._broadcast(("entries", batch))
                    batch = []
            self._broadcast(("entries", batch))
            self._broadcast(("listed",))
            while self._targets:
                channel, item = self._events.get()
                if channel in self._targets:
                    self._handle(self._targets[channel], item)
        finally:
            for target in list(self._targets.values()):
                target.channel.close()
            self._targets.clear()

    # -- the source tree -------------------------------------------------------
    def _walk(self) -> Any:
        """(relpath, kind, mode, size, mtime_ns, link) for the root and everything the filter lets through."""
        root = self._sourcedir
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"rsync source {root!r} is not a directory")
        yield ("", "d", st.st_mode, 0, 0, None)
        yield from self._walk_directory(root, "")

    def _walk_directory(self, directory: str, relative: str) -> Any:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return
        for name in names:
            path = os.path.join(directory, name)
            if not self.filter(path):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone since it was listed
            relpath = f"{relative}/{name}" if relative else name
            if stat.S_ISDIR(st.st_mode):
                yield (relpath, "d", st.st_mode, 0, 0, None)
                yield from self._walk_directory(path, relpath)
            elif stat.S_ISREG(st.st_mode):
                yield (relpath, "f", st.st_mode, st.st_size, st.st_mtime_ns, None)
            elif stat.S_ISLNK(st.st_mode):
                yield (relpath, "l", st.st_mode, 0, 0, self._link_target(path))
            else:
                raise ValueError(f"cannot sync {path!r}: neither a file, a directory nor a symlink")

    def _link_target(self, path: str) -> str:
        """The link as is, or (marked by a leading NUL) its place in the tree if it is absolute and inside it."""
        target = os.readlink(path)
        if os.path.isabs(target):
            inside = os.path.relpath(target, self._sourcedir)
            if inside != os.curdir and not inside.startswith(os.pardir):
                return "\0" + inside.replace(os.sep, "/")
        return target

    # -- the conversation --------------------------------------------------------
    def _broadcast(self, message: Item) -> None:
        for target in list(self._targets.values()):
            target.channel.send(message)

    def _handle(self, target: _Target, item: Any) -> None:
        if item is _END:
            del self._targets[target.channel]
            target.channel.waitclose()  # raises the far error, if that is why it ended
            raise OSError(f"rsync to {target.gateway.id!r} ended early: connection unexpectedly closed")
        kind = item[0]
        if kind == "need":  # files are sent once the listing is done, so that the totals are known
            relpath = item[1]
            try:
                target.sizes[relpath] = os.stat(os.path.join(self._sourcedir, *relpath.split("/"))).st_size
            except OSError:
                target.sizes[relpath] = 0
            target.asked.append((relpath, item[2]))
        elif kind == "listed":
            total = sum(target.sizes.values())
            target.progress = Progress(target.gateway, "", 0, total, 0, item[1])
            if self._callback is not None:
                self._callback("list", total, target.channel)
            self._report_progress(target)
            for relpath, digest in target.asked:
                self._send_file(target, relpath, digest)
            target.asked = []
        elif kind == "ack":
            if self._callback is not None:
                self._callback("ack", target.sizes.get(item[1], 0), target.channel)
            if target.progress is not None:
                target.progress.files_done += 1
                self._report_progress(target)
        elif kind == "done":
            del self._targets[target.channel]
            self.stats[target.gateway.id] = dict(item[1])
            if target.finished is not None:
                target.finished()
            target.channel.waitclose()
        else:
            raise OSError(f"rsync to {target.gateway.id!r}: unexpected message {kind!r} from the far side")

    def _digest(self, relpath: str, path: str) -> bytes | None:
        if relpath not in self._digests:
            try:
                self._digests[relpath] = _rsync_far.file_digest(path)
            except OSError:
                return None
        return self._digests[relpath]

    def _send_file(self, target: _Target, relpath: str, far_digest: bytes | None) -> None:
        path = os.path.join(self._sourcedir, *relpath.split("/"))
        channel = target.channel
        if far_digest is not None and self._digest(relpath, path) == far_digest:
            channel.send(("same", relpath))
            return
        try:
            f = open(path, "rb")
        except OSError:
            channel.send(("gone", relpath))
            return
        with f:
            self._report_send_file(target.gateway, relpath)
            hasher = hashlib.sha256()
            first = True
            while True:
                chunk = f.read(CHUNK)
                if chunk or first:
                    channel.send(("data", relpath, chunk))
                    hasher.update(chunk)
                    first = False
                    if target.progress is not None:
                        target.progress.path = relpath
                        target.progress.bytes_sent += len(chunk)
                        self._report_progress(target)
                if not chunk:
                    break
            self._digests[relpath] = hasher.digest()
        channel.send(("end", relpath))

    def _report_progress(self, target: _Target) -> None:
        if self._progress is not None and target.progress is not None:
            self._progress(target.progress)

    def _report_send_file(self, gateway: Gateway, modified_rel_path: str) -> None:
        """Called for every file whose contents are sent; prints it when verbose (override to change)."""
        if self._verbose:
            print(f"{gateway} <= {modified_rel_path}")
