"""Errors the CLI turns into a clear message and exit code 2 (never a traceback)."""


class BenchError(Exception):
    """Bad input from the user: a message that names what is wrong and what is valid."""

    exit_code = 2


class UnknownName(BenchError):
    def __init__(self, kind: str, name: str, valid):
        valid = sorted(valid)
        listing = ", ".join(valid) if valid else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {listing}")
        self.kind, self.name, self.valid = kind, name, valid


class MissingAsset(BenchError):
    """A weights file the user must fetch themselves is not where we look for it."""
