"""Convert the human labels of the embedded DCGAN's faces into the project's label format (docs/validity.md).

The source (../shared/labels/dcgan_seed2000_human.csv, its README beside it) has one row per face of
`bench sample --backbone dcgan -n 64 --seed 2000`, in that order, with columns sample, gender (M, F,
unsure), smiling (1, 0, unsure) and bald (1, 0, unsure). The project format names CelebA attributes:
gender M/F becomes Male 1/0, smiling Smiling, bald Bald; "unsure" stays "unsure". The header records
which faces these are: backbone, the fingerprint of its weights (as manifest.json's
weights_sha256.backbone.sha256), seed and n. Nothing else changes; no label is edited.

    python tools/convert/convert_labels.py [--source ../shared/labels/dcgan_seed2000_human.csv]

writes bench/latent_edit_bench/assets/labels/dcgan_seed2000_human.csv and prints its sha256 for bench/latent_edit_bench/assets/register.toml.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "latent_edit_bench" / "assets" / "labels" / "dcgan_seed2000_human.csv"
SEED, N = 2000, 64
COLUMNS = {"gender": ("Male", {"M": "1", "F": "0", "unsure": "unsure"}),
           "smiling": ("Smiling", {"1": "1", "0": "0", "unsure": "unsure"}),
           "bald": ("Bald", {"1": "1", "0": "0", "unsure": "unsure"})}


def main() -> None:
    from latent_edit_bench.assets import sha256_file
    from latent_edit_bench.contracts.artifacts import module_fingerprint
    from latent_edit_bench.fs import atomic
    from latent_edit_bench.pipeline.validity import read_labels
    from latent_edit_bench.plugins import get_plugins

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "labels" / "dcgan_seed2000_human.csv")
    args = ap.parse_args()
    with open(args.source, newline="") as f:
        rows = list(csv.DictReader(f))
    if [int(r["sample"]) for r in rows] != list(range(N)):
        raise SystemExit(f"{args.source}: expected samples 0..{N - 1} in order")
    fingerprint = module_fingerprint(get_plugins().backbones.create("dcgan"))
    lines = [
        "# Human labels of the embedded DCGAN's faces: `bench sample --backbone dcgan -n 64 --seed 2000`, "
        "sample 0 first.",
        "# One careful person judged each face by eye from a 3x upscaled render; 'unsure' wherever the face did not",
        "# settle it (Bald: unsure = head covered, cropped or too dark). Converted by tools/convert/convert_labels.py.",
        "# backbone: dcgan",
        f"# weights_sha256: {fingerprint}",
        f"# seed: {SEED}",
        f"# n: {N}",
        "# source: this project's human labeller (shared/labels/README.md of the development workspace)",
        "# licence: MIT (this project's)",
        "sample," + ",".join(name for name, _ in COLUMNS.values()),
    ]
    for r in rows:
        lines.append(",".join([r["sample"]] + [mapping[r[col].strip()] for col, (_, mapping) in COLUMNS.items()]))
    with atomic(OUT) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = read_labels(OUT)   # the project's own parser accepts it
    clear = {a: int((labels.values[a] >= 0).sum()) for a in labels.attrs}
    print(f"wrote {OUT.relative_to(ROOT)}: {len(labels.faces)} faces, clear calls {clear}")
    print(f"sha256 = \"{sha256_file(OUT)}\"")


if __name__ == "__main__":
    main()
