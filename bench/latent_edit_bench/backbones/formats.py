"""StyleGAN2 weight files, told apart by content (never by suffix), read into one checkpoint and loaded.

One module per format: rosinality ``.pt`` (:mod:`.formats_rosinality`), NVIDIA stylegan2-ada-pytorch
``.pkl`` (:mod:`.formats_ada`, unpickled by :mod:`.formats_ada_pickle` without running its code) and
this package's safetensors (:mod:`.formats_safetensors`). Each is read into a
:class:`~.checkpoint.StyleGAN2Checkpoint`; nothing in a file is ever executed.
"""

from __future__ import annotations

from pathlib import Path

from latent_edit_bench.backbones.checkpoint import StyleGAN2Checkpoint, build_discriminator, build_generator
from latent_edit_bench.backbones.formats_ada import read_ada_pkl
from latent_edit_bench.backbones.formats_rosinality import LEGACY_TORCH_MAGIC, read_rosinality
from latent_edit_bench.backbones.formats_safetensors import SAFETENSORS_FORMAT, read_safetensors, write_safetensors
from latent_edit_bench.backbones.stylegan2 import StyleGAN2Backbone
from latent_edit_bench.errors import BenchError

# the dispatch API: callers import the readers and the writer from here
__all__ = ["read_checkpoint", "load_stylegan2", "StyleGAN2Checkpoint", "read_rosinality", "read_ada_pkl",
           "read_safetensors", "write_safetensors", "SAFETENSORS_FORMAT"]


def read_checkpoint(path) -> StyleGAN2Checkpoint:
    """Read any of the formats, told apart by content: a torch file (zip or legacy), safetensors or a plain pickle."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"StyleGAN2 checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_TORCH_MAGIC))
    if head[:4] == b"PK\x03\x04" or head == LEGACY_TORCH_MAGIC:
        return read_rosinality(path)
    if head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header ('{' is no pickle opcode)
        return read_safetensors(path)
    if head[:1] == b"\x80":
        return read_ada_pkl(path)
    raise BenchError(f"{path} is neither a torch checkpoint (.pt), a pickle (.pkl) nor a safetensors file of a StyleGAN2")


def load_stylegan2(path, truncation: float = 1.0, name: str = "stylegan2", with_discriminator: bool = True,
                   map_location="cpu") -> StyleGAN2Backbone:
    """Load a rosinality ``.pt``, a NVIDIA stylegan2-ada ``.pkl`` or our safetensors (format told by content,
    never by suffix; no code from the file is run) as a :class:`StyleGAN2Backbone` on ``map_location``."""
    ckpt = read_checkpoint(path)
    generator = build_generator(ckpt.g_kwargs, ckpt.g_ema, ckpt.latent_avg, source=str(path))
    discriminator = None
    if with_discriminator and ckpt.d is not None:
        discriminator = build_discriminator(ckpt.d_kwargs, ckpt.d, source=str(path))
    return StyleGAN2Backbone(generator, discriminator, truncation=truncation, name=name).to(map_location)
