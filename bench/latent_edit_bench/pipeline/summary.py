"""From a run's unit files to its tables: measurements.parquet, samples.parquet and the CSVs of the analysis.

Metrics are pure functions of the stored measurements, so this needs no backbone and no instrument:
``bench run`` calls :func:`summarise` after its units, and :func:`rescore` (``bench report RUN --metrics``)
adds or recomputes metrics on a finished run from its files alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from safetensors.torch import load_file

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, EMOTION_LABELS
from latent_edit_bench.contracts.metric import EditSet
from latent_edit_bench.errors import BenchError, CorruptFile
from latent_edit_bench.fs import atomic, read_json
from latent_edit_bench.pipeline.analysis import analyse
from latent_edit_bench.pipeline.config import RunConfig, config_from_dict, make_metrics
from latent_edit_bench.pipeline.manifest import write_json
from latent_edit_bench.pipeline.validity import trainer_status

# role -> (column prefix, labels): names, "xy" for points [N, P, 2], None for plain indices. A role not
# listed (a third-party instrument's) keeps its own name as prefix: points if [N, P, 2], else indices.
COLUMNS = {"attributes": ("R", CELEBA_ATTRIBUTES), "emotion": ("E", EMOTION_LABELS), "landmarks": ("L", "xy"),
           "descriptor": ("D", None), "judge": ("J", CELEBA_ATTRIBUTES), "judge_emotion": ("JE", EMOTION_LABELS),
           "mesh": ("M", "xy")}


def unprefix(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def unit_path(out: Path, method: str | None, attr: str | None = None, seed: int = 0) -> Path:
    """Where a run folder keeps the originals (``method`` None) or one (method, attribute, fit seed) unit."""
    if method is None:
        return Path(out) / "units" / "original.safetensors"
    return Path(out) / "units" / method / f"seed{seed}" / f"{attr}.safetensors"


def measurement_rows(method, attr, seed, level, m: dict, target, strength, reached) -> pd.DataFrame:
    """One row per sample: the ids, the ladder's target / strength / reached, and every role's outputs."""
    n = next(iter(m.values())).shape[0]
    cols = {"method": [method] * n, "attr": [attr] * n, "seed": np.full(n, seed),
            "level": np.full(n, np.nan if level is None else level), "sample": np.arange(n),
            "target": np.full(n, np.nan) if target is None else target.double().numpy(),
            "strength": np.zeros(n) if strength is None else strength.double().numpy(),
            "reached": np.zeros(n, bool) if reached is None else reached.bool().numpy()}
    known = [r for r in COLUMNS if r in m]
    for role in known + sorted(set(m) - set(COLUMNS)):   # the parquet's column order: the known roles first
        v = m[role].double().numpy()
        prefix, labels = COLUMNS.get(role, (role, "xy" if v.ndim == 3 and v.shape[-1] == 2 else None))
        if labels == "xy":                                # points [N, P, 2] -> P.i.x, P.i.y
            for k in range(v.shape[1]):
                cols[f"{prefix}.{k}.x"], cols[f"{prefix}.{k}.y"] = v[:, k, 0], v[:, k, 1]
        else:
            v = v.reshape(n, -1)
            names = labels if labels is not None else range(v.shape[1])
            cols.update({f"{prefix}.{name}": v[:, k] for k, name in enumerate(names)})
    return pd.DataFrame(cols)


def summarise(out: Path, cfg: RunConfig, orig: dict, methods: list, metrics: dict, roles: dict, kinds: dict,
              validity: pd.DataFrame | None) -> dict:
    """Write the folder's measurements.parquet, samples.parquet and analysis CSVs from the units of
    ``methods`` (those that did not fail); returns {method: {attr: trajectory png}} for the manifest."""
    out = Path(out)
    measurements = [measurement_rows("original", "", -1, None, orig, None, None, None)]
    samples = []
    trajectories: dict = {}
    for name in methods:
        for attr in cfg.attrs:
            for seed in cfg.fit_seed_list:
                unit = load_file(unit_path(out, name, attr, seed))
                levels = cfg.signed_levels           # exact decimals (the unit stores float32)
                if len(levels) != len(unit["levels"]):
                    raise BenchError(f"{unit_path(out, name, attr, seed)} holds {len(unit['levels'])} levels, "
                                     f"the run's config {len(levels)}: the unit was written by another run")
                measured = unprefix(unit, "x.")      # role -> [L, N, ...]
                for i, level in enumerate(levels):
                    x = {role: v[i] for role, v in measured.items()}
                    measurements.append(measurement_rows(name, attr, seed, level, x, unit["target"][i],
                                                         unit["strength"][i], unit["reached"][i]))
                    es = EditSet(name, attr, orig, x, unit["reached"][i].bool(), unit["strength"][i],
                                 level=level, seed=seed, instruments=dict(roles))
                    parts = [pd.DataFrame({"method": name, "attr": attr, "seed": seed, "level": level,
                                           "sample": np.arange(cfg.n), "reached": unit["reached"][i].bool().numpy()})]
                    for mname, metric in metrics.items():
                        cols = {k: v.detach().double().cpu().numpy() for k, v in metric.measure(es).items()}
                        parts.append(pd.DataFrame(cols).add_prefix(f"{mname}."))
                    samples.append(pd.concat(parts, axis=1))
            png = out / "trajectories" / f"{name}__{attr}.png"
            if png.exists():
                trajectories.setdefault(name, {})[attr] = str(png.relative_to(out))
    _write_parquet(pd.concat(measurements, ignore_index=True), out / "measurements.parquet")
    samples = (pd.concat(samples, ignore_index=True) if samples else
               pd.DataFrame(columns=["method", "attr", "seed", "level", "sample", "reached"]))
    _write_parquet(samples, out / "samples.parquet")
    tables = analyse(samples, metrics, methods=methods, attrs=cfg.attrs, reference=cfg.reference, n=cfg.n,
                     min_reach=cfg.min_reach, n_boot=cfg.n_boot, seed=cfg.seed, kinds=kinds,
                     validity=trainer_status(validity) if validity is not None else None)
    for name, frame in tables.items():
        with atomic(out / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    return trajectories


VALIDITY_RECORD = "validity"   # units.json's record of validity.csv (its sha256): a rerun reads it back


def table_hashes(out: Path) -> dict[str, str]:
    """{file: sha256} of the run's tables (every CSV and parquet file at the top of ``out``), for the
    manifest's ``tables``: the report reads only tables that match it."""
    from latent_edit_bench.assets import sha256_file

    return {p.name: sha256_file(p) for p in sorted(Path(out).iterdir())
            if p.is_file() and p.suffix in (".csv", ".parquet")}


def rescore(folder, metric_names, plugins, log: Callable[[str], None] = print) -> Path:
    """Add or recompute metrics on finished run ``folder`` from its unit files: nothing is rendered or
    measured again. ``metric_names``: the metrics the run's tables should hold from now on (the manifest's
    config records them, so ``bench run`` with the same ``--metrics`` finds the folder finished)."""
    from latent_edit_bench.pipeline.units import Ledger, all_units

    out = Path(folder)
    path = out / "manifest.json"
    try:
        manifest = read_json(path)
        cfg = config_from_dict(manifest["config"])
    except (OSError, CorruptFile, KeyError, TypeError) as e:
        raise BenchError(f"{out} is not a finished run folder ({path}: {getattr(e, 'why', type(e).__name__)}); "
                         f"`bench run` makes one (or, with the run's options, resumes it)") from None
    names = tuple(dict.fromkeys(n.strip() for n in metric_names if n.strip()))
    if not names:
        raise BenchError("--metrics needs at least one metric; valid metrics: " + ", ".join(plugins.metrics.names()))
    metrics = make_metrics(cfg, plugins, names)          # an unknown name: BenchError listing the valid ones
    roles = dict(manifest.get("instruments", {}))        # role -> instrument name, as measured
    for name, metric in metrics.items():
        missing = sorted(set(metric.needs) - set(roles))
        if missing:
            raise BenchError(f"metric {name!r} needs instrument output(s) {', '.join(missing)}, which this run "
                             f"did not measure (it measured: {', '.join(sorted(roles))}); run `bench run` with "
                             f"--metrics {','.join(names)} into a new --out")
    ok = [m for m in cfg.methods if manifest.get("methods", {}).get(m, {}).get("status") == "ok"]
    ledger = Ledger(out, repair=False)
    joint = tuple(manifest.get("joint_fits", ()))
    for u in all_units(ok, cfg.attrs, cfg.fit_seed_list, joint=joint):
        if u.kind == "fit":
            continue
        p = unit_path(out, u.method, u.attr, u.seed)
        if not p.exists() or not ledger.intact(u.id, p):
            state = "missing" if not p.exists() else "not the file units.json recorded (sha256)"
            raise BenchError(f"{p} is {state}; rerun the run's `bench run` command (it resumes and redoes it), "
                             f"then rescore")
    orig = unprefix(load_file(unit_path(out, None)), "orig.")
    validity_csv = out / "validity.csv"
    validity = None
    if validity_csv.exists():
        if not ledger.intact(VALIDITY_RECORD, validity_csv):
            raise BenchError(f"{validity_csv} is not the file units.json recorded (sha256); rerun the run's "
                             f"`bench run` command (it redoes it), then rescore")
        validity = pd.read_csv(validity_csv, keep_default_na=False, na_values=[""])
    log(f"rescoring {out} with {', '.join(names)} from its stored measurements")
    figures = summarise(out, dataclasses.replace(cfg, metrics=names), orig, ok, metrics, roles,
                        manifest.get("attribute_kinds", {}), validity)
    manifest["config"]["metrics"] = list(names)
    manifest["metrics"] = {n: {"title": m.title or n, "needs": list(m.needs)} for n, m in metrics.items()}
    manifest["figures"] = {"trajectories": figures}
    manifest["tables"] = table_hashes(out)
    write_json(path, manifest)
    return out


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic(path) as tmp:
        frame.to_parquet(tmp, index=False)

