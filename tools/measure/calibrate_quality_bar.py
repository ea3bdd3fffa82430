"""Calibrate the quality bar (bench/latent_edit_bench/trainers/quality_bar.py, docs/train-stylegan2.md) on known inputs, on the CPU.

    python tools/measure/calibrate_quality_bar.py [--n 1000]

Prints, for DCGAN samples made worse in known ways and for an untrained student of the embedded
architecture, the three measures of the bar against the DCGAN reference sets: KID / floor scale,
landmarks found, expression label total variation. A third independent DCGAN set is the "as good
as the DCGAN" row. ~5 minutes at n = 1000 on 2 CPU threads.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = 3
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()

    from latent_edit_bench.backbones.plugin import dcgan_digiface
    from latent_edit_bench.backbones.stylegan2 import EMBEDDED_64, Generator
    from latent_edit_bench.trainers.kid import dcgan_images
    from latent_edit_bench.trainers.quality_bar import BarReference, face_measures, label_shares, total_variation

    dcgan = dcgan_digiface()
    ref = BarReference(dcgan, n=args.n, size=64, device="cpu")
    c = dcgan_images(dcgan, args.n, seed=7_000_003, size=64)     # a third DCGAN set
    torch.manual_seed(0)
    g = Generator(**EMBEDDED_64).eval()
    with torch.no_grad():
        untrained = torch.cat([g.synthesis(g.mapping(z)) for z in torch.randn(args.n, g.z_dim).split(100)])
    variants = {
        "DCGAN, third independent set": c,
        "DCGAN at 32 px, upsampled (bilinear)": F.interpolate(F.interpolate(c, size=32, mode="area"), size=64,
                                                              mode="bilinear", align_corners=False),
        "DCGAN blurred, Gaussian sigma 1 px": gaussian_blur(c, 1.0),
        "DCGAN + Gaussian noise, sd 0.1": (c + 0.1 * torch.randn(c.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1),
        "untrained student (embedded architecture)": untrained,
    }
    print(f"n = {args.n}; floor KID(A, B) = {ref.floor:.3g}, its noise sd = {ref.floor_sd:.3g}, "
          f"floor scale = {ref.floor_scale:.3g}; DCGAN B found {ref.gate.found(ref.b['landmarks']).mean():.1%}; "
          f"expression TV(B, A) = {total_variation(ref.shares_b, ref.shares_a):.3f}\n")
    print("| samples | KID | KID / floor scale | landmarks found | expression TV |")
    print("|---|---|---|---|---|")
    for name, x in variants.items():
        m = face_measures(x, ref.nets, "cpu")
        q = ref.kid_of(m["descriptor"])
        print(f"| {name} | {q['kid']:.3g} | {q['kid'] / ref.floor_scale:.1f} | {ref.gate.found(m['landmarks']).mean():.1%} "
              f"| {total_variation(label_shares(m['expression']), ref.shares_a):.3f} |", flush=True)


if __name__ == "__main__":
    main()
