"""What the report says about how far a result can be trusted: instrument validity, heuristic measures, power.

Validity comes from validity.csv (docs/validity.md), power and plans from power.csv (docs/metrics.md,
"Power"); a folder from before either file says so, or shows nothing, where they would be.
"""

from __future__ import annotations

import pandas as pd

from latent_edit_bench.pipeline import power
from latent_edit_bench.pipeline.validity import SEES, auc_text

from .run_folder import Run
from .tables import finite, share, text

# the judge quantities that confirm or refute an edit: no verdict where the judge is not shown to see the attribute
JUDGE_VERDICTS = ("fooled", "agreement", "judge.change", "judge.edited")


def _kind(run: Run, attr: str) -> tuple[str, str]:
    """(kind of the attribute's measure, attribute instrument): the manifest's word, else ranking.csv's."""
    kind = (run.manifest.get("attribute_kinds") or {}).get(attr)
    if not kind:
        kind = next((k for k in run.ranking.kind[run.ranking.attr == attr] if k), "")
    return str(kind or ""), text((run.manifest.get("instruments") or {}).get("attributes"))


def heuristic_warning(run: Run, attr: str) -> str:
    """The line above an attribute's results where its achieved change rests on a heuristic measure; else ""."""
    kind, instrument = _kind(run, attr)
    if kind != "heuristic":
        return ""
    return f"the achieved change of {attr} rests on a heuristic measure ({instrument}), not a trained network"


def validity_row(run: Run, attr: str, role: str):
    """validity.csv's row of the attribute's ``role`` (trainer or judge); None where it was not measured."""
    if run.validity is None:
        return None
    v = run.validity[(run.validity.attr == attr) & (run.validity.role == role)]
    return None if v.empty else v.iloc[0]


def validity_line(run: Run, attr: str) -> str:
    """The first screen's line: how well the attribute's trainer and judge see it on this backbone."""
    if run.validity is None:
        return f"How well the instruments see {attr} on this backbone: not measured (this run folder has no validity.csv)"
    parts, labels, unsure = [], "", float("nan")
    for role in ("trainer", "judge"):
        r = validity_row(run, attr, role)
        if r is None:
            continue
        parts.append(f"{role} {r.instrument}: {auc_text(r)}, {r.status}")
        labels = labels or r["labels"]
        unsure = r.unsure_share if finite(r.unsure_share) else unsure
    where = f" (human labels: {labels}; AUC with its 95% interval, sees = above 0.5)" if labels else \
        " (no human labels for this backbone's weights; docs/validity.md)"
    tail = f"; a person could not call {share(unsure)} of the labelled faces" if finite(unsure) else ""
    return f"How well the instruments see {attr} on this backbone{where}: " + "; ".join(parts or ["–"]) + tail


def not_validated(run: Run, attr: str, role: str) -> str:
    """"not validated: the trainer is not shown to see Bald on this backbone (...)", or "" where it sees it
    (or validity was not measured: a folder from before validity.csv)."""
    r = validity_row(run, attr, role)
    if r is None or r.status == SEES:
        return ""
    return f"not validated: the {role} ({r.instrument}) is not shown to see {attr} on this backbone ({auc_text(r)})"


def no_verdict(frame: pd.DataFrame, caveat: str) -> pd.DataFrame:
    """Where the judge is not shown to see the attribute (``caveat``): its confirm/refute rows say so in their
    label and lose their better-direction, so no cell is bolded or coloured as a finding."""
    rows = (frame.metric == "judge") & frame.quantity.isin(JUDGE_VERDICTS)
    if not caveat or not rows.any():
        return frame
    frame = frame.copy()
    frame.loc[rows, "label"] = frame.loc[rows, "label"] + " (not validated: the judge is not shown to see it)"
    frame.loc[rows, "better"] = ""
    return frame


def unresolved(run: Run, attr: str, d: str, compared: pd.DataFrame) -> str:
    """". This run cannot tell these methods apart: ..." where no comparison of the block is resolved,
    with the N, K that would resolve a 10% difference (power.csv); "" otherwise or for older folders."""
    verdicts = compared.verdict[compared.status == "ranked"] if "verdict" in compared else pd.Series([], dtype=str)
    if verdicts.empty or not verdicts.ne("").all() or verdicts.eq("resolved").any():
        return ""
    plans = [pl for (a, dd, _), pl in run.plans.items() if a == attr and dd == d]
    need = max((pl["effect"] for pl in plans if pl["effect"].n is not None), default=None,
               key=lambda p: p.seconds if p.seconds is not None else p.n * p.k)
    tail = (f"; N = {need.n}, K = {need.k} would resolve a {need.effect * 100:.0f}% difference"
            f" ({power.describe_time(need)})" if need is not None else "")
    return f". This run cannot tell these methods apart at this N and K{tail}."
