"""The edit protocols (SPEC section 5).

"matched" (default): every method's edit of every sample is driven to the same target of the
attribute instrument, R_k(G(edit(w, s))) = target, by a per-sample bisection on the method's own
strength s inside ``editor.strength_range(attr)`` (EYE/HFLD: their native unit s = target - R_k, so
the search runs over the native edit). "native": each method's own strength, no search.

A sample has *reached* the target when |R_k - target| <= ``tol`` (default 0.1). Targets at the ends
of [0, 1] are asymptotes of a sigmoid scorer, so the search aims at the target moved ``tol/2`` inside
[0, 1] (target 1 -> aim 0.95); any strength that crosses the aim is then within tol/2 of the target.
A sample already past the aim keeps strength 0. Where the aim is not crossed inside the range (R_k monotone in s assumed), the sample takes the range
end whose R_k is closest to the target, and ``reached`` says whether that is within tol.
"""

from __future__ import annotations

import torch

from .method import Editor, FitContext

DEFAULT_TOL = 0.1


@torch.no_grad()
def native_edit(editor: Editor, latents: torch.Tensor, attr: str, strength, batch_size: int = 256) -> torch.Tensor:
    """The native protocol: ``editor.edit`` at the given strength (scalar or [B]), batched, no grad, CPU out.

    For EYE/HFLD the native strength towards a target is ``methods.eye.native_strength``."""
    s = torch.as_tensor(strength, dtype=latents.dtype).expand(latents.shape[0])
    return torch.cat([editor.edit(latents[i:i + batch_size], attr, s[i:i + batch_size]).cpu()
                      for i in range(0, latents.shape[0], batch_size)])


@torch.no_grad()
def matched_edit(editor: Editor, ctx: FitContext, latents: torch.Tensor, attr: str, target: float,
                 steps: int = 12, batch_size: int = 64, tol: float = DEFAULT_TOL):
    """Drive each sample's R_k to ``target`` with the editor's own strength.

    Returns (edited latents [B, L, D] on the CPU, achieved R_k [B], reached [B] bool, strength [B]).
    All samples are rendered and scored together at every bisection step (3 + ``steps`` passes).
    """
    lat = latents.to(ctx.dev)
    lo, hi = (float(v) for v in editor.strength_range(attr))
    aim = min(max(float(target), tol / 2), 1.0 - tol / 2)

    def score(s: torch.Tensor) -> torch.Tensor:
        return ctx.score_latents(editor.edit(lat, attr, s.to(lat)), attr, batch_size).double()

    n = lat.shape[0]
    full = lambda v: torch.full((n,), v, dtype=torch.float64)
    r0, r_lo, r_hi = score(full(0.0)), score(full(lo)), score(full(hi))
    side0 = torch.sign(r0 - aim)
    up = torch.sign(r_hi - aim) != side0           # the aim lies between s = 0 and hi
    down = ~up & (torch.sign(r_lo - aim) != side0)  # ... or between lo and 0
    there = side0 == torch.sign(torch.tensor(float(target) - aim))   # already past the aim: no edit
    bracketed = (up | down) & ~there
    # a: the side not past the aim (s = 0); b: the side past it, with its score r_b
    a = full(0.0)
    b = torch.where(up, full(hi), full(lo))
    r_b = torch.where(up, r_hi, r_lo)
    for _ in range(steps):
        if not bracketed.any():
            break
        mid = (a + b) / 2
        r_mid = score(torch.where(bracketed, mid, a))
        past = bracketed & (torch.sign(r_mid - aim) != side0)
        b, r_b = torch.where(past, mid, b), torch.where(past, r_mid, r_b)
        a = torch.where(bracketed & ~past, mid, a)
    # not bracketed: the range end closest to the target
    hi_closer = (r_hi - target).abs() <= (r_lo - target).abs()
    strength = torch.where(bracketed, b, torch.where(hi_closer, full(hi), full(lo)))
    achieved = torch.where(bracketed, r_b, torch.where(hi_closer, r_hi, r_lo))
    strength, achieved = torch.where(there, full(0.0), strength), torch.where(there, r0, achieved)
    reached = (achieved - target).abs() <= tol
    edited = editor.edit(lat, attr, strength.to(lat)).cpu()
    return edited, achieved.float(), reached, strength.float()
