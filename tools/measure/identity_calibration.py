"""Calibrate the identity metric: what descriptor distances mean on the embedded DCGAN.

A face-verification score is read against the scores of same-face and different-face pairs, never on
its own. This measures, with the faceapi-descriptor instrument and the metric's own functions
(latent_edit_bench.metrics.identity):

(a) different faces: all pairs of N seeded DCGAN samples (seed 1000, as `bench run --seed 0` draws them);
(b) the same face under changes that keep it by construction (the first M samples): a 1-pixel shift,
    Gaussian pixel noise, brightness +-5%, a JPEG round trip, a Gaussian blur, and a tiny jitter of z;
(c) real photos of different people, detected (BlazeFace) and aligned to the backbone as `bench invert`
    aligns them: matplotlib's grace_hopper.jpg always; with --photos DIR also scikit-image's
    astronaut.png and face-api's demo photos (sample1..6.jpg, groups of 3-5 people), fetched into DIR
    with `pip download` / `npm pack` (tools/docs/make_instrument_docs.py does the same) unless already there.

Prints a markdown table (percentiles of each distance distribution, the share of pairs under the metric's
threshold = P1 of (a), and the AUC of same vs different) and how the threshold moves with N; --out writes it.

    OMP_NUM_THREADS=1 python tools/measure/identity_calibration.py --photos /tmp/identity-photos --out /tmp/identity.md
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latent_edit_bench.pipeline.run import _processor

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))   # augment_thresholds.py, beside this script
from augment_thresholds import jpeg  # noqa: E402  (the same JPEG round trip as the augment calibration)
QS = (0.1, 1, 5, 50, 95)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def brightness(x: torch.Tensor, f: float) -> torch.Tensor:
    return (((x + 1) / 2 * f).clamp(0, 1)) * 2 - 1


def perturbations(bb, lat: torch.Tensor, x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g)
    views = {
        "shift 1 px": torch.nn.functional.pad(x, (1, 0, 1, 0), mode="replicate")[:, :, :-1, :-1],
        "pixel noise σ = 4/255": (x + noise * 8 / 255).clamp(-1, 1),
        "brightness +5%": brightness(x, 1.05),
        "brightness −5%": brightness(x, 0.95),
        "JPEG q75": jpeg(x, 75),
        "Gaussian blur σ = 0.5 px": blur(x, 0.5),
    }
    for eps in (0.05, 0.1, 0.25, 0.5):   # z ~ N(0, I_100), |z| ~ 10: 0.05-0.1 is a tiny jitter; 0.25-0.5 for scale
        jit = lat + eps * torch.randn(lat.shape, generator=g)
        views[f"z jitter ε = {eps:g}"] = bb.render(jit)
    return views


def photo_files(cache: Path | None) -> list[tuple[str, Path]]:
    """(group, path): grace_hopper always; with a cache folder, astronaut and the face-api demo photos."""
    import matplotlib

    files = [("grace_hopper", Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")]
    if cache is None:
        return files
    spec = importlib.util.spec_from_file_location("make_instrument_docs", ROOT / "tools" / "docs" / "make_instrument_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files.append(("astronaut", mod.source_file("skimage", "astronaut.png", cache)))
    mod.source_file("faceapi", "sample1.jpg", cache)
    files += [(p.stem, p) for p in sorted(cache.glob("sample*.jpg"))]
    return files


def aligned_photos(session, bb, files) -> tuple[list[np.ndarray], list[str], int]:
    """Every face BlazeFace finds, aligned to the backbone's template; (crops, group of each, faces refused)."""
    from latent_edit_bench.invert import NotAligned, align_faces, alignment_template, detected_boxes

    lm = session.instrument("faceapi-landmarks")
    det = session.instrument("mediapipe-blazeface")
    template = alignment_template(bb, lm, batch_size=64)
    crops, groups, refused = [], [], 0
    for group, path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for box in detected_boxes(rgb, det):
            try:
                crops += align_faces(rgb, template, lm, boxes=[box], name=group)
                groups.append(group)
            except NotAligned:
                refused += 1
    return crops, groups, refused


def auc(same: np.ndarray, diff_sorted: np.ndarray) -> float:
    """P(same-face distance < different-face distance), ties counted half (Mann-Whitney)."""
    lo = np.searchsorted(diff_sorted, same, side="left")
    hi = np.searchsorted(diff_sorted, same, side="right")
    return float(np.mean((len(diff_sorted) - hi) + 0.5 * (hi - lo)) / len(diff_sorted))


def row(name: str, d: np.ndarray, t: float, diff_sorted: np.ndarray | None, cos: np.ndarray) -> str:
    q = np.percentile(d, QS)
    a = f"{auc(d, diff_sorted):.3f}" if diff_sorted is not None else "—"
    return (f"| {name} | {len(d):,} | " + " | ".join(f"{v:.3f}" for v in q)
            + f" | {np.mean(d < t):.3f} | {a} | {np.median(cos):.3f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=512, help="DCGAN samples for the different-face pairs")
    p.add_argument("-m", type=int, default=256, help="of these, how many get each same-face change")
    p.add_argument("--seed", type=int, default=1000, help="sample seed (bench run's for --seed 0)")
    p.add_argument("--percentile", type=float, default=1.0, help="the metric's threshold percentile")
    p.add_argument("--photos", type=Path, default=None,
                   help="folder for the real photos (fetched with pip download / npm pack if absent)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = p.parse_args()

    from latent_edit_bench.metrics.identity import pair_distances, percentile, verify
    from latent_edit_bench.pipeline.session import Session
    from latent_edit_bench.plugins import get_plugins

    t0 = time.time()
    torch.manual_seed(0)
    s = Session(get_plugins(), device="cpu")
    bb = s.backbone("dcgan")
    D = s.instrument("faceapi-descriptor")

    def desc(x):
        return D.measure(x)["descriptor"].double()

    with torch.no_grad():
        lat = bb.to_edit(bb.sample_z(args.n, args.seed))
        x = bb.render(lat)
        d0 = desc(x)
        diff = pair_distances(d0)
        t = float(percentile(diff, args.percentile))
        dn = diff.numpy()
        iu = np.triu_indices(args.n, 1)
        cos0 = (torch.nn.functional.normalize(d0, dim=1) @ torch.nn.functional.normalize(d0, dim=1).T).numpy()[iu]
        lines = [f"Embedded DCGAN, {args.n} samples (seed {args.seed}), faceapi-descriptor; distance = Euclidean "
                 f"distance of descriptors; threshold t = P{args.percentile:g} of (a) = {t:.3f}.", "",
                 "| pairs | n | P0.1 | P1 | P5 | P50 | P95 | share < t | AUC vs (a) | median cos |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                 row("(a) different samples", dn, t, None, cos0)]
        m = min(args.m, args.n)
        same_face = {}
        for name, v in perturbations(bb, lat[:m], x[:m], args.seed).items():
            dv = desc(v)
            same_face[name] = (dv - d0[:m]).norm(dim=1)
            same = same_face[name].numpy()
            cos = torch.nn.functional.cosine_similarity(dv, d0[:m], dim=1).numpy()
            lines.append(row(f"(b) same face, {name}", same, t, dn, cos))

        files = photo_files(args.photos)
        crops, groups, refused = aligned_photos(s, bb, files)
        note = ""
        if len(crops) >= 2:
            from latent_edit_bench.measure import to_tensor

            dp = desc(torch.cat([to_tensor(c) for c in crops]))
            i, j = np.triu_indices(len(crops), 1)
            dist = (dp[i] - dp[j]).norm(dim=1).numpy()
            cos = torch.nn.functional.cosine_similarity(dp[i], dp[j], dim=1).numpy()
            g = np.array(groups)
            single = np.isin(g, ["grace_hopper", "astronaut"])
            # certainly different people: two faces of one group photo, or Grace Hopper / the astronaut vs anyone
            sure = (g[i] == g[j]) | single[i] | single[j]
            lines.append(row(f"(c) real photos, different people for certain ({len(crops)} faces)", dist[sure], t,
                             None, cos[sure]))
            lines.append(row("(c) real photos, all pairs of faces", dist, t, None, cos))
            note = (f"(c): {len(crops)} faces aligned ({refused} detected face(s) refused by the alignment check) "
                    f"from {', '.join(sorted(set(groups)))}. 'For certain': pairs within one group photo, or with "
                    f"Grace Hopper or the astronaut; 'all pairs' also pairs faces of different group photos, "
                    f"which may show one person twice (not checked).")
        lines += ["", f"Share of (a) under face-api's own same-person convention (distance < 0.6): "
                      f"{np.mean(dn < 0.6):.3f}."]
        if note:
            lines += ["", note]

        # how the threshold moves with N: P1 of the pairs of random subsets of N of the samples
        rng = np.random.default_rng(0)
        # the 1-px shift etc. are far under any of these thresholds; a z jitter of 0.5 straddles them
        probe = "z jitter ε = 0.5"
        shift = same_face[probe]
        lines += ["", f"The threshold estimated from N originals (200 random subsets of the {args.n} samples):", "",
                  f"| N | pairs | threshold: median | 5%–95% of subsets "
                  f"| share of '{probe}' pairs under it: 5%–95% |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for n in (16, 32, 64, 128, 256):
            if n > args.n:
                continue
            ts, kept = [], []
            for _ in range(200):
                sub = torch.as_tensor(rng.choice(args.n, n, replace=False))
                ref = pair_distances(d0[sub])
                ts.append(float(percentile(ref, args.percentile)))
                kept.append(float(verify(shift, ref, args.percentile)["kept"].mean()))
            lo, hi = np.percentile(ts, [5, 95])
            klo, khi = np.percentile(kept, [5, 95])
            lines.append(f"| {n} | {n * (n - 1) // 2:,} | {np.median(ts):.3f} | {lo:.3f}–{hi:.3f} "
                         f"| {klo:.3f}–{khi:.3f} |")
    lines += ["", f"CPU: {_processor(torch.device('cpu'))}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
                  f"{time.time() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from latent_edit_bench.fs import atomic

        with atomic(args.out) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    main()
