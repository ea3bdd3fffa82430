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
