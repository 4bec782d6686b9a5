"""Atomic writes that never destroy what rnnonnx did not write.

Outputs appear complete under their final name, or not at all. A file output replaces only a
regular file (keeping its mode); a directory output replaces only a directory its caller
recognises as its own kind (a run, a bundle) or an empty one, never the current directory or
one that holds the command's inputs. Anything else is refused with a one-line ``OutputError``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

# Failures that mean the output itself could not be written, wherever in the writing they surface.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)})
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
JSON_MARKER_LIMIT = 64 << 20
_NOT_REGULAR = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot(shown: str, exc: OSError) -> OutputError:
    return OutputError(f"{shown}: cannot write ({exc.strerror or exc})")


def read_json_marker(path: str | os.PathLike, limit: int = JSON_MARKER_LIMIT) -> Any:
    """The JSON of a regular file of at most ``limit`` bytes, else None (missing, a FIFO or
    device that could block or never end, too large, not JSON, nested too deep).

    For telling whether a directory is one rnnonnx wrote, where "no" is an answer, not an error.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            payload = handle.read(limit + 1)
        return json.loads(payload) if len(payload) <= limit else None
    except (OSError, ValueError, RecursionError):
        return None


def _holds(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_directory(
    target: str | os.PathLike,
    replaces: Callable[[Path], bool] | None = None,
    kind: str = "output",
    inputs: Iterable[str | os.PathLike] = (),
) -> None:
    """Raise ``OutputError`` unless writing a ``kind`` directory at ``target`` is safe.

    Safe means: ``target`` is new, an empty directory, or a directory for which ``replaces``
    is true (the caller's "rnnonnx wrote this, and it is of my kind"); and it is neither the
    current directory nor holds it or any of ``inputs`` (replacing it would delete them).
    Called before long work, so a refusal comes first, and again just before the swap.
    """
    shown = os.fspath(target)
    path = Path(os.path.abspath(target))
    try:
        real = Path(os.path.realpath(path))
        if _holds(real, Path(os.path.realpath(os.getcwd()))):
            raise OutputError(f"{shown}: is the current directory or holds it; name a directory below it")
        for source in inputs:
            if _holds(real, Path(os.path.realpath(source))):
                raise OutputError(f"{shown}: holds this command's input {os.fspath(source)}; write the {kind} somewhere else")
        if not os.path.lexists(path):
            parent = next(p for p in path.parents if os.path.lexists(p))
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{shown}: cannot be created ({parent} is not a writable directory)")
            return
        if path.is_symlink():
            raise OutputError(f"{shown}: is a symbolic link; name the directory itself ({real}) or another one")
        if not path.is_dir():
            raise OutputError(f"{shown}: exists and is not a directory; choose another output directory")
        if (replaces is not None and replaces(path)) or not any(path.iterdir()):
            return
    except OSError as exc:
        raise OutputError(f"{shown}: cannot check the output directory ({exc.strerror or exc})") from None
    raise OutputError(
        f"{shown}: exists and is not an rnnonnx {kind}; rnnonnx replaces only a {kind} it wrote, "
        "or an empty directory; choose another output directory or remove it yourself"
    )


@functools.lru_cache(maxsize=1)
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2`` on Linux (glibc 2.28+, musl), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the C library, kernel or file system cannot
    (the caller then falls back to two renames); other failures raise ``OSError``.
    """
    function = _renameat2()
    if function is None:
        return False
    import ctypes

    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))


def _running(pid: int) -> bool:
    """Whether another process ``pid`` is alive (so what it left may still be in use). Outside
    POSIX there is no harmless probe, and leftovers count as abandoned."""
    if pid == os.getpid() or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _recover(path: Path, replaces: Callable[[Path], bool] | None) -> None:
    """Undo what an interrupted earlier write of ``path`` left behind, when its process is gone.

    The two-rename fallback parks the old directory as ``.NAME.old-PID`` between its renames: it
    goes back in place when NAME is missing, and is removed when NAME exists (it was replaced).
    Temporary ``.NAME.PID.*.tmp`` directories (half-written, or an old tree swapped out) go.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:old-(\d+)|(\d+)\.\w+\.tmp)")
    try:
        entries = sorted(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _running(int(match[1] or match[2])):
            continue
        if match[1] and not os.path.lexists(path):
            os.rename(entry, path)
        elif match[2] or (replaces is not None and replaces(entry)):
            shutil.rmtree(entry, ignore_errors=True)


def _swap_in(new: Path, path: Path) -> None:
    """Put the complete directory ``new`` at ``path``; what was there is removed.

    With an exchange, ``path`` names the old or the new tree at every instant. The fallback has a
    window between two renames: an interruption there puts the old tree back, and if that fails
    too (a second signal, a kill), the next write of ``path`` does (see ``_recover``).
    """
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)
        return
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        os.replace(path, old)
        os.replace(new, path)
    except BaseException:
        if os.path.lexists(old) and not os.path.lexists(path):
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike,
    replaces: Callable[[Path], bool] | None = None,
    kind: str = "output",
    inputs: Iterable[str | os.PathLike] = (),
) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it takes ``target``'s place in one step.

    What may be there already is the caller's to say (``replaces``, ``kind``, ``inputs``: see
    :func:`check_output_directory`); anything else is refused before and after the work. An
    existing ``target`` stays until the new one is complete, so a failure (or Ctrl-C) leaves it
    untouched and no half-written directory behind.
    """
    shown = os.fspath(target)
    path = Path(os.path.abspath(target))
    inputs = list(inputs)
    try:
        _recover(path, replaces)
        check_output_directory(target, replaces, kind, inputs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _cannot(shown, exc) from None
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise _cannot(shown, exc) from None
            raise
        try:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it owner-only; give it the usual mode
            check_output_directory(target, replaces, kind, inputs)  # anything may have appeared meanwhile
            _swap_in(tmp, path)
        except OSError as exc:
            raise _cannot(shown, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _output_file(target: Path, shown: str) -> tuple[Path, os.stat_result | None]:
    """The file an output at ``target`` replaces (a symbolic link's target, the link stays) and
    its stat, None when new; anything but a regular file is refused, never opened."""
    path = Path(os.path.realpath(target)) if target.is_symlink() else target
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        return path, None
    except OSError as exc:
        raise _cannot(shown, exc) from None
    if stat.S_ISREG(existing.st_mode):
        return path, existing
    what = next((name for test, name in _NOT_REGULAR if test(existing.st_mode)), "special file")
    via = f" (a link to {path})" if path != target else ""
    raise OutputError(
        f"{shown}{via}: is a {what}, not a regular file; rnnonnx replaces only regular files, choose another output"
    )


def _take_mode(tmp: str, existing: os.stat_result | None) -> None:
    """The new file gets the replaced one's owner (when allowed) and mode, else the usual mode."""
    if existing is None:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        return
    if hasattr(os, "chown") and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(OSError):
            os.chown(tmp, existing.st_uid, existing.st_gid)  # before chmod: chown clears set-id bits
    os.chmod(tmp, stat.S_IMODE(existing.st_mode))


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling file for writing; it replaces ``target`` only on success.

    Only a regular file is ever replaced, and it keeps its mode; a symbolic link is followed
    (the file it names is replaced, the link stays a link); a directory, device, FIFO or socket
    is refused. A file system that is read-only, full or refuses the file gives an
    ``OutputError`` and leaves nothing behind.
    """
    shown = os.fspath(target)
    target = Path(target)
    path, existing = _output_file(target, shown)
    try:
        if path == target:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot(shown, exc) from None
    try:
        try:
            with os.fdopen(fd, mode, **kwargs) as handle:
                yield handle
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise _cannot(shown, exc) from None
            raise
        try:
            _take_mode(tmp, existing)
            os.replace(tmp, path)
        except OSError as exc:
            raise _cannot(shown, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """JSON as UTF-8, human-readable, keys in the order given (the one JSON style of runs and bundles)."""
    Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
