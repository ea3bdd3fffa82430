"""Small file-system helpers: atomic writes (a crash never leaves half a file), early write checks, and a
folder lock so two identical runs do not both do the work."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from latent_edit_bench.errors import BenchError


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) now and prove it writable, so bad output fails before any work."""
    path = Path(path)
    blocker = file_in_the_way(path)
    if blocker is not None:   # mkdir would only say "File exists"
        where = "it" if blocker == path else repr(str(blocker))
        raise BenchError(f"cannot write to {str(path)!r}: {where} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # host and pid: jobs on several nodes probe the same shared folder at once
        probe = path / f".bench-write-test-{socket.gethostname()}-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise BenchError(f"cannot write to {str(path)!r}: {e.strerror or e}") from None
    return path


def file_in_the_way(path: str | Path) -> Path | None:
    """The nearest existing ``path`` or ancestor of it, if that is not a directory (so no folder fits there)."""
    for p in (Path(path), *Path(path).parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


@contextmanager
def folder_lock(path: str | Path, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block. If another process holds
    it, call ``on_wait`` once and block until it is released. The file is never deleted: unlinking a lock
    file lets a third process lock a fresh inode while the second still holds the old one."""
    try:
        import fcntl
    except ImportError:   # no flock (Windows): run unlocked, as before
        yield
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
