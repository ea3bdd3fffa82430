"""rosinality/stylegan2-pytorch ``.pt`` checkpoints, read with ``torch.load(weights_only=True)``.

A torch zip file or torch's legacy format; the ``args`` entry (an ``argparse.Namespace`` in
rosinality's training checkpoints) is allow-listed, any other object is refused.
"""

from __future__ import annotations

import argparse
import pickle
import warnings

import torch

from latent_edit_bench.backbones.checkpoint import StyleGAN2Checkpoint, discriminator_kwargs, generator_kwargs
from latent_edit_bench.errors import BenchError

LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."   # torch.save before zip files


def read_rosinality(path) -> StyleGAN2Checkpoint:
    """rosinality checkpoint: {'g_ema', ['g', 'd', 'latent_avg', 'args', optimiser states ...]}
    or a bare generator state dict. Loaded with ``weights_only=True``."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"refusing to load {path}: it holds objects other than tensors and plain data "
                         f"(torch.load weights_only: {first})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise BenchError(f"cannot read {path} as a torch checkpoint: {e}") from None
    if not isinstance(ckpt, dict):
        raise BenchError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if "g_ema" not in ckpt and "style.1.weight" in ckpt:
        ckpt = {"g_ema": ckpt}
    if "g_ema" not in ckpt:
        raise BenchError(f"{path}: no 'g_ema' in this checkpoint (keys: {', '.join(map(str, list(ckpt)[:10]))})")
    g_kwargs = generator_kwargs(ckpt["g_ema"], path)
    d = ckpt.get("d")
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).reshape(-1)
    return StyleGAN2Checkpoint(g_ema=dict(ckpt["g_ema"]), g_kwargs=g_kwargs, latent_avg=latent_avg,
                               g=dict(ckpt["g"]) if ckpt.get("g") is not None else None,
                               d=dict(d) if d is not None else None,
                               d_kwargs=discriminator_kwargs(d, path) if d is not None else None, source="rosinality")
