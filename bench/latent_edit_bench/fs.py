"""Small file-system helpers: every write atomic (a crash never leaves half a file), every JSON read
checked, early write checks, quarantine of corrupt files, and the locks that keep two runs from doing the
same work."""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from latent_edit_bench.errors import BenchError, CorruptFile, environment_fault

logger = logging.getLogger(__name__)

_UMASK: int | None = None


def file_mode() -> int:
    """The mode a new file gets from the user's umask (0644 under the usual 022)."""
    global _UMASK
    if _UMASK is None:   # os.umask can only be read by setting it: once per process
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it is given the umask's mode, flushed
    to disk (fsync) and renamed over ``path`` in one step, so readers see the old file or the new one,
    never a part. The one way this project writes a file. The temporary name is ``<name>.tmp*``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{secrets.token_hex(3)}")
    try:
        yield tmp
        # some writers (safetensors) create 0600: a cache shared by a group needs the umask's mode
        os.chmod(tmp, file_mode())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as e:
        fault = environment_fault(e)
        if fault is not None and not getattr(e, "filename", None):
            # a library's disk-full error (safetensors, pyarrow) names no file: say which one did not fit
            code = getattr(errno, fault.errno_name)
            raise OSError(code, os.strerror(code), str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:   # no directory handles (Windows): the rename is as durable as the platform makes it
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> Path:
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_image(image, path: str | Path) -> Path:
    """Write a PIL image atomically, in the format its suffix names (.png, .jpg, .webp)."""
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise BenchError(f"cannot write {str(path)!r}: unknown image suffix {path.suffix!r}; use .png, .jpg or .webp")
    with atomic(path) as tmp:
        image.save(tmp, format=fmt)
    return path


def read_json(path: str | Path) -> Any:
    """The JSON in ``path``; a file that does not parse (truncated, overwritten) is a :class:`CorruptFile`
    naming it, never a bare JSONDecodeError."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
        raise CorruptFile(path, f"not valid JSON ({e})") from None


def read_index(path: str | Path, also=(), valid: Callable[[Any], bool] = lambda d: isinstance(d, dict)) -> dict:
    """The JSON mapping in one of the tool's own index files ({} if there is none). One that does not parse,
    or that ``valid`` rejects, is moved aside together with the ``also`` files that depended on it, and {}
    is returned: nothing it vouched for is trusted, so the caller redoes it."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        doc = read_json(path)
        if not valid(doc):
            raise CorruptFile(path, "not the mapping this file should hold")
        return doc
    except CorruptFile as e:
        quarantine(path, e.why)
        for dependent in also:
            if Path(dependent).exists():
                quarantine(dependent, f"{path.name}, which it depended on, was corrupt")
        return {}


def quarantine(path: str | Path, why: str = "", warn: bool = True) -> Path:
    """Move a corrupt file aside to ``<stem>.corrupt-<UTC time><suffix>`` (kept for inspection, never
    read again) and return the new path; a file another process moved first is left alone."""
    path = Path(path)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    bad = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    try:
        os.replace(path, bad)
    except FileNotFoundError:
        return bad
    if warn:
        logger.warning("%s%s; moved to %s, redoing what it held", path, f" ({why})" if why else "", bad.name)
    return bad


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
    """Hold an exclusive flock on ``path`` (created if missing, with the umask's mode) for the block. If
    another process holds it, call ``on_wait`` once and block until it is released. The file is never
    deleted: unlinking a lock file lets a third process lock a fresh inode while the second still holds
    the old one. Used for a run folder (``.lock``) and for each cache artifact (``<key>.lock``)."""
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


def save_tensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> Path:
    """A safetensors file, written atomically (tensors made contiguous, as the format needs)."""
    from safetensors.torch import save_file

    with atomic(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def save_csv(frame, path: str | Path, **to_csv) -> Path:
    """A pandas frame as CSV, written atomically (``to_csv``: pandas' options)."""
    with atomic(path) as tmp:
        frame.to_csv(tmp, **{"index": False, **to_csv})
    return Path(path)


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """A copy of ``src`` at ``dst``, written atomically."""
    import shutil

    with atomic(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


class HashIndex:
    """``index.json`` beside a folder's files: {file name relative to the index's folder: sha256}. A file
    is *verified* only if the index records its hash; :meth:`check` moves an unverified one aside so the
    caller redoes it. An index that does not parse is moved aside (every file then counts as unverified)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.hashes: dict[str, str] = read_index(self.path)

    def _key(self, path: Path) -> str:
        return Path(path).relative_to(self.path.parent).as_posix()

    def check(self, path: str | Path) -> bool:
        """Whether ``path`` exists and is the file recorded; an unrecorded or changed one is moved aside."""
        from latent_edit_bench.assets import sha256_file

        path = Path(path)
        if not path.exists():
            return False
        want = self.hashes.get(self._key(path))
        if want is not None and sha256_file(path) == want:
            return True
        quarantine(path, "not verified: its sha256 is not the one index.json records" if want
                   else "not verified: index.json has no record of it")
        return False

    def record(self, path: str | Path) -> None:
        from latent_edit_bench.assets import sha256_file

        self.hashes[self._key(path)] = sha256_file(path)
        write_text(self.path, json.dumps(self.hashes, indent=1, sort_keys=True))
