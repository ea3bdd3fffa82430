"""The contact sheet of a ``bench augment`` folder: one row per source, its kept variants beside it.

Plain HTML next to the images (relative links), so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from latent_edit_bench.fs import save_image, write_text

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
        photo = (out / "sources" / f"{name}.photo.png").exists()   # a `bench invert` source: its aligned photo first
        cells = ([f'<td class="src"><img src="sources/{html.escape(name)}.photo.png"><br>photo</td>'] if photo else [])
        cells += [f'<td class="src"><img src="sources/{html.escape(name)}.png" alt="{html.escape(name)}"><br>'
                 f'{html.escape(name)}<br>{html.escape(src["emotion_before"])}{"<br>" + labels if labels else ""}</td>']
        kept = group[group["kept"]]
        for _, r in kept.iterrows():
            cells.append(f'<td><img src="{html.escape(r["image"])}"><br>{html.escape(r["attribute"])} {r["level"]:+.1f}'
                         f'<br>{html.escape(r["emotion_after"])} Δe {r["emotion_change"]:.2f}'
                         f'<br>lm {r["landmark_shift_iod"]:.3f} id {r["identity_rank"]:.3f}'
                         f'{"" if r["identity_kept"] else " ✗"}</td>')
        if kept.empty:
            cells.append('<td class="none">no edit kept</td>')
        cells.append(f'<td class="none">{len(group) - len(kept)} rejected</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    from latent_edit_bench.augment import yield_table

    y = yield_table(manifest)
    ytab = "<table class=yield><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in y.columns) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{v:.2f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                         for v in r) + "</tr>" for r in y.itertuples(index=False)) + "</table>"
    doc = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style>"
           f"<h1>{html.escape(title)}</h1><p>{int(manifest['kept'].sum())} of {len(manifest)} edits kept. "
           f"Each row: the source (grey; for an inverted photo, the aligned photo and its reconstruction), then its kept edits (attribute and level, top emotion, Δe = emotion "
           f"change, lm = landmark shift in inter-ocular distances, id = identity rank: the share of pairs of "
           f"different backbone faces closer than source and edit, ✗ where not under the identity threshold). "
           f"Reasons for every rejection: manifest.csv.</p><h2>Yield</h2>{ytab}<h2>Sources and kept edits</h2><table>"
           + "".join(rows) + "</table>")
    return write_text(out / "contact_sheet.html", doc)


def render_contact_png(out: Path, manifest: pd.DataFrame, max_sources: int = 8, max_kept: int = 8,
                       scale: int = 2) -> Path:
    """The same sheet as one PNG (for docs and quick looks): a row per source (first ``max_sources``),
    the source then up to ``max_kept`` kept edits, grey where fewer were kept."""
    import numpy as np
    from PIL import Image

    out = Path(out)
    rows = []
    for name, group in list(manifest.groupby("name", sort=True))[:max_sources]:
        tiles = [np.asarray(Image.open(out / "sources" / f"{name}.png").convert("RGB"))]
        tiles += [np.asarray(Image.open(out / p).convert("RGB")) for p in group.loc[group["kept"], "image"][:max_kept]]
        rows.append(tiles)
    h, w = rows[0][0].shape[:2]
    pad, gap = 2, 6                       # a wider gap after the source column
    sheet = np.full((len(rows) * (h + pad) + pad, (max_kept + 1) * (w + pad) + pad + gap, 3), 255, np.uint8)
    for r, tiles in enumerate(rows):
        for c in range(max_kept + 1):
            y, x = pad + r * (h + pad), pad + c * (w + pad) + (gap if c else 0)
            sheet[y:y + h, x:x + w] = tiles[c] if c < len(tiles) else 200
    img = Image.fromarray(sheet)
    return save_image(img.resize((img.width * scale, img.height * scale), Image.NEAREST), out / "contact_sheet.png")
