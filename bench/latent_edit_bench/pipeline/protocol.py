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

from dataclasses import dataclass

import torch

from latent_edit_bench.batched import map_batches
from latent_edit_bench.contracts.method import Editor, FitContext

DEFAULT_TOL = 0.1
DEFAULT_GRID = 4    # scan points per side of s = 0 before bisecting (R_k need not be monotone)


@torch.no_grad()
def native_edit(editor: Editor, latents: torch.Tensor, attr: str, strength, batch_size: int = 256) -> torch.Tensor:
    """The native protocol: ``editor.edit`` at the given strength (scalar or [B]), batched, no grad, CPU out.

    For EYE/HFLD the native strength towards a target is ``latent_edit_bench.methods.eye.native_strength``."""
    s = torch.as_tensor(strength, dtype=latents.dtype).expand(latents.shape[0])
    return map_batches(lambda i: editor.edit(latents[i], attr, s[i]), torch.arange(latents.shape[0]),
                       batch_size, out="cpu")


@torch.no_grad()
def matched_edit(editor: Editor, ctx: FitContext, latents: torch.Tensor, attr: str, target: float,
                 steps: int = 12, batch_size: int | None = None, tol: float = DEFAULT_TOL, grid: int = DEFAULT_GRID):
    """Drive each sample's R_k to ``target`` with the editor's own strength.

    Returns (edited latents [B, L, D] on the CPU, achieved R_k [B], reached [B] bool, strength [B]).
    A coarse scan outwards from s = 0 (``grid`` points per side, evenly spaced to the range ends)
    finds each sample's first crossing of the aim, then ``steps`` bisections narrow it. Only the
    samples still scanning (or still bisecting) are rendered and scored at each pass: at most
    1 + 2 * ``grid`` + ``steps`` passes.
    """
    lat = latents.to(ctx.dev)
    batch_size = ctx.batch_size if batch_size is None else batch_size   # None: the context's (the session's)
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


# -- the ladder: equal achieved changes from each original ------------------------------------------

LADDER_TOL = 0.03      # a level is reached within ±this (levels are 0.1 apart: no two overlap)
LADDER_GRID = 8        # scan points per side of s = 0, shared by every level of a sample


@dataclass
class Ladder:
    """The ladder edits of N samples at L signed levels (all [L, N], CPU; ``latents`` [L, N, ...])."""

    levels: torch.Tensor
    target: torch.Tensor       # R_k(original) + level: what each sample was driven to
    strength: torch.Tensor     # the method's own strength found
    achieved: torch.Tensor     # the search's R_k at that strength (score_latents)
    reached: torch.Tensor      # |achieved - target| <= tol
    latents: torch.Tensor


@torch.no_grad()
def ladder_edit(editor: Editor, ctx: FitContext, latents: torch.Tensor, attr: str, levels, *,
                tol: float = LADDER_TOL, grid: int = LADDER_GRID, steps: int = 4,
                batch_size: int | None = None) -> Ladder:
    """Drive every sample to R_k(original) + level, for every signed level, by the editor's own strength.

    One coarse scan of R_k(s) per sample (``grid`` points a side, out to the range ends) serves every
    level: for each (level, sample) the first grid step that crosses the target is found on each
    side (the side whose interpolated crossing is nearer to s = 0 wins: the smallest edit). A sample
    stops scanning once every level has crossed on some side (further points cannot change that).
    Then up to ``steps`` false-position steps run on all bracketed (level, sample) pairs at once, each
    pair until an end of its bracket is within ``tol`` / 10 of its target, and the end of the final
    bracket whose R_k is closer to the target is kept. Pairs never bracketed keep the scanned
    strength closest to the target; ``reached`` says whether that is within ``tol``. A target outside
    what R_k can show (e.g. R_k(original) + 0.3 > 1) is thus recorded as not reached, never clipped.
    """
    lat = latents.to(ctx.dev)
    batch_size = ctx.batch_size if batch_size is None else batch_size   # None: the context's (the session's)
    lo, hi = (float(v) for v in editor.strength_range(attr))
    lv = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
    n, n_lv, grid, f64 = lat.shape[0], lv.shape[0], max(1, int(grid)), torch.float64

    def score(idx: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return ctx.score_latents(editor.edit(lat[idx.to(lat.device)], attr, s.to(lat)), attr, batch_size).double()

    everyone = torch.arange(n)
    r0 = score(everyone, torch.zeros(n, dtype=f64))
    target = r0[None, :] + lv[:, None]                                   # [L, N]
    # the scan: per side, strengths [G+1] from 0 outwards and R_k [N, G+1] (NaN where not scanned)
    side_s = [torch.linspace(0.0, end, grid + 1, dtype=f64) for end in (hi, lo)]
    side_r = [torch.full((n, grid + 1), float("nan"), dtype=f64) for _ in side_s]
    for rr in side_r:
        rr[:, 0] = r0
    scanned = torch.zeros(n, grid + 1, dtype=torch.bool)
    scanned[:, 0] = True

    def first_crossings(rr: torch.Tensor) -> torch.Tensor:   # [L, N, G] bool: target crossed in grid step j
        below = torch.sign(rr[None, :, :] - target[:, :, None])          # [L, N, G+1]
        return (below[..., 1:] != below[..., :1]) & scanned[None, :, 1:]

    active = torch.ones(n, dtype=torch.bool)
    for j in range(1, grid + 1):
        idx = active.nonzero()[:, 0]
        if len(idx) == 0:
            break
        # both sides' grid point j in one call; then a sample whose every level has crossed its target
        # on either side stops: later points lie further from s = 0 and cannot change its brackets
        r = score(torch.cat([idx, idx]), torch.cat([side_s[0][j].expand(len(idx)), side_s[1][j].expand(len(idx))]))
        side_r[0][idx, j], side_r[1][idx, j] = r[:len(idx)], r[len(idx):]
        scanned[idx, j] = True
        decided = (first_crossings(side_r[0]).any(-1) | first_crossings(side_r[1]).any(-1)).all(0)
        active &= ~decided

    def at(r: torch.Tensor, k: torch.Tensor) -> torch.Tensor:   # r [N, P] per sample, k [L, N] -> r[n, k[l, n]]
        return r.expand(n_lv, -1, -1).gather(-1, k[..., None])[..., 0]

    # per side: the first grid step that crosses each target, where inside it the crossing lies (linear
    # interpolation), and that step's ends (a: not past the target, b: past it) with their scores
    sides = []
    for ss, rr in zip(side_s, side_r):
        crossed = first_crossings(rr)
        has = crossed.any(-1)
        j = torch.where(has, crossed.int().argmax(-1) + 1, torch.full_like(has, grid, dtype=torch.long))
        r_a, r_b = at(rr, j - 1), at(rr, j)
        frac = ((target - r_a) / (r_b - r_a)).nan_to_num(0.0).clamp(0, 1)
        pos = torch.where(has, (j - 1).double() + frac, torch.full_like(frac, float("inf")))
        sides.append((pos, ss[j - 1], ss[j], r_a, r_b))
    use_hi = sides[0][0] <= sides[1][0]                                  # the crossing nearer to s = 0 wins
    bracketed = torch.isfinite(torch.minimum(sides[0][0], sides[1][0]))
    a, b, r_a, r_b = (torch.where(use_hi, h, l) for h, l in zip(sides[0][1:], sides[1][1:]))
    # the scanned point closest to the target, for pairs never bracketed (their samples scanned every point)
    all_s = torch.cat([side_s[0], side_s[1][1:]])
    all_r = torch.cat([side_r[0], side_r[1][:, 1:]], 1)                  # [N, 2G+1]
    best = (all_r[None] - target[..., None]).abs().nan_to_num(float("inf")).argmin(-1)   # [L, N]
    best_s, best_r = all_s[best], at(all_r, best)
    # refine every bracketed (level, sample) pair at once: false position (R_k is smooth inside one grid
    # step, so the linear guess lands close), kept in the middle 80% of the bracket so it always shrinks.
    # A pair stops once an end of its bracket is within tol / 10 of the target (further steps would
    # only polish a level already reached by a tenth of the band).
    li, si = bracketed.nonzero(as_tuple=True)
    start = torch.sign(r0 - target)                                     # the side of the target at s = 0
    for _ in range(steps):
        near = torch.minimum((r_a[li, si] - target[li, si]).abs(), (r_b[li, si] - target[li, si]).abs())
        li, si = li[near > tol / 10], si[near > tol / 10]
        if len(si) == 0:
            break
        aa, bb, ra, rb, t = a[li, si], b[li, si], r_a[li, si], r_b[li, si], target[li, si]
        frac = ((t - ra) / (rb - ra)).nan_to_num(0.5).clamp(0.1, 0.9)
        mid = aa + frac * (bb - aa)
        r_mid = score(si, mid)
        past = torch.sign(r_mid - target[li, si]) != start[li, si]
        a[li, si] = torch.where(past, a[li, si], mid)
        r_a[li, si] = torch.where(past, r_a[li, si], r_mid)
        b[li, si] = torch.where(past, mid, b[li, si])
        r_b[li, si] = torch.where(past, r_mid, r_b[li, si])
    a_closer = (r_a - target).abs() < (r_b - target).abs()
    strength = torch.where(bracketed, torch.where(a_closer, a, b), best_s)
    achieved = torch.where(bracketed, torch.where(a_closer, r_a, r_b), best_r)
    edited = torch.stack([map_batches(lambda i: editor.edit(lat[i], attr, strength[l, i].to(lat)), torch.arange(n),
                                      batch_size, out="cpu") for l in range(n_lv)])
    return Ladder(lv.float(), target.float(), strength.float(), achieved.float(),
                  (achieved - target).abs() <= tol, edited)
