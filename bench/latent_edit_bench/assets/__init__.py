"""The asset register (register.toml beside this file) and checked access to the files it lists."""

from __future__ import annotations

import functools
import hashlib
import tomllib
from pathlib import Path

from latent_edit_bench.errors import BenchError, MissingAsset

ASSET_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def register() -> dict[str, dict]:
    with open(ASSET_DIR / "register.toml", "rb") as f:
        return tomllib.load(f)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record(name: str) -> dict:
    reg = register()
    if name not in reg:
        raise BenchError(f"asset {name!r} is not in the register; known: {', '.join(sorted(reg))}")
    return reg[name]


@functools.lru_cache(maxsize=None)
def asset_path(name: str, verify: bool = True) -> Path:
    """Path of a registered asset, its sha256 checked once per process."""
    rec = record(name)
    path = ASSET_DIR / rec["file"]
    if not path.exists():
        raise MissingAsset(f"asset {name!r} ({rec['file']}) is missing from {ASSET_DIR}; "
                           f"regenerate it with {rec.get('converted_by', 'its conversion tool')}")
    if verify and sha256_file(path) != rec["sha256"]:
        raise BenchError(f"asset {name!r} at {path} does not match its sha256 in the register; "
                         f"regenerate it with {rec.get('converted_by', 'its conversion tool')}")
    return path
