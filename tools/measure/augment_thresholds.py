"""How much do the keep/reject numbers of ``bench augment`` move when the expression certainly does not?

The default thresholds (emotion change 0.15, landmark shift 0.05 IOD) are read against this null: the
same face after changes that keep its expression by construction — a 1-pixel shift (landmarks shifted
back) and a JPEG round trip at quality 90 — measured with the same instruments. Prints quantiles of
both numbers over N backbone samples.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/measure/augment_thresholds.py -n 256
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image


def jpeg(x: torch.Tensor, quality: int = 90) -> torch.Tensor:
    from latent_edit_bench.images import to_uint8

    out = []
    for a in to_uint8(x):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        out.append(torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).astype(np.float32)))
    return torch.stack(out).permute(0, 3, 1, 2) / 127.5 - 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=256)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--emotion", default="fer-emotion")
    args = p.parse_args()
    from latent_edit_bench.pipeline.session import Session
    from latent_edit_bench.plugins import get_plugins

    s = Session(get_plugins(), device="cpu")
    bb = s.backbone("dcgan")
    x = bb.sample(args.n, args.seed)
    lm, em = s.instrument("faceapi-landmarks"), s.instrument(args.emotion)
    shifted = torch.nn.functional.pad(x, (1, 0, 1, 0), mode="replicate")[:, :, :-1, :-1]   # content moves +1 px
    views = {"original": x, "shift 1 px": shifted, "jpeg q90": jpeg(x)}
    m = {k: (lm.measure(v)["landmarks"], em.measure(v)["emotion"]) for k, v in views.items()}
    l0, e0 = m["original"]
    iod = (l0[:, 42:48].mean(1) - l0[:, 36:42].mean(1)).norm(dim=-1)
    qs = (0.5, 0.9, 0.95, 0.99)
    print(f"{args.n} samples of dcgan (seed {args.seed}), emotion instrument {args.emotion}")
    for k in ("shift 1 px", "jpeg q90"):
        l1, e1 = m[k]
        if k == "shift 1 px":
            l1 = l1 - 1.0 / x.shape[-1]            # the content moved by one pixel: take that back out
        tv = 0.5 * (e1 - e0).abs().sum(1)
        shift = (l1 - l0).norm(dim=-1).mean(1) / iod
        print(f"{k:>11}: emotion change (TV) quantiles {qs}: " + ", ".join(f"{v:.3f}" for v in tv.quantile(torch.tensor(qs))))
        print(f"{'':>11}  landmark shift (IOD) quantiles:        " + ", ".join(f"{v:.4f}" for v in shift.quantile(torch.tensor(qs))))


if __name__ == "__main__":
    main()
