"""Calibrate the probe's measured features once, and write the constants into bench/latent_edit_bench/instruments/probe.py.

For each landmark-geometry or colour feature f of the probe, on n seeded DCGAN samples:
centre = median(f), scale = IQR(f) / 1.349 (the standard deviation of a normal with that IQR), so
that score = sigmoid((f - centre) / scale) is 0.5 on the median sample. Network-derived scores (Male,
Smiling, Young) have fixed constants and are not touched.

    python tools/measure/calibrate_probe.py [--n 2000] [--seed 0] [--backbone dcgan] [--dry-run]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
PROBE_PY = ROOT / "bench" / "latent_edit_bench" / "instruments" / "probe.py"
BLOCK = re.compile(r"(# BEGIN CALIBRATION[^\n]*\n)(.*?)(# END CALIBRATION)", re.S)


def measure_features(n: int, seed: int, backbone: str, batch: int = 64) -> dict[str, torch.Tensor]:
    from latent_edit_bench.instruments.probe import MEASURED, Probe
    from latent_edit_bench.plugins import get_plugins

    bb = get_plugins().backbones.create(backbone)
    probe = Probe().eval()
    with torch.no_grad():
        w = bb.to_edit(bb.sample_z(n, seed))
        out: dict[str, list] = {a: [] for a in MEASURED}
        for i in range(0, n, batch):
            f = probe.features(bb.render(w[i:i + batch]))
            for a in MEASURED:
                out[a].append(f[a])
    return {a: torch.cat(v) for a, v in out.items()}


def robust_constants(feats: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    consts = {}
    for a, f in feats.items():
        q25, q50, q75 = torch.quantile(f.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.double))
        consts[a] = (float(q50), float((q75 - q25) / 1.349))
    return consts


def render_block(consts: dict, source: str) -> str:
    lines = [f"CALIBRATION_SOURCE = {source!r}", "CALIBRATION = {   # attribute: (centre, scale) of its feature"]
    lines += [f"    {a!r}: ({c:.6g}, {s:.6g})," for a, (c, s) in sorted(consts.items())]
    return "\n".join(lines) + "\n}\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default="dcgan")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true", help="print the constants, leave probe.py alone")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    consts = robust_constants(measure_features(args.n, args.seed, args.backbone))
    source = f"tools/measure/calibrate_probe.py: {args.backbone}, {args.n} samples, seed {args.seed}"
    block = render_block(consts, source)
    print(block, end="")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if not args.dry_run:
        text = PROBE_PY.read_text()
        if not BLOCK.search(text):
            raise SystemExit(f"no '# BEGIN CALIBRATION' ... '# END CALIBRATION' block in {PROBE_PY}")
        PROBE_PY.write_text(BLOCK.sub(lambda m: m.group(1) + block + m.group(3), text, count=1))
        print(f"wrote the constants into {PROBE_PY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
