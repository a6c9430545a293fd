"""The far end of RSync: receives a tree's listing, asks for what differs, writes it.

Far-side module: stdlib only, Python >= 3.6. RSync ships it with remote_exec
for every target; it is not part of the far side a gateway boots with.

Messages, near to far: ("entries", [(relpath, kind, mode, size, mtime_ns, link)])
in batches, then ("listed",); later, for each file asked for, ("same", relpath)
or ("data", relpath, chunk)... ("end", relpath) or ("gone", relpath).
Far to near: ("need", relpath, sha256 or None) for each file that differs,
("listed", count of files asked for), ("ack", relpath) as each is settled, and
("done", {"files": n, "bytes": n, "deleted": n}) at the end. Files are written
to a temporary name beside their place and renamed once complete.
"""

import hashlib
import os
import shutil
import stat

CHUNK = 1 << 20


def file_digest(path):
    """sha256 of the file at ``path``, read in chunks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return digest.digest()
            digest.update(chunk)


def remove(path):
    """Remove a file, a symlink or a whole directory at ``path``."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


class Receiver(object):
    """Brings the tree at ``dest`` in line with the listing the near side sends."""

    def __init__(self, channel, dest, delete):
        self.channel = channel
        self.dest = os.path.abspath(os.path.expanduser(dest))
        self.delete = delete
        self.wanted = {}  # relpath -> (mode, mtime_ns) of files asked for
        self.listed = {}  # relpath of a directory -> names listed in it
        self.links = []
        self.stats = {"files": 0, "bytes": 0, "deleted": 0}

    def local(self, relpath):
        parts = [part for part in relpath.split("/") if part]
        if any(part in (".", "..") for part in parts):
            raise ValueError("rsync: refusing the path %r, which leaves the destination" % (relpath,))
        return os.path.join(self.dest, *parts)

    def run(self):
        while True:
            message = self.channel.receive()
            if message[0] == "listed":
                break
            for entry in message[1]:
                self.entry(*entry)
        self.finish_listing()
        self.channel.send(("listed", len(self.wanted)))
        while self.wanted:
            self.settle(self.channel.receive())
        self.channel.send(("done", self.stats))

    def entry(self, relpath, kind, mode, size, mtime_ns, link):
        path = self.local(relpath)
        if relpath:
            parent, _, name = relpath.rpartition("/")
            self.listed.setdefault(parent, set()).add(name)
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if kind == "d":
            self.listed.setdefault(relpath, set())
            if not relpath and st is not None and not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError("rsync destination %r exists and is not a directory" % (path,))
            if st is not None and not stat.S_ISDIR(st.st_mode):
                remove(path)
                st = None
            if st is None:
                os.makedirs(path)
            os.chmod(path, stat.S_IMODE(mode) | 0o700)  # we must be able to write into it
        elif kind == "l":
            self.links.append((path, link))
        elif st is not None and stat.S_ISREG(st.st_mode) and st.st_size == size:
            if st.st_mtime_ns == mtime_ns:
                if stat.S_IMODE(st.st_mode) != stat.S_IMODE(mode):
                    os.chmod(path, stat.S_IMODE(mode))
                return  # unchanged
            self.ask(relpath, mode, mtime_ns, file_digest(path))
        else:
            if st is not None and not stat.S_ISREG(st.st_mode):
                remove(path)
            self.ask(relpath, mode, mtime_ns, None)

    def ask(self, relpath, mode, mtime_ns, digest):
        self.wanted[relpath] = (mode, mtime_ns)
        self.channel.send(("need", relpath, digest))

    def finish_listing(self):
        for path, target in self.links:
            if os.path.lexists(path):
                remove(path)
            if target.startswith("\0"):  # a link into the tree: point into the destination
                target = self.local(target[1:])
            os.symlink(target, path)
        if self.delete:
            for relpath, names in self.listed.items():
                directory = self.local(relpath)
                for name in os.listdir(directory):
                    if name not in names:
                        remove(os.path.join(directory, name))
                        self.stats["deleted"] += 1

    def settle(self, message):
        kind, relpath = message[0], message[1]
        path = self.local(relpath)
        mode, mtime_ns = self.wanted.pop(relpath)
        if kind == "data":
            self.write(path, message[2], relpath)
        if kind in ("data", "same"):
            os.chmod(path, stat.S_IMODE(mode))
            os.utime(path, ns=(mtime_ns, mtime_ns))
        self.channel.send(("ack", relpath))

    def write(self, path, first, relpath):
        """Write the chunks of one file, ``first`` and those up to its ("end", relpath)."""
        directory, name = os.path.split(path)
        temporary = os.path.join(directory, ".%s.rsync-%d.tmp" % (name, os.getpid()))
        try:
            with open(temporary, "wb") as f:
                chunk = first
                while True:
                    f.write(chunk)
                    self.stats["bytes"] += len(chunk)
                    message = self.channel.receive()
                    if message[0] == "end":
                        break
                    chunk = message[2]
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            os.rename(temporary, path)
            self.stats["files"] += 1
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


def serve(channel):
    try:
        dest, options = channel.receive()
        Receiver(channel, dest, bool(options.get("delete"))).run()
    except EOFError:
        pass  # the near side gave up (its error is raised there) and closed the channel


if __name__ == "__channelexec__":
    serve(channel)  # noqa: F821 - the channel of this remote_exec
