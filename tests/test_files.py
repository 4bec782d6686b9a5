"""Atomic outputs: nothing rnnonnx did not write is replaced, and a failure leaves nothing behind."""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnonnx import files
from rnnonnx.bundle import is_bundle_dir
from rnnonnx.errors import OutputError
from rnnonnx.files import atomic_directory, atomic_file, exchange, read_json_marker
from rnnonnx.run import is_run_dir

LINUX = sys.platform.startswith("linux")


def mine(path: Path) -> bool:
    """The caller's test for "a directory of my kind" in these tests."""
    return (path / "mine.txt").is_file()


def make_mine(path: Path, text: str = "old") -> Path:
    path.mkdir(parents=True)
    (path / "mine.txt").write_text(text)
    return path


def write_dir(target: Path | str, text: str = "new", **options) -> None:
    with atomic_directory(target, replaces=mine, kind="thing", **options) as tmp:
        (tmp / "mine.txt").write_text(text)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def no_exchange(monkeypatch):
    """Force the two-rename fallback, as on a system or file system without RENAME_EXCHANGE:
    renameat2 fails with ENOSYS, as an old kernel answers."""
    calls = []

    def renameat2(*args):
        calls.append(args)
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(files, "_renameat2", lambda: renameat2)
    return calls


# --- directories ---------------------------------------------------------------------------------


def test_new_directory_appears_complete_with_the_usual_mode(tmp_path, umask_022):
    write_dir(tmp_path / "a" / "out")
    assert (tmp_path / "a" / "out" / "mine.txt").read_text() == "new"
    assert os.listdir(tmp_path / "a") == ["out"]
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "out").st_mode) == 0o755


def test_replaces_a_directory_of_its_own_kind_whole(tmp_path):
    make_mine(tmp_path / "out")
    (tmp_path / "out" / "stale.txt").write_text("from the old run")
    write_dir(tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["mine.txt"]
    assert (tmp_path / "out" / "mine.txt").read_text() == "new"
    assert os.listdir(tmp_path) == ["out"]


def test_an_empty_directory_may_be_used(tmp_path):
    (tmp_path / "out").mkdir()
    write_dir(tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "new"


@pytest.mark.parametrize("existing", ["foreign directory", "file", "symlink to mine", "other kind"])
def test_refuses_what_it_did_not_write(tmp_path, existing):
    target = tmp_path / "out"
    if existing == "foreign directory":
        target.mkdir()
        (target / "reviews.csv").write_text("text,label\n")
    elif existing == "file":
        target.write_text("user data")
    elif existing == "symlink to mine":
        make_mine(tmp_path / "real")
        target.symlink_to(tmp_path / "real")
    else:
        make_mine(target)
    before = sorted(os.listdir(tmp_path))
    replaces = (lambda path: False) if existing == "other kind" else mine
    with pytest.raises(OutputError) as exc:
        with atomic_directory(target, replaces=replaces, kind="thing") as tmp:
            (tmp / "mine.txt").write_text("new")
    assert str(target) in one_line(exc)
    assert sorted(os.listdir(tmp_path)) == before
    if existing == "foreign directory":
        assert (target / "reviews.csv").read_text() == "text,label\n"
    elif existing == "file":
        assert target.read_text() == "user data"
    elif existing == "symlink to mine":
        assert target.is_symlink() and (tmp_path / "real" / "mine.txt").read_text() == "old"
    else:
        assert (target / "mine.txt").read_text() == "old"


def test_without_a_kind_only_new_or_empty_directories(tmp_path):
    make_mine(tmp_path / "out")
    with pytest.raises(OutputError):
        with atomic_directory(tmp_path / "out"):
            pass
    assert (tmp_path / "out" / "mine.txt").read_text() == "old"


def test_never_replaces_an_input_or_the_current_directory(tmp_path, monkeypatch):
    run = make_mine(tmp_path / "top" / "run")
    make_mine(tmp_path / "top" / "other")
    (tmp_path / "top" / "mine.txt").write_text("top is of my kind too")
    data = run / "data.csv"
    data.write_text("text,label\n")
    (tmp_path / "link.csv").symlink_to(data)
    cases = [(run, [data]), (run, [run]), (tmp_path / "top", [data]), (run, [tmp_path / "link.csv"])]
    for target, inputs in cases:
        with pytest.raises(OutputError) as exc:
            write_dir(target, inputs=inputs)
        assert "input" in one_line(exc)
    monkeypatch.chdir(run)
    for target in (".", "..", str(run)):
        with pytest.raises(OutputError) as exc:
            write_dir(target)
        assert "current directory" in one_line(exc)
    assert data.read_text() == "text,label\n" and (run / "mine.txt").read_text() == "old"
    write_dir(tmp_path / "top" / "other", inputs=[data])  # a sibling of the input is fine
    assert (tmp_path / "top" / "other" / "mine.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path / "top")) == ["mine.txt", "other", "run"]


def test_an_output_that_cannot_be_created_is_refused_before_the_work(tmp_path):
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(OutputError) as exc:
        files.check_output_directory(tmp_path / "notes.txt" / "run" / "sub", mine, "thing")
    assert "notes.txt is not a writable directory" in one_line(exc)
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_leaves_the_old_directory_and_nothing_else(tmp_path, error):
    make_mine(tmp_path / "out")
    with pytest.raises(error):
        with atomic_directory(tmp_path / "out", replaces=mine) as tmp:
            (tmp / "mine.txt").write_text("half")
            raise error()
    assert (tmp_path / "out" / "mine.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    make_mine(tmp_path / "out")
    with pytest.raises(OutputError) as exc:
        with atomic_directory(tmp_path / "out", replaces=mine):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.strerror(errno.ENOSPC) in one_line(exc)
    assert os.listdir(tmp_path) == ["out"] and (tmp_path / "out" / "mine.txt").read_text() == "old"


def test_exchange_swaps_two_directories_in_one_step(tmp_path):
    a, b = make_mine(tmp_path / "a", "A"), make_mine(tmp_path / "b", "B")
    if not exchange(a, b):
        pytest.skip("this system or file system has no renameat2(RENAME_EXCHANGE)")
    assert (a / "mine.txt").read_text() == "B" and (b / "mine.txt").read_text() == "A"
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "missing")


def test_on_linux_the_swap_is_one_atomic_exchange(tmp_path, monkeypatch):
    """No rename happens while an existing directory is replaced, so no instant lacks it; an
    interruption right after the swap leaves the new directory complete and the old one gone."""
    if not LINUX or not exchange(make_mine(tmp_path / "a"), make_mine(tmp_path / "b")):
        pytest.skip("needs renameat2(RENAME_EXCHANGE)")
    make_mine(tmp_path / "probe" / "out")

    def forbidden(*args):
        raise AssertionError("renamed instead of exchanging")

    real_rmtree = shutil.rmtree
    interrupted = []

    def interrupt_once(path, *args, **kwargs):
        if not interrupted:
            interrupted.append(path)
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", forbidden)
        patch.setattr(os, "rename", forbidden)
        patch.setattr(shutil, "rmtree", interrupt_once)
        with pytest.raises(KeyboardInterrupt):
            write_dir(tmp_path / "probe" / "out")
    assert interrupted, "the old tree was not removed after the swap"
    assert (tmp_path / "probe" / "out" / "mine.txt").read_text() == "new"
    assert os.listdir(tmp_path / "probe") == ["out"]


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EINVAL])
def test_falls_back_to_two_renames_without_exchange(tmp_path, monkeypatch, code):
    def renameat2(*args):
        ctypes.set_errno(code)
        return -1

    monkeypatch.setattr(files, "_renameat2", lambda: renameat2)
    a, b = make_mine(tmp_path / "a", "A"), make_mine(tmp_path / "b", "B")
    assert exchange(a, b) is False and (a / "mine.txt").read_text() == "A"
    write_dir(a)
    assert (a / "mine.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_fallback_interrupted_between_its_renames_puts_the_old_directory_back(tmp_path, monkeypatch, no_exchange):
    make_mine(tmp_path / "out")
    real_replace = os.replace

    def interrupt_second(src, dst):
        if str(src).endswith(".tmp"):  # the new tree going in: the old one is parked, the name is free
            assert not os.path.lexists(tmp_path / "out")
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        write_dir(tmp_path / "out")
    assert no_exchange, "the exchange was not tried first"
    assert (tmp_path / "out" / "mine.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def killed_between_renames(target: Path) -> int:
    """Run the fallback swap in a process that is SIGKILLed between its two renames; its pid."""
    code = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from rnnonnx import files
        files._renameat2 = lambda: None
        real = os.replace
        def replace(src, dst):
            if str(src).endswith(".tmp"):
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        os.replace = replace
        with files.atomic_directory(sys.argv[1], replaces=lambda p: (p / "mine.txt").is_file()) as tmp:
            (tmp / "mine.txt").write_text("new")
    """)
    process = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=Path(__file__).resolve().parents[1])
    assert process.wait(timeout=120) == -signal.SIGKILL
    return process.pid


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_the_next_write_recovers_what_a_killed_fallback_left(tmp_path):
    make_mine(tmp_path / "out")
    pid = killed_between_renames(tmp_path / "out")
    left = sorted(os.listdir(tmp_path))
    assert f".out.old-{pid}" in left and "out" not in left and any(n.endswith(".tmp") for n in left)
    with pytest.raises(RuntimeError):  # even a write that fails puts the old directory back
        with atomic_directory(tmp_path / "out", replaces=mine):
            raise RuntimeError
    assert os.listdir(tmp_path) == ["out"] and (tmp_path / "out" / "mine.txt").read_text() == "old"


def test_leftovers_of_a_live_process_are_left_alone(tmp_path):
    make_mine(tmp_path / "out")
    busy = make_mine(tmp_path / f".out.old-{os.getppid()}", "parked by a running process")
    write_dir(tmp_path / "out")
    assert (busy / "mine.txt").read_text() == "parked by a running process"
    assert (tmp_path / "out" / "mine.txt").read_text() == "new"


def test_a_stale_parked_directory_is_removed_once_replaced(tmp_path):
    make_mine(tmp_path / "out", "current")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=60)
    make_mine(tmp_path / f".out.old-{ended.pid}", "replaced long ago")
    write_dir(tmp_path / "out")
    assert os.listdir(tmp_path) == ["out"]
    assert (tmp_path / "out" / "mine.txt").read_text() == "new"


# --- files ---------------------------------------------------------------------------------------


def write_file(target: Path | str, payload: bytes = b"new") -> None:
    with atomic_file(target, "wb") as handle:
        handle.write(payload)


def test_a_new_file_gets_the_usual_mode(tmp_path, umask_022):
    write_file(tmp_path / "sub" / "out.csv")
    assert (tmp_path / "sub" / "out.csv").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(tmp_path / "sub" / "out.csv").st_mode) == 0o644
    assert os.listdir(tmp_path / "sub") == ["out.csv"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_an_existing_file_keeps_its_mode(tmp_path, umask_022, mode):
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    target.chmod(mode)
    write_file(target)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == mode


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root may give files away")
def test_an_existing_file_keeps_its_owner(tmp_path):
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    os.chown(target, 12345, 12346)
    write_file(target)
    assert (target.stat().st_uid, target.stat().st_gid) == (12345, 12346) and target.read_bytes() == b"new"


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "data" / "preds.csv"
    real.parent.mkdir()
    real.write_bytes(b"old")
    real.chmod(0o600)
    link = tmp_path / "preds.csv"
    link.symlink_to(Path("data") / "preds.csv")
    write_file(link)
    assert link.is_symlink() and os.readlink(link) == str(Path("data") / "preds.csv")
    assert real.read_bytes() == b"new" and stat.S_IMODE(real.stat().st_mode) == 0o600
    assert os.listdir(real.parent) == ["preds.csv"]
    dangling = tmp_path / "later.csv"
    dangling.symlink_to(tmp_path / "data" / "later.csv")
    write_file(dangling)
    assert dangling.is_symlink() and (tmp_path / "data" / "later.csv").read_bytes() == b"new"


def make_special(path: Path, kind: str) -> object:
    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO (named pipe)":
        os.mkfifo(path)
    elif kind == "socket":
        if len(str(path)) > 100:
            pytest.skip("path too long for a Unix socket")
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        return server
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is, made in tmp_path
        except (PermissionError, AttributeError):
            pytest.skip("creating a device node needs root (CAP_MKNOD)")
    return None


SPECIAL = ["directory", "FIFO (named pipe)", "socket", "character device"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX special files")
@pytest.mark.parametrize("via_link", [False, True], ids=["direct", "via symlink"])
@pytest.mark.parametrize("kind", SPECIAL)
def test_special_files_are_refused_and_left_as_they_are(tmp_path, kind, via_link):
    node = tmp_path / "node"
    handle = make_special(node, kind)
    try:
        kind_before = stat.S_IFMT(os.lstat(node).st_mode)
        target = node
        if via_link:
            target = tmp_path / "link"
            target.symlink_to(node)
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(OutputError) as exc:
            write_file(target)
        message = one_line(exc)
        assert kind in message and "not a regular file" in message
        assert stat.S_IFMT(os.lstat(node).st_mode) == kind_before
        assert sorted(os.listdir(tmp_path)) == before
        if via_link:
            assert target.is_symlink()
    finally:
        if handle is not None:
            handle.close()


class _FullDisk(io.RawIOBase):
    """A file on a full file system: every write fails with ENOSPC."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def test_a_full_disk_gives_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", **kwargs: io.BufferedWriter(_FullDisk(fd)))
    with pytest.raises(OutputError) as exc:
        write_file(target, b"x" * 100_000)
    assert "out.csv" in one_line(exc) and os.strerror(errno.ENOSPC) in str(exc.value)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.csv"]


def test_a_read_only_directory_gives_one_line(tmp_path, monkeypatch):
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root writes anyway: stand in a read-only mount

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    else:
        tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputError) as exc:
            write_file(tmp_path / "out.csv")
        assert one_line(exc).startswith(str(tmp_path / "out.csv") + ": cannot write (")
        assert os.listdir(tmp_path) == []
    finally:
        tmp_path.chmod(0o755)


# --- telling what rnnonnx wrote ------------------------------------------------------------------


def test_read_json_marker_never_blocks_or_fails(tmp_path):
    (tmp_path / "ok.json").write_text('{"format": "x"}')
    assert read_json_marker(tmp_path / "ok.json") == {"format": "x"}
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / "bad.json").write_bytes(b"\xff{")
    (tmp_path / "big.json").write_text(json.dumps("x" * 100))
    os.mkfifo(tmp_path / "fifo.json")  # opening it would block: it must not be opened
    assert read_json_marker(tmp_path / "big.json", limit=50) is None
    for name in ("deep.json", "bad.json", "fifo.json", "missing.json"):
        assert read_json_marker(tmp_path / name) is None


def test_runs_and_bundles_are_told_apart(tiny_run, tiny_bundle, tmp_path):
    assert is_run_dir(tiny_run) and not is_bundle_dir(tiny_run)
    assert is_bundle_dir(tiny_bundle) and not is_run_dir(tiny_bundle)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"format": "something-else"}')
    (foreign / "manifest.json").write_text('["rnnonnx-bundle"]')
    assert not is_run_dir(foreign) and not is_bundle_dir(foreign)
    assert not is_run_dir(tmp_path / "missing") and not is_bundle_dir(tmp_path / "missing")
