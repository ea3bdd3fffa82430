"""The contact sheet of a ``bench augment`` folder: one row per source, its kept variants beside it.

Plain HTML next to the images (relative links), so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

CSS = """body{font-family:system-ui,sans-serif;margin:1em}table{border-collapse:collapse}
td{padding:4px;vertical-align:top;text-align:center;font-size:11px}img{width:96px;height:96px;image-rendering:pixelated}
tr{border-bottom:1px solid #ddd}.src{background:#f3f3f3}.none{color:#999;font-style:italic}
.yield td,.yield th{padding:2px 8px;border:1px solid #ccc;font-size:12px}"""


def render_contact_sheet(out: Path, manifest: pd.DataFrame, title: str = "augmented faces") -> Path:
    out = Path(out)
    rows = []
    for name, group in manifest.groupby("name", sort=True):
        src = group.iloc[0]
        label_cols = [c for c in group.columns if c.startswith("label.")]
        labels = "<br>".join(f"{html.escape(c[6:])}: {html.escape(str(src[c]))}" for c in label_cols)
        cells = [f'<td class="src"><img src="sources/{html.escape(name)}.png" alt="{html.escape(name)}"><br>'
                 f'{html.escape(name)}<br>{html.escape(src["emotion_before"])}{"<br>" + labels if labels else ""}</td>']
        kept = group[group["kept"]]
        for _, r in kept.iterrows():
            cells.append(f'<td><img src="{html.escape(r["image"])}"><br>{html.escape(r["attribute"])} {r["level"]:+.1f}'
                         f'<br>{html.escape(r["emotion_after"])} Δe {r["emotion_change"]:.2f}'
                         f'<br>lm {r["landmark_shift_iod"]:.3f} id {r["identity_cos"]:.2f}</td>')
        if kept.empty:
            cells.append('<td class="none">no edit kept</td>')
        cells.append(f'<td class="none">{len(group) - len(kept)} rejected</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    from bench.augment import yield_table

    y = yield_table(manifest)
    ytab = "<table class=yield><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in y.columns) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{v:.2f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                         for v in r) + "</tr>" for r in y.itertuples(index=False)) + "</table>"
    doc = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style>"
           f"<h1>{html.escape(title)}</h1><p>{int(manifest['kept'].sum())} of {len(manifest)} edits kept. "
           f"Each row: the source (grey), then its kept edits (attribute and level, top emotion, Δe = emotion "
           f"change, lm = landmark shift in inter-ocular distances, id = identity cosine). Reasons for every "
           f"rejection: manifest.csv.</p><h2>Yield</h2>{ytab}<h2>Sources and kept edits</h2><table>"
           + "".join(rows) + "</table>")
    path = out / "contact_sheet.html"
    path.write_text(doc)
    return path
