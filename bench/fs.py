"""Small file-system helpers: atomic writes (a crash never leaves half a file) and early write checks."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import BenchError


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
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".bench-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise BenchError(f"cannot write to {str(path)!r}: {e.strerror or e}") from None
    return path
