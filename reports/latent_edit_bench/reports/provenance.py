"""The end of each run's report: methods status, fits, configuration, instruments, judges and provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from latent_edit_bench.pipeline.validity import auc_text

from .caveats import validity_row
from .run_folder import Run, ordered
from .tables import Cell, Table, fmt, key_value_table, list_table, text

KNOWN_MANIFEST = {"id", "created", "config", "instruments", "attribute_kinds", "versions", "seeds", "assets",
                  "methods", "figures", "seconds", "metrics", "judges"}
CONFIG_FIRST = ["methods", "attrs", "backbone", "weights", "preset", "n", "seed", "fit_seeds", "levels", "tol",
                "min_reach", "reference", "metrics"]


def _judges_table(run: Run, prefix: str) -> list[Table]:
    """Per target: its independent judge (or that none exists offline) and the trainer-judge Pearson r on
    all the run's originals, from measurements.parquet (R.<attr>, J.<attr>)."""
    judges = run.manifest.get("judges")
    if not isinstance(judges, dict) or not judges:
        return []
    path, trainer = run.path / "measurements.parquet", text((run.manifest.get("instruments") or {}).get("attributes"))
    rows = []
    for attr, spec in judges.items():
        if not spec:
            rows.append([Cell(attr, th=True), Cell(f"no independent judge offline (only {trainer} measures it)"),
                         Cell("–", num=True), Cell("–", num=True), Cell("–")])
            continue
        r, n = float("nan"), 0
        try:
            m = pd.read_parquet(path, columns=["method", f"R.{attr}", f"J.{attr}"])
            o = m[m.method == "original"][[f"R.{attr}", f"J.{attr}"]].dropna().to_numpy(float)
            n = len(o)
            if n > 2 and o.std(0).min() > 0:
                r = float(np.corrcoef(o[:, 0], o[:, 1])[0, 1])
        except (OSError, ValueError, KeyError, ImportError):
            pass   # no measurements file (or an older run): the judge is still named
        v = validity_row(run, attr, "judge")
        rows.append([Cell(attr, th=True), Cell(text(spec), cls="mono"), Cell(fmt(r), num=True),
                     Cell(str(n) if n else "–", num=True),
                     Cell(f"{v.status}: {auc_text(v)}" if v is not None else "not measured")])
    return [list_table(f"{prefix}judges", f"Independent judges (trainer: {trainer})",
                       ["attribute", "judge", "r with the trainer on the originals", "n",
                        "the judge against human labels (validity.csv)"], rows, "no judges")]


def provenance_tables(run: Run, prefix: str) -> list[Table]:
    """Methods status and fits, configuration, instruments, judges, versions, assets, anything else recorded."""
    status, fits = [], []
    for m, st in run.statuses.items():
        ok = st.get("status") == "ok"
        per = st.get("fits") if isinstance(st.get("fits"), dict) else {}
        rows = [(seed, a, f) for seed, by_attr in sorted(per.items(), key=lambda kv: (len(str(kv[0])), str(kv[0])))
                if isinstance(by_attr, dict) for a, f in by_attr.items() if isinstance(f, dict)]
        secs = [f["fit_seconds"] for _, _, f in rows if isinstance(f.get("fit_seconds"), (int, float))]
        cached = sum(bool(f.get("cache_hit")) for _, _, f in rows)
        summary = (f"{len(rows)} fit(s) over {len({s for s, _, _ in rows})} seed(s), {cached} cached, "
                   f"{fmt(sum(secs))} s" if rows else "")
        status.append([Cell(m, th=True), Cell(text(st.get("status")), cls="ok" if ok else "failed"),
                       Cell(text(st["stage"]) if "stage" in st else ""), Cell(summary),
                       Cell(text(st["error"]) if "error" in st else "", cls="error" if not ok else "",
                            more=text(st["traceback"]) if st.get("traceback") else "")])
        for seed, a, f in rows:
            sec = f.get("fit_seconds")
            fits.append([Cell(m, th=True), Cell(str(seed), num=True), Cell(a),
                         Cell(fmt(sec) if isinstance(sec, (int, float)) else "–", num=True),
                         Cell("yes" if f.get("cache_hit") else "no"), Cell(text(f.get("artifact")), cls="mono")])
    cfg = {k: text(v) for k, v in run.config.items()}
    cfg |= {f"seeds.{k}": text(v) for k, v in (run.manifest.get("seeds") or {}).items()}
    keys = ordered([k for k in CONFIG_FIRST if k in cfg], cfg)
    inst = {k: text(v) for k, v in (run.manifest.get("instruments") or {}).items()}
    kinds = {k: text(v) for k, v in (run.manifest.get("attribute_kinds") or {}).items()}
    vers = {k: text(v) for k, v in (run.manifest.get("versions") or {}).items()}
    assets = []
    for a in run.manifest.get("assets") or []:
        a = a if isinstance(a, dict) else {"name": a}
        sha = str(a.get("sha256") or "")
        assets.append([Cell(text(a.get("name")), th=True), Cell(text(a.get("file"))), Cell(text(a.get("origin"))),
                       Cell(text(a.get("licence"))), Cell(sha[:12] or "–", cls="mono")])
    tables = [
        list_table(f"{prefix}status", "Methods", ["method", "status", "stage", "fits", "error"], status,
                   "no methods listed"),
        list_table(f"{prefix}fits", "Fits per method, fit seed and attribute",
                   ["method", "fit seed", "attribute", "fit s", "cached", "artifact"], fits, "no fits recorded",
                   collapsed=True),
        key_value_table(f"{prefix}config", "Configuration", keys, cfg),
        key_value_table(f"{prefix}instruments", "Instruments per role", list(inst), inst, "role"),
        key_value_table(f"{prefix}kinds", "How each target attribute is measured", list(kinds), kinds, "attribute"),
        *_judges_table(run, prefix),
        key_value_table(f"{prefix}versions", "Package versions", list(vers), vers, "package"),
        list_table(f"{prefix}assets", "Asset provenance", ["asset", "file", "origin", "licence", "sha256"], assets,
                   "no assets listed", collapsed=True),
    ]
    # anything else the manifest records (platform, weight fingerprints, ...), one level flattened
    extra = {}
    for k, v in run.manifest.items():
        if k not in KNOWN_MANIFEST:
            extra |= {(f"{k}.{sub}" if sub else k): text(x) for sub, x in (v.items() if isinstance(v, dict)
                                                                             else [("", v)])}
    if extra:
        tables.append(key_value_table(f"{prefix}provenance", "More provenance", list(extra), extra, "field",
                                      collapsed=True))
    return tables
