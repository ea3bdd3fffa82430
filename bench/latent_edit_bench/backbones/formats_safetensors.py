"""This package's own StyleGAN2 format: safetensors with the widths and ``latent_avg`` in the metadata.

Written by ``bench zoo train-stylegan2``'s export and ``bench perf``; the file alone rebuilds the
networks. The discriminator may live in a second file named (with its sha256) in the first's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from latent_edit_bench.backbones.checkpoint import StyleGAN2Checkpoint, discriminator_kwargs, generator_kwargs
from latent_edit_bench.errors import BenchError

SAFETENSORS_FORMAT = "latent-edit-bench stylegan2 v1"


def write_safetensors(path, g_ema, d=None, training: dict | None = None) -> Path:
    """Our own format, read by :func:`read_safetensors`: tensors ``g_ema.*`` (and ``d.*``), widths and
    ``latent_avg`` in the metadata, so the file alone rebuilds the networks. Written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    g_state = {k: v.detach().cpu() for k, v in g_ema.state_dict().items()}
    g_kwargs = generator_kwargs(g_state, source=str(path))
    tensors = {f"g_ema.{k}": v.contiguous() for k, v in g_state.items()}
    meta = {"format": SAFETENSORS_FORMAT, "g_kwargs": json.dumps(g_kwargs, default=str),
            "latent_avg": json.dumps([float(v) for v in g_ema.latent_avg.reshape(-1)]),
            "d_kwargs": json.dumps(None)}
    if d is not None:
        d_state = {k: v.detach().cpu() for k, v in d.state_dict().items()}
        meta["d_kwargs"] = json.dumps(discriminator_kwargs(d_state, source=str(path)))
        tensors.update({f"d.{k}": v.contiguous() for k, v in d_state.items()})
    if training is not None:
        meta["training"] = json.dumps(training)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_safetensors(path) -> StyleGAN2Checkpoint:
    """A file written by ``bench zoo train-stylegan2`` (G_ema + D, widths and latent_avg in the metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"StyleGAN2 file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:   # safetensors raises its own error types for a malformed header
        raise BenchError(f"cannot read {path} as safetensors: {e}") from None
    if meta.get("format") != SAFETENSORS_FORMAT or meta.get("part") == "d":
        what = "the discriminator half of one (load the generator file that names it)" if meta.get("part") == "d" \
            else f"format {meta.get('format')!r}"
        raise BenchError(f"{path} is not an exported train-stylegan2 file ({what})")
    if "d_file" in meta:   # D in a second file beside this one (each file under a size limit)
        d_path = path.parent / meta["d_file"]
        if not d_path.is_file():
            raise BenchError(f"{path} keeps its discriminator in {meta['d_file']}, which is missing from {path.parent}")
        from latent_edit_bench.assets import sha256_file
        if sha256_file(d_path) != meta.get("d_sha256"):
            raise BenchError(f"{d_path} does not match the sha256 that {path.name} records for it")
        with safe_open(str(d_path), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
    g_kwargs, d_kwargs = json.loads(meta["g_kwargs"]), json.loads(meta["d_kwargs"])
    latent_avg = torch.tensor(json.loads(meta["latent_avg"]), dtype=torch.float32)
    # files may store float16 (half the size); the networks compute in float32
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    g_ema = {k[len("g_ema."):]: v for k, v in tensors.items() if k.startswith("g_ema.")}
    d = {k[len("d."):]: v for k, v in tensors.items() if k.startswith("d.")}
    return StyleGAN2Checkpoint(g_ema=g_ema, g_kwargs=g_kwargs, latent_avg=latent_avg, d=d or None,
                               d_kwargs=d_kwargs if d else None, source="latent-edit-bench")
