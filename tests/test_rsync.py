"""RSync and gw.rsync: a tree arrives whole, and only what differs travels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import execwire
from execwire.rsync import CHUNK, RSync


class Recording(RSync):
    """An RSync that remembers which files it sent the contents of."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[str] = []

    def _report_send_file(self, gateway: execwire.Gateway, modified_rel_path: str) -> None:
        self.sent.append(modified_rel_path)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    (root / "pkg" / "deep").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "script.sh").chmod(0o750)
    (root / "rel").symlink_to("pkg/mod.py")
    (root / "abs").symlink_to(root / "pkg" / "mod.py")
    (root / "outside").symlink_to("/etc/hostname")
    return root


def sync(gw: execwire.Gateway, source: Path, dest: Path, **options: object) -> Recording:
    rsync = Recording(source)
    rsync.add_target(gw, dest, **options)
    rsync.send()
    return rsync


def test_a_tree_arrives_with_modes_times_and_symlinks(gw, source, tmp_path):
    dest = tmp_path / "dest"
    rsync = sync(gw, source, dest)
    assert sorted(rsync.sent) == ["pkg/deep/data.bin", "pkg/mod.py", "script.sh"]
    assert (dest / "pkg" / "deep" / "data.bin").read_bytes() == (source / "pkg" / "deep" / "data.bin").read_bytes()
    assert (dest / "script.sh").stat().st_mode & 0o777 == 0o750
    assert (dest / "pkg" / "mod.py").stat().st_mtime_ns == (source / "pkg" / "mod.py").stat().st_mtime_ns
    assert os.readlink(dest / "rel") == "pkg/mod.py"  # relative links as they are
    assert os.readlink(dest / "abs") == str(dest / "pkg" / "mod.py")  # absolute links into the tree: into dest
    assert os.readlink(dest / "outside") == "/etc/hostname"


def test_unchanged_files_are_not_sent_again_and_a_touched_one_is_checked_by_hash(gw, source, tmp_path):
    dest = tmp_path / "dest"
    sync(gw, source, dest)
    assert sync(gw, source, dest).sent == []  # same size and time: nothing travels
    os.utime(dest / "pkg" / "mod.py", ns=(0, 0))  # another time, same contents: hashed there, not sent
    assert sync(gw, source, dest).sent == []
    assert (dest / "pkg" / "mod.py").stat().st_mtime_ns == (source / "pkg" / "mod.py").stat().st_mtime_ns
    (source / "pkg" / "mod.py").write_text("x = 2\n")  # same size, new contents
    assert sync(gw, source, dest).sent == ["pkg/mod.py"]
    assert (dest / "pkg" / "mod.py").read_text() == "x = 2\n"
    (source / "script.sh").chmod(0o700)  # only the mode changed
    assert sync(gw, source, dest).sent == []
    assert (dest / "script.sh").stat().st_mode & 0o777 == 0o700


def test_delete_removes_what_the_source_lacks_and_only_then(gw, source, tmp_path):
    dest = tmp_path / "dest"
    sync(gw, source, dest)
    (dest / "stale.txt").write_text("old")
    (dest / "pkg" / "stale_dir").mkdir()
    sync(gw, source, dest)
    assert (dest / "stale.txt").exists()
    sync(gw, source, dest, delete=True)
    assert not (dest / "stale.txt").exists() and not (dest / "pkg" / "stale_dir").exists()
    assert (dest / "pkg" / "mod.py").exists()


def test_several_targets_at_once_with_filter_callbacks_and_progress(group, source, tmp_path):
    gw1 = group.makegateway("popen")
    gw2 = group.makegateway(f"popen//chdir={tmp_path / 'far2'}")
    (source / "big.bin").write_bytes(os.urandom(3 * CHUNK + 17))
    events: list[tuple[str, int]] = []
    progress: list[tuple[str, int, int]] = []
    finished: list[str] = []

    class NoShell(RSync):
        def filter(self, path: str) -> bool:
            return not path.endswith(".sh")

    rsync = NoShell(source, callback=lambda kind, size, channel: events.append((kind, size)),
                    progress=lambda p: progress.append((p.gateway.id, p.bytes_sent, p.bytes_total)))
    rsync.add_target(gw1, tmp_path / "one", finishedcallback=lambda: finished.append("one"))
    rsync.add_target(gw2, "two", finishedcallback=lambda: finished.append("two"))
    rsync.send()
    assert sorted(finished) == ["one", "two"]
    for dest in (tmp_path / "one", tmp_path / "far2" / "two"):
        assert (dest / "big.bin").read_bytes() == (source / "big.bin").read_bytes()
        assert not (dest / "script.sh").exists()
    total = (source / "big.bin").stat().st_size + (source / "pkg" / "mod.py").stat().st_size + \
        (source / "pkg" / "deep" / "data.bin").stat().st_size
    assert events.count(("list", total)) == 2
    mine = [sent for gateway_id, sent, _ in progress if gateway_id == gw1.id]
    assert mine == sorted(mine) and mine[-1] == total
    assert len({sent for sent in mine if sent}) >= 4  # the big file went in chunks
    with pytest.raises(OSError, match="no targets"):
        rsync.send()


def test_gw_rsync_and_errors_that_say_what_went_wrong(gw, source, tmp_path):
    gw.rsync(source, tmp_path / "dest")
    assert (tmp_path / "dest" / "pkg" / "mod.py").read_text() == "x = 1\n"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should go")
    with pytest.raises(execwire.RemoteError):
        gw.rsync(source, blocker / "dest")
    with pytest.raises(execwire.RemoteError, match="exists and is not a directory"):  # not replaced by a tree
        gw.rsync(source, blocker)
    assert blocker.read_text() == "a file where a directory should go"
    with pytest.raises(TypeError, match="unknown option"):
        RSync(source).add_target(gw, tmp_path / "x", recursive=True)
    with pytest.raises(NotADirectoryError):
        gw.rsync(source / "script.sh", tmp_path / "y")
