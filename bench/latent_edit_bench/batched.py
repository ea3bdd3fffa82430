"""The one batched loop: apply a function to a tensor in slices along dim 0 and join the results.

Every "render then measure" in the package (originals, ladder scans, scores for a fit, GANSpace's
activations, image grids) goes through :func:`map_batches`, so batch size, device placement, mixed
precision and progress bars are decided in one place (the run session passes its own).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """Mixed precision on ``device`` for a half ``dtype``; a no-op for fp32 / None."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _join(parts: list):
    first = parts[0]
    if isinstance(first, dict):
        return {k: torch.cat([p[k] for p in parts]) for k in first}
    return torch.cat(parts)


def map_batches(fn: Callable, x: torch.Tensor, batch_size: int, device: torch.device | str | None = None,
                out: torch.device | str | None = None, dtype: torch.dtype | None = None,
                progress: bool = False, desc: str | None = None):
    """``fn(x[i:i+batch_size].to(device))`` for every slice, joined along dim 0, without grad.

    ``fn`` returns a tensor or a dict of tensors. ``device``: where each slice goes (None: stays put).
    ``out``: where results are gathered (None: left where ``fn`` put them, e.g. on the GPU until the
    caller writes them; "cpu" for host memory). ``dtype``: fp16/bf16 run under autocast and come back
    as float32, so mixed precision never leaks into stored numbers.
    """
    if x.shape[0] == 0:
        raise ValueError("map_batches: empty input")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    dev = torch.device(device) if device is not None else x.device
    parts = []
    starts = range(0, x.shape[0], batch_size)
    with torch.no_grad(), autocast(dev, dtype):
        for i in tqdm(starts, desc=desc, disable=not progress, unit="batch", leave=False):
            y = fn(x[i:i + batch_size].to(dev, non_blocking=True))
            parts.append(_place(y, out, dtype))
    return _join(parts)


def _place(y, out, dtype):
    if isinstance(y, dict):
        return {k: _place(v, out, dtype) for k, v in y.items()}
    if dtype in HALF_DTYPES and y.is_floating_point():
        y = y.float()
    return y if out is None else y.to(out)
