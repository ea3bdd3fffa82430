"""The edit protocols (SPEC section 5).

"matched" (default): every method's edit of every sample is driven to the same target of the
attribute instrument, R_k(G(edit(w, s))) = target, by a per-sample search (a coarse scan, then
bisection) on the method's own strength s inside ``editor.strength_range(attr)`` (EYE/HFLD: their
native unit s = target - R_k, so the search runs over the native edit). "native": each method's own strength, no search.

A sample has *reached* the target when |R_k - target| <= ``tol`` (default 0.1). Targets at the ends
of [0, 1] are asymptotes of a sigmoid scorer, so the search aims at the target moved ``tol/2`` inside
[0, 1] (target 1 -> aim 0.95); any strength that crosses the aim is then within tol/2 of the target.
A sample already past the aim keeps strength 0.

R_k need not be monotone in s (on the DCGAN with the quick preset's directions, Male -> 1 is crossed
inside ±4 sigma but at neither end for 12% of samples with SeFa, 13% GANSpace, 7% InterFaceGAN: R_k
peaks and turns back as faces break up), so the search first scans a coarse grid outwards from s = 0
to each range end and bisects inside the first grid step that crosses the aim (the side whose
interpolated crossing is nearer to 0 when both cross in the same step): the edit is the smallest one
found that reaches the target. Where no scanned point crosses the aim, the sample takes the scanned
strength whose R_k is closest to the target, and ``reached`` says whether that is within tol.
"""

from __future__ import annotations

import torch

from .method import Editor, FitContext

DEFAULT_TOL = 0.1
DEFAULT_GRID = 4    # scan points per side of s = 0 before bisecting (R_k need not be monotone)


@torch.no_grad()
def native_edit(editor: Editor, latents: torch.Tensor, attr: str, strength, batch_size: int = 256) -> torch.Tensor:
    """The native protocol: ``editor.edit`` at the given strength (scalar or [B]), batched, no grad, CPU out.

    For EYE/HFLD the native strength towards a target is ``methods.eye.native_strength``."""
    s = torch.as_tensor(strength, dtype=latents.dtype).expand(latents.shape[0])
    return torch.cat([editor.edit(latents[i:i + batch_size], attr, s[i:i + batch_size]).cpu()
                      for i in range(0, latents.shape[0], batch_size)])


@torch.no_grad()
def matched_edit(editor: Editor, ctx: FitContext, latents: torch.Tensor, attr: str, target: float,
                 steps: int = 12, batch_size: int = 64, tol: float = DEFAULT_TOL, grid: int = DEFAULT_GRID):
    """Drive each sample's R_k to ``target`` with the editor's own strength.

    Returns (edited latents [B, L, D] on the CPU, achieved R_k [B], reached [B] bool, strength [B]).
    A coarse scan outwards from s = 0 (``grid`` points per side, evenly spaced to the range ends)
    finds each sample's first crossing of the aim, then ``steps`` bisections narrow it. Only the
    samples still scanning (or still bisecting) are rendered and scored at each pass: at most
    1 + 2 * ``grid`` + ``steps`` passes.
    """
    lat = latents.to(ctx.dev)
    lo, hi = (float(v) for v in editor.strength_range(attr))
    aim = min(max(float(target), tol / 2), 1.0 - tol / 2)
    n, f64, grid = lat.shape[0], torch.float64, max(1, int(grid))

    def score(idx: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return ctx.score_latents(editor.edit(lat[idx.to(lat.device)], attr, s.to(lat)), attr, batch_size).double()

    everyone = torch.arange(n)
    r0 = score(everyone, torch.zeros(n, dtype=f64))
    side0 = torch.sign(r0 - aim)
    there = side0 == torch.sign(torch.tensor(float(target) - aim))   # already past the aim: no edit
    crossed = lambda r, idx: torch.sign(r - aim) != side0[idx]         # noqa: E731
    # bracket [a, b]: a not past the aim, b past it (with its score r_b)
    a, b, r_b = torch.zeros(n, dtype=f64), torch.zeros(n, dtype=f64), r0.clone()
    bracketed = torch.zeros(n, dtype=torch.bool)
    best_s, best_r = torch.zeros(n, dtype=f64), r0.clone()    # the scanned point closest to the target
    ends = (hi, lo)
    prev = [r0.clone(), r0.clone()]                            # each side's score at the previous grid point
    for j in range(1, grid + 1):
        idx = (~bracketed & ~there).nonzero()[:, 0]
        if len(idx) == 0:
            break
        hit, s, r, frac = [], [], [], []
        for side, end in enumerate(ends):
            s_j = torch.full((len(idx),), end * j / grid, dtype=f64)
            r_j = score(idx, s_j)
            closer = (r_j - target).abs() < (best_r[idx] - target).abs()
            best_s[idx] = torch.where(closer, s_j, best_s[idx])
            best_r[idx] = torch.where(closer, r_j, best_r[idx])
            # where inside this grid step the aim is crossed (linear interpolation): the nearer side wins
            p = prev[side][idx]
            frac.append(((aim - p) / (r_j - p)).nan_to_num(0.0))
            prev[side][idx] = r_j
            hit.append(crossed(r_j, idx))
            s.append(s_j)
            r.append(r_j)
        use = [hit[0] & (~hit[1] | (frac[0] <= frac[1]))]
        use.append(hit[1] & ~use[0])
        for side, end in enumerate(ends):
            k = idx[use[side]]
            a[k] = end * (j - 1) / grid
            b[k], r_b[k] = s[side][use[side]], r[side][use[side]]
        bracketed[idx] = use[0] | use[1]
    for _ in range(steps):
        idx = bracketed.nonzero()[:, 0]
        if len(idx) == 0:
            break
        mid = (a[idx] + b[idx]) / 2
        r_mid = score(idx, mid)
        past = crossed(r_mid, idx)
        b[idx], r_b[idx] = torch.where(past, mid, b[idx]), torch.where(past, r_mid, r_b[idx])
        a[idx] = torch.where(past, a[idx], mid)
    strength = torch.where(bracketed, b, best_s)
    achieved = torch.where(bracketed, r_b, best_r)
    strength, achieved = torch.where(there, 0.0, strength), torch.where(there, r0, achieved)
    reached = (achieved - target).abs() <= tol
    edited = editor.edit(lat, attr, strength.to(lat)).cpu()
    return edited, achieved.float(), reached, strength.float()
