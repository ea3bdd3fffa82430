"""Export a training checkpoint's G_ema and D as this package's safetensors StyleGAN2, and load it back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from latent_edit_bench.backbones.formats import SAFETENSORS_FORMAT, load_stylegan2
from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone
from latent_edit_bench.errors import BenchError
from latent_edit_bench.trainers.stylegan2_files import load_checkpoint


def export_stylegan2(checkpoint, out_path, n_latent_avg: int = 10000, dtype: torch.dtype | None = None,
                     d_path=None) -> Path:
    """Write G_ema and D of a training checkpoint as one safetensors file: tensors ``g_ema.*`` and
    ``d.*``; metadata ``format``, ``g_kwargs``, ``d_kwargs``, ``latent_avg`` (mean W of
    ``n_latent_avg`` samples, seed 0) and ``training`` (config, step), all JSON strings.

    dtype: store the tensors in this dtype (torch.float16 halves the files; the loader upcasts to
    float32). d_path: write D to this second file instead (same folder), named in the first file's
    metadata ``d_file`` with its ``d_sha256``, so that each file stays under a size limit."""
    from safetensors.torch import save_file

    from latent_edit_bench.assets import sha256_file

    checkpoint, out_path = Path(checkpoint), Path(out_path)
    state = load_checkpoint(checkpoint)
    if state.get("format") != SAFETENSORS_FORMAT:
        raise BenchError(f"{checkpoint} is not a train-stylegan2 checkpoint (format {state.get('format')!r})")
    G = Generator(**state["g_kwargs"])
    G.load_state_dict(state["g_ema"])
    latent_avg = G.mean_latent(n_latent_avg, seed=0)[0]
    # store widths explicitly: the file alone rebuilds the networks, whatever our defaults become
    g_kwargs = {k: v for k, v in state["g_kwargs"].items() if k != "max_channels"}
    g_kwargs["channels"] = {str(r): c for r, c in G.channels.items()}
    d_kwargs = {k: v for k, v in state["d_kwargs"].items() if k != "max_channels"}
    d_kwargs["channels"] = {str(r): c for r, c in Discriminator(**state["d_kwargs"]).channels.items()}

    def cast(t: torch.Tensor) -> torch.Tensor:
        return (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()

    def write(tensors: dict, meta: dict, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)

    tensors = {f"g_ema.{k}": cast(v) for k, v in state["g_ema"].items()}
    d_tensors = {f"d.{k}": cast(v) for k, v in state["d"].items()}
    meta = {"format": SAFETENSORS_FORMAT, "g_kwargs": json.dumps(g_kwargs), "d_kwargs": json.dumps(d_kwargs),
            "latent_avg": json.dumps([float(v) for v in latent_avg]),
            "training": json.dumps({"config": state["config"], "step": int(state["step"])})}
    if d_path is None:
        tensors.update(d_tensors)
    else:
        d_path = Path(d_path)
        if d_path.resolve().parent != out_path.resolve().parent or d_path.name == out_path.name:
            raise BenchError(f"d_path {d_path} must be another file in the folder of {out_path}")
        write(d_tensors, {"format": SAFETENSORS_FORMAT, "part": "d", "d_kwargs": json.dumps(d_kwargs)}, d_path)
        meta.update(d_file=d_path.name, d_sha256=sha256_file(d_path))
    write(tensors, meta, out_path)
    return out_path


def load_safetensors_stylegan2(path, truncation: float = 1.0, name: str = "stylegan2",
                               map_location="cpu") -> StyleGAN2Backbone:
    """Load an exported file as a backbone (G_ema with constant noise, D attached)."""
    return load_stylegan2(path, truncation=truncation, name=name, map_location=map_location)
