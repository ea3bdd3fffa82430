"""Power of a first-screen comparison, and the N and K that would resolve it.

A comparison of a method with the reference is a difference of means over fit seeds and samples, so
its uncertainty has two sources the run can measure: fits (K per method) and samples (n in common,
paired). Per method, on the common samples i and its fits k,

    x_ki = mu + a_k + b_i + e_ki        a: fit seed, b: sample, e: fit x sample (interaction and noise)

and with D = mean(x) - mean(y) against the reference y on the same samples:

    Var(D) = s2_fit_x / K_x + s2_fit_y / K_y + (s2_pair + s2_e_x / K_x + s2_e_y / K_y) / n

where s2_pair is the variance of the sample effect's difference b_x,i - b_y,i. Each component is
estimated by the method of moments from the run's own [K, n] arrays (a two-way layout, one
observation per cell), truncated at 0. A method with one fit in a run of several (a closed-form
method: its fit does not depend on the seed) keeps one fit in every projection; in a run with K = 1
the fit variance cannot be estimated at all, and the plan says so rather than assume it is 0.

The smallest detectable relative difference at power 1 - beta is (z_{1-alpha/2} + z_{1-beta}) * SE(D) /
|mean(y)|, with alpha = 0.05 / m for a screen of m comparisons (the first step of Holm's procedure, the
strictest it asks of any comparison; so a comparison resolved here stays resolved after Holm). With K as
small as 3 the fit components rest on 2 degrees of freedom: the plan is a planning figure, not a
guarantee; rerun at the planned N and K and read the interval.

Pure numpy (no torch): the report and ``bench plan`` import it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.stats import norm

from latent_edit_bench.fs import read_json
from latent_edit_bench.pipeline.tables import verify_tables
from latent_edit_bench.pipeline.units import read_ledger

ALPHA = 0.05
POWER = 0.8
MAX_N = 100_000            # a plan needing more samples than this is "out of reach"
MAX_K = 100
POWER_COLUMNS = ["attr", "direction", "level", "method", "reference", "n", "k", "k_ref", "fit_varies",
                 "ref_mean", "diff", "s2_fit", "s2_fit_ref", "s2_e", "s2_e_ref", "s2_pair", "se", "family",
                 "alpha", "mde_rel", "power_observed"]


def components_of(x: np.ndarray) -> tuple[float, float]:
    """(s2_fit, s2_e) of one method's [K, n] array (K fits x n samples); (0, 0) when K = 1."""
    x = np.asarray(x, dtype=np.float64)
    k, n = x.shape
    if k < 2 or n < 2:
        return 0.0, 0.0
    seed_means, sample_means = x.mean(1), x.mean(0)
    resid = x - seed_means[:, None] - sample_means[None, :] + x.mean()
    s2_e = float((resid ** 2).sum() / ((k - 1) * (n - 1)))
    s2_fit = max(0.0, float(seed_means.var(ddof=1)) - s2_e / n)
    return s2_fit, s2_e


@dataclass(frozen=True)
class Comparison:
    """The variance components of one comparison (one row of power.csv), and what they imply."""

    attr: str
    direction: str
    level: float
    method: str
    reference: str
    n: int                 # common samples
    k: int                 # the method's fits
    k_ref: int             # the reference's fits
    fit_varies: bool       # whether fit variance could be estimated (some method with K >= 2)
    ref_mean: float
    diff: float
    s2_fit: float
    s2_fit_ref: float
    s2_e: float
    s2_e_ref: float
    s2_pair: float
    family: int = 1        # comparisons on the screen (Holm's family)

    @classmethod
    def estimate(cls, x: np.ndarray, y: np.ndarray, *, family: int = 1, **keys) -> "Comparison":
        """From the method's and the reference's [K, n] arrays on the same (common) samples."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        fx, ex = components_of(x)
        fy, ey = components_of(y)
        d = x.mean(0) - y.mean(0)
        s2_d = float(d.var(ddof=1)) if d.size > 1 else 0.0
        s2_pair = max(0.0, s2_d - ex / len(x) - ey / len(y))
        return cls(n=x.shape[1], k=len(x), k_ref=len(y), fit_varies=max(len(x), len(y)) > 1,
                   ref_mean=float(y.mean()), diff=float(x.mean() - y.mean()), s2_fit=fx, s2_fit_ref=fy,
                   s2_e=ex, s2_e_ref=ey, s2_pair=s2_pair, family=int(family), **keys)

    # -- projections -------------------------------------------------------------------------
    def fits(self, k: int) -> tuple[int, int]:
        """(K_method, K_reference) when the run's K becomes ``k``: a one-fit method beside a several-fit
        one stays at one fit (closed-form: its fit does not vary with the seed)."""
        big = max(self.k, self.k_ref)
        return (k if self.k == big else self.k), (k if self.k_ref == big else self.k_ref)

    def se(self, n: int | None = None, k: int | None = None) -> float:
        """SE of the difference at n samples and K fits (default: the run's own)."""
        n = self.n if n is None else n
        kx, ky = (self.k, self.k_ref) if k is None else self.fits(k)
        var = (self.s2_fit / kx + self.s2_fit_ref / ky
               + (self.s2_pair + self.s2_e / kx + self.s2_e_ref / ky) / n)
        return math.sqrt(max(var, 0.0))

    @property
    def alpha(self) -> float:
        return ALPHA / max(self.family, 1)

    def z(self, power: float = POWER) -> float:
        return float(norm.ppf(1 - self.alpha / 2) + norm.ppf(power))

    def mde_rel(self, n: int | None = None, k: int | None = None, power: float = POWER) -> float:
        """Smallest |relative difference| detectable with ``power`` at n, K (the run's own by default)."""
        return self.z(power) * self.se(n, k) / abs(self.ref_mean) if self.ref_mean else math.inf

    @property
    def rel(self) -> float:
        return self.diff / abs(self.ref_mean) if self.ref_mean else math.nan

    def power_at(self, rel: float, n: int | None = None, k: int | None = None) -> float:
        """Power to detect a relative difference ``rel`` at n, K (two-sided, at ``alpha``)."""
        se = self.se(n, k) / abs(self.ref_mean) if self.ref_mean else math.inf
        if not se:
            return 1.0
        return float(norm.cdf(abs(rel) / se - norm.ppf(1 - self.alpha / 2)))

    def row(self) -> dict:
        out = asdict(self)
        out.update(se=self.se(), alpha=self.alpha, mde_rel=self.mde_rel(), power_observed=self.power_at(self.rel))
        return out

    @classmethod
    def from_row(cls, row: dict) -> "Comparison":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (bool(v) if k == "fit_varies" else v) for k, v in row.items() if k in names})


# -- planning --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Costs:
    """Measured seconds: one fit of each method, and one sample's ladder edit (all levels) per
    (method, attribute). None where the run does not know (e.g. every fit was a cache hit)."""

    fit: dict            # method -> seconds per fit
    edit: dict           # (method, attr) -> seconds per sample
    where: str = ""      # what measured them (CPU model or GPU name)

    def seconds(self, c: Comparison, n: int, k: int) -> float | None:
        """Seconds to fit and edit both methods at n, K; None if an edit time is unknown. A fit time the
        run does not know (its fits were all cache hits) counts 0: see :meth:`complete`."""
        kx, ky = c.fits(k)
        total = 0.0
        for m, km in ((c.method, kx), (c.reference, ky)):
            f, e = self.fit.get(m), self.edit.get((m, c.attr))
            if e is None:
                return None
            total += km * ((f or 0.0) + n * e)
        return total

    def complete(self, c: Comparison) -> bool:
        """Whether both methods' fit times are known (else :meth:`seconds` is a lower bound)."""
        return all(self.fit.get(m) is not None for m in (c.method, c.reference))


@dataclass(frozen=True)
class Plan:
    effect: float          # the relative difference to resolve (> 0)
    n: int | None          # None: out of reach within MAX_N, MAX_K
    k: int | None
    seconds: float | None  # at the Costs' speed; None if unknown
    note: str = ""
    lower_bound: bool = False   # seconds leave out fits whose time the run does not know (cache hits)


def plan(c: Comparison, effect: float, costs: Costs | None = None, power: float = POWER) -> Plan:
    """The cheapest (n, K) that detects a relative difference ``effect`` with ``power``: for each K (from
    the run's own up to MAX_K) the smallest n, then the one that takes least time (fewest fit+sample
    units where times are unknown)."""
    effect = abs(float(effect))
    if not effect or not math.isfinite(effect) or not c.ref_mean:
        return Plan(effect, None, None, None, "no effect to resolve")
    target_var = (effect * abs(c.ref_mean) / c.z(power)) ** 2
    best = None
    k0 = max(c.k, c.k_ref)
    for k in range(max(k0, 2) if c.fit_varies else 1, (MAX_K if c.fit_varies else 1) + 1):
        kx, ky = c.fits(k)
        left = target_var - c.s2_fit / kx - c.s2_fit_ref / ky
        if left <= 0:
            continue
        n = max(2, math.ceil((c.s2_pair + c.s2_e / kx + c.s2_e_ref / ky) / left))
        if n > MAX_N:
            continue
        secs = costs.seconds(c, n, k) if costs is not None else None
        cost = secs if secs is not None else k * (1 + n / 100)
        if best is None or cost < best[0]:
            best = (cost, n, k, secs)
    note = "" if c.fit_varies else "fit variance unknown (one fit per method): n only, K = 1 assumed enough"
    if best is None:
        return Plan(effect, None, None, None, f"out of reach within n <= {MAX_N}, K <= {MAX_K}")
    partial = costs is not None and best[3] is not None and not costs.complete(c)
    return Plan(effect, best[1], best[2], best[3], note, partial)


def unit_costs(run_dir: Path) -> Costs:
    """Per-fit and per-sample edit seconds measured by a run (units.json), and the CPU or GPU it ran on."""
    run_dir = Path(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    units = read_ledger(run_dir / "units.json") if (run_dir / "units.json").exists() else {}
    n = int(manifest["config"]["n"])
    fit, edit = {}, {}
    for uid, rec in units.items():
        parts = uid.split("/")   # fit/<method>/seed<k>[/<attr>] (no attr: a joint fit), edit/<method>/seed<k>/<attr>
        if rec.get("state") != "done" or len(parts) < 3:
            continue
        kind, method = parts[0], parts[1]
        if kind == "fit" and not rec.get("cache_hit") and rec.get("fit_seconds"):
            fit.setdefault(method, []).append(float(rec["fit_seconds"]))
        elif kind == "edit" and len(parts) == 4 and rec.get("seconds"):
            edit.setdefault((method, parts[3]), []).append(float(rec["seconds"]) / n)
    for m in manifest["config"]["methods"]:       # a method whose every fit came from the cache
        if m not in fit and any(k[0] == m for k in edit):
            fit[m] = None
    plat = manifest.get("platform", {})
    return Costs({m: (float(np.median(v)) if v else None) for m, v in fit.items()},
                 {k: float(np.median(v)) for k, v in edit.items()},
                 " ".join(x for x in (plat.get("processor"), plat.get("device")) if x))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- a finished run's plan (``bench plan`` and the report's first screen) ---------------------------

def parse_effect(text) -> float:
    """"10%" or "0.1" -> 0.1; a BenchError unless it lies in (0, 100%)."""
    from latent_edit_bench.errors import BenchError

    s = str(text).strip()
    try:
        v = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise BenchError(f"--effect {text!r}: expected a relative difference such as 10% or 0.1") from None
    if not 0 < v < 1 or not math.isfinite(v):
        raise BenchError(f"--effect {text!r}: must lie in (0, 100%): write a percentage (10%) or a fraction (0.1)")
    return v


def load_comparisons(run_dir: Path) -> list[Comparison]:
    """The first screen's comparisons of a finished run folder (its power.csv)."""
    import pandas as pd

    from latent_edit_bench.errors import BenchError

    run_dir = Path(run_dir)
    path = run_dir / "power.csv"
    if not (run_dir / "manifest.json").exists() or not (run_dir / "summary.csv").exists():
        raise BenchError(f"{run_dir} is not a finished run folder (no manifest.json or summary.csv); "
                         f"run or rerun `bench run` with the same options to finish it (it resumes)")
    if not path.exists():
        raise BenchError(f"{run_dir} has no power.csv (a run summarised by an older version); "
                         f"rerun the same `bench run` command to re-summarise it")
    verify_tables(run_dir, read_json(run_dir / "manifest.json"), names=("power.csv",))
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: unreadable ({e}); rerun the same `bench run` command to rewrite it") from None
    missing = sorted(set(POWER_COLUMNS) - set(frame.columns))
    if missing:
        raise BenchError(f"{path}: missing column(s) {', '.join(missing)}; rerun `bench run` to rewrite it")
    return [Comparison.from_row(r) for r in frame.to_dict("records")]


def plan_run(run_dir: Path, effect: float = 0.10, costs: Costs | None = None) -> list[dict]:
    """Per first-screen comparison: what the run resolves, its power, and the (n, K) and time that
    would resolve the observed difference and a difference of ``effect``."""
    run_dir = Path(run_dir)
    comps = load_comparisons(run_dir)
    costs = costs if costs is not None else unit_costs(run_dir)
    out = []
    for c in comps:
        obs, eff = plan(c, c.rel, costs), plan(c, effect, costs)
        out.append({"attr": c.attr, "direction": c.direction, "level": c.level, "method": c.method,
                    "reference": c.reference, "n": c.n, "k": max(c.k, c.k_ref), "rel": c.rel,
                    "mde_rel": c.mde_rel(), "power_observed": c.power_at(c.rel), "alpha": c.alpha,
                    "observed": obs, "effect": eff, "fit_varies": c.fit_varies})
    return out


def describe_time(p: Plan, where: str = "") -> str:
    """How long the plan takes: "3.3 h", "at least 7 min, fits from the cache not timed", "unknown"."""
    return (f"{'at least ' if p.lower_bound else ''}{fmt_duration(p.seconds)}"
            f"{' on ' + where if where and p.seconds is not None else ''}"
            f"{', fits from the cache not timed' if p.lower_bound else ''}")


def describe_plan(p: Plan, where: str = "") -> str:
    if p.n is None:
        return p.note
    return f"N = {p.n}, K = {p.k} ({describe_time(p, where)})" + (f"; {p.note}" if p.note else "")
