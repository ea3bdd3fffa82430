"""The report's table model (Cell, Table, Col), how values are written into cells, and the plain layouts.

Everything here produces plain :class:`Table` objects (text cells, no markup); the template renders them
with autoescaping. The layouts of each section are in the section's module.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

DIRECTIONS = {"+": "towards presence", "-": "towards absence"}


@dataclass
class Cell:
    text: str = ""
    small: str = ""       # grey small text after the value: its interval, or a hint
    num: bool = False     # right-aligned number
    bold: bool = False    # best value of its row
    span: int = 1
    th: bool = False
    cls: str = ""
    more: str = ""        # long text (a traceback) behind a closed <details>


@dataclass
class Table:
    id: str
    caption: str
    head: list
    body: list
    foot: list = field(default_factory=list)
    note: str = ""
    collapsed: bool = False   # long tables go inside a closed <details>


@dataclass(frozen=True)
class Col:
    """One method column of a result table; ``note`` is a second header line (its n and reach)."""

    method: str
    note: str = ""


# ---------------------------------------------------------------- formatting


def finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def decimals(v: float) -> int:
    """Decimals that show 3 significant digits in fixed point (0 for |v| >= 100)."""
    a = abs(v)
    if a == 0 or a >= 100:
        return 0 if a >= 100 else 2
    return min(6, max(0, 2 - math.floor(math.log10(a))))


def fmt(v, nd: int | None = None) -> str:
    if not finite(v):
        return "–"
    v = float(v)
    if v != 0 and abs(v) < 1e-4:
        return f"{v:.2e}"
    return f"{v:.{decimals(v) if nd is None else nd}f}"


def fmt_ci(lo, hi, value) -> str:
    """"[lo, hi]" with the value's decimals, so that the three numbers line up; "" when missing."""
    if not (finite(lo) and finite(hi)):
        return ""
    nd = decimals(float(value)) if finite(value) and float(value) != 0 else None
    return f"[{fmt(lo, nd)}, {fmt(hi, nd)}]"


def pct(v) -> str:
    return f"{100 * float(v):+.1f}%" if finite(v) else "–"


def pct_ci(lo, hi) -> str:
    return f"[{pct(lo)}, {pct(hi)}]" if finite(lo) and finite(hi) else ""


def share(v) -> str:
    """A fraction in [0, 1] as a whole percentage (reach fractions)."""
    return f"{100 * float(v):.0f}%" if finite(v) else "–"


def fmt_p(p) -> str:
    if not finite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_level(v) -> str:
    """A signed ladder level, always with its sign: +0.3, -0.2."""
    return f"{float(v):+g}" if finite(v) else "–"


def text(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    return str(v)


def slug(*parts) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_]+", "_", str(p)) for p in parts)


def level_slug(v) -> str:
    return ("p" if float(v) > 0 else "m") + slug(f"{abs(float(v)):g}")


def value_cell(row) -> Cell:
    if row is None:
        return Cell("–", num=True, cls="missing")
    return Cell(fmt(row.value), fmt_ci(row.lo, row.hi, row.value), num=True)


def bold_best(cells: list[Cell], values: list, better: str) -> None:
    """Bold the best finite value (ties too) when the quantity has a direction and 2+ values compete."""
    if better not in ("lower", "higher"):
        return
    good = [float(v) for v in values if finite(v)]
    if len(good) < 2 or min(good) == max(good):    # nothing to single out
        return
    best = min(good) if better == "lower" else max(good)
    for c, v in zip(cells, values):
        c.bold = finite(v) and float(v) == best


def verdict(lo, hi, better: str) -> str:
    """"good"/"bad" when the interval excludes 0 in the better/worse direction, else ""."""
    if better not in ("lower", "higher") or not (finite(lo) and finite(hi)):
        return ""
    if hi < 0 or lo > 0:
        return "good" if (hi < 0) == (better == "lower") else "bad"
    return ""


ALPHA = 0.05   # a comparison is coloured when it holds at this level after Holm over its family


def family_verdict(lo, hi, better: str, p_holm) -> str:
    """:func:`verdict`, kept only where the comparison's Holm-adjusted p (over its family: the first
    screen, or one level's comparison table) is below ALPHA: each on its own is not a finding."""
    return verdict(lo, hi, better) if finite(p_holm) and p_holm < ALPHA else ""


def p_cell(p, p_holm) -> Cell:
    """The p-value with its Holm-adjusted value beside it ("p = 0.021", "Holm = 0.168")."""
    return Cell(fmt_p(p), f"Holm {fmt_p(p_holm)[2:]}" if finite(p_holm) else "", num=True)


# ---------------------------------------------------------------- plain layouts


def plain_head(labels: list[str], numeric: set[int] = frozenset()) -> list[list[Cell]]:
    return [[Cell(t, th=True, num=i in numeric) for i, t in enumerate(labels)]]


def key_value_table(tid: str, caption: str, keys: list[str], values: dict, lead: str = "key",
                    collapsed: bool = False) -> Table:
    body = [[Cell(k, th=True), Cell(values.get(k, "–"))] for k in keys]
    body = body or [[Cell("none recorded", span=2, cls="missing")]]
    return Table(tid, caption, plain_head([lead, "value"]), body, collapsed=collapsed)


def list_table(tid: str, caption: str, lead: list[str], rows: list[list[Cell]], empty: str,
               collapsed: bool = False) -> Table:
    body = rows or [[Cell(empty, span=len(lead), cls="missing")]]
    return Table(tid, caption, plain_head(lead), body, collapsed=collapsed)
