"""``identity``: does the edit keep the person, read the way face verification reads a score.

A descriptor distance means nothing on its own: on the 64-px DCGAN, faces of *different* samples already
have descriptor cosines of 0.9 and more, so a mean cosine of 0.98 says nothing. So the distance of an edit
to its own original is read against the distances between *different* faces of the same backbone: the
N(N-1)/2 pairs of the run's own originals (every EditSet carries all N). Per edit:

- ``distance``: Euclidean distance of the face-api descriptors, original vs edit (face-api's convention);
- ``kept``: 1 if that distance is below the ``percentile``-th percentile (default 1) of the different-face
  distances, i.e. the edit is still closer to its original than 99% of pairs of different faces are to
  each other (a verification at a 1% false-match rate);
- ``rank``: the share of different-face pairs that are at least as close as the edit is to its original
  (0: unmistakably the same face; 0.5: as far as a typical other face);
- ``threshold``: that percentile (the same for every sample, so its mean is the threshold itself);
- ``cos``: the raw descriptor cosine, kept for continuity (uncalibrated: read it against docs/metrics.md).

The threshold is estimated from the run's originals and held fixed in the bootstrap (it is the same for
every method, level and fit seed of a run, so comparisons are unaffected); how it moves with N is in
docs/metrics.md (tools/measure/identity_calibration.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of
from latent_edit_bench.errors import BenchError

DEFAULT_PERCENTILE = 1.0
MAX_REFERENCE = 4096       # beyond this many originals, a seeded subset forms the pairs (8.4M distances)


def pair_distances(desc: torch.Tensor) -> torch.Tensor:
    """Sorted float64 Euclidean distances of all pairs i < j of the rows of ``desc`` [N, D] (N(N-1)/2 values)."""
    d = desc.double()
    if d.shape[0] > MAX_REFERENCE:
        g = torch.Generator().manual_seed(0)
        d = d[torch.randperm(d.shape[0], generator=g)[:MAX_REFERENCE].to(d.device)]
    i, j = torch.triu_indices(d.shape[0], d.shape[0], offset=1, device=d.device)
    return torch.sort((d[i] - d[j]).norm(dim=1)).values


def percentile(sorted_values: torch.Tensor, p: float) -> torch.Tensor:
    """The p-th percentile (0..100) of sorted values, linearly interpolated as numpy's default."""
    n = sorted_values.shape[0]
    if n == 0:
        return sorted_values.new_tensor(float("nan"))
    pos = p / 100 * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def verify(distance: torch.Tensor, reference: torch.Tensor, p: float = DEFAULT_PERCENTILE) -> dict:
    """Read same-face ``distance`` [N] against sorted different-face distances ``reference``.

    Returns ``threshold`` (the p-th percentile of ``reference``, a 0-d tensor), ``kept`` [N] (1.0 where
    distance < threshold) and ``rank`` [N] (share of reference pairs with distance <= this one)."""
    distance = distance.double()
    t = percentile(reference, p)
    rank = torch.searchsorted(reference, distance.contiguous(), right=True).double() / max(reference.shape[0], 1)
    return {"threshold": t, "kept": (distance < t).double(), "rank": rank}


class Identity(Metric):
    name = "identity"
    title = "Identity (descriptor distance read against different faces of the backbone)"
    needs = ("descriptor",)
    config = {"percentile": DEFAULT_PERCENTILE}

    def __init__(self, **overrides):
        super().__init__(**overrides)
        p = self.config["percentile"] = float(self.config["percentile"])
        if not 0 < p < 50:
            raise BenchError(f"metric 'identity': option percentile must be in (0, 50), got {p!r} "
                             f"(the percentile of different-face distances an edit must stay under; default 1)")
        self._memo = None       # (originals' descriptors, sorted pair distances): the same for every EditSet of a run

    def _reference(self, desc: torch.Tensor) -> torch.Tensor:
        if self._memo is None or self._memo[0].shape != desc.shape or self._memo[0].device != desc.device \
                or not torch.equal(self._memo[0], desc):
            self._memo = (desc.clone(), pair_distances(desc))
        return self._memo[1]

    def measure(self, s: EditSet):
        o, e = s.original["descriptor"], s.edited["descriptor"]
        dist = (e.double() - o.double()).norm(dim=1)
        v = verify(dist, self._reference(o), self.config["percentile"])
        return {"distance": dist.to(o.dtype), "kept": v["kept"].to(o.dtype), "rank": v["rank"].to(o.dtype),
                "threshold": v["threshold"].expand(o.shape[0]).to(o.dtype),
                "cos": F.cosine_similarity(o, e, dim=1)}

    def quantities(self, attr, columns):
        p = f"P{self.config['percentile']:g}"
        return [
            mean_of("kept", label=f"share of edits closer to their original than {p} of different-face "
                                  "distances", better="higher", table="identity"),
            mean_of("rank", label="share of different-face pairs closer than edit to original", better="lower",
                    table="identity"),
            mean_of("distance", label="descriptor distance, original vs edit (raw)", table="identity"),
            mean_of("threshold", label=f"threshold: {p} of the originals' different-face distances",
                    table="identity"),
            mean_of("cos", label="descriptor cosine, original vs edit (raw)", table="identity"),
        ]
