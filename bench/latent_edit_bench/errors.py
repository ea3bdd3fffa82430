"""Errors the CLI turns into a clear message and exit code 2 (never a traceback)."""


class BenchError(Exception):
    """Bad input from the user: a message that names what is wrong and what is valid."""

    exit_code = 2


def did_you_mean(name: str, valid) -> str:
    """" (did you mean 'Male'?)" for a near miss of ``name`` among ``valid`` (case-insensitive first), else ""."""
    import difflib

    valid = list(valid)
    folded = {v.lower(): v for v in valid}
    if name.lower() in folded:
        return f" (did you mean {folded[name.lower()]!r}?)"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownName(BenchError):
    def __init__(self, kind: str, name: str, valid, note: str = ""):
        valid = sorted(valid)
        listing = ", ".join(valid) if valid else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, valid)}; valid {kind}s: {listing}{note}")
        self.kind, self.name, self.valid = kind, name, valid


class MissingAsset(BenchError):
    """A weights file the user must fetch themselves is not where we look for it. ``short``: one clause
    for lists of what did not load (e.g. "x weights not found (put them at P to use it)")."""

    def __init__(self, message: str, short: str | None = None):
        super().__init__(message)
        self.short = short


def short_reason(name: str, e: Exception) -> str:
    """One short clause on why ``name`` did not load, for lists: a MissingAsset's own (where the file goes),
    else the error's first clause."""
    if isinstance(e, MissingAsset) and e.short:
        return e.short
    return f"{name} not loadable ({str(e).split(': ')[0][:100]})"


class CorruptFile(BenchError):
    """A file this project wrote that does not read back (truncated, overwritten): names it. Where the
    file is the tool's own (a run's index, a cache entry) the caller quarantines it and redoes the work;
    where it cannot, the user sees this line (exit 2)."""

    def __init__(self, path, why: str, fix: str = ""):
        super().__init__(f"{path}: {why}" + (f"; {fix}" if fix else ""))
        self.path, self.why = path, why


# The machine's faults, not the method's nor the input's: one line naming the file and the fix, exit 2.
_ENV_ERRNOS = {
    "ENOSPC": ("the disk is full", "free some space (or point --out/--cache at another disk)"),
    "EDQUOT": ("the disk quota is used up", "free some space (or point --out/--cache at another disk)"),
    "EROFS": ("the file system is read-only", "choose a writable --out/--cache"),
    "EACCES": ("permission denied", "choose a folder you may write (--out/--cache) or fix its permissions"),
    "EPERM": ("operation not permitted", "choose a folder you may write (--out/--cache) or fix its permissions"),
    "EMFILE": ("too many open files", "raise the limit (ulimit -n)"),
}


class EnvironmentFault(BenchError):
    """The disk or the file system failed a read or write (full, read-only, no permission);
    ``errno_name``: which (ENOSPC, EROFS, ...)."""

    def __init__(self, message: str, errno_name: str = ""):
        super().__init__(message)
        self.errno_name = errno_name


def environment_fault(e: BaseException) -> EnvironmentFault | None:
    """The one-line :class:`EnvironmentFault` for an error the machine caused, else None (then the error
    belongs to whatever raised it: a method, an instrument, the input). An OSError is read by its errno;
    libraries that wrap the OS error in their own type (safetensors, pyarrow) by its text."""
    import errno
    import os

    names = [n for n in _ENV_ERRNOS if hasattr(errno, n)]
    name = errno.errorcode.get(getattr(e, "errno", None) or -1) if isinstance(e, OSError) else None
    if name not in _ENV_ERRNOS:
        text = str(e)
        name = next((n for n in names if os.strerror(getattr(errno, n)) in text
                     or f"os error {getattr(errno, n)})" in text), None)
        if name is None or name in ("EPERM", "EACCES") and not isinstance(e, OSError):
            return None   # a library's "permission" wording is too loose to blame the machine on
    what, fix = _ENV_ERRNOS[name]
    where = getattr(e, "filename", None)
    return EnvironmentFault(f"{'cannot use ' + repr(str(where)) if where else 'file system error'}: {what} "
                            f"({name}); {fix}. Finished work is kept: the same command resumes.", name)
