"""How much a global brightness/contrast change moves the probe's colour scores.

Renders n DCGAN samples, applies four global affine intensity changes (in [0, 1] units: darken
0.6x, brighten 0.6x + 0.4, contrast 0.6 and 1.4 around each image's mean, clipped to [0, 1]) and
prints the mean |score change| per colour attribute and transform. An edit that only relights the
face should move none of them.

    python tools/measure/probe_invariance.py [--n 48] [--seed 0] [--probe-py PATH] [--all]

``--all`` adds every supported attribute: the network and geometry scores are not normalised, and
show how far face-api's own nets (landmarks included) move under the same changes.

``--probe-py`` scores with another copy of bench/latent_edit_bench/instruments/probe.py (e.g. an older revision saved
to /tmp), imported as a module of latent_edit_bench.instruments so its relative imports resolve: that is how
the "before" numbers in docs/attributes.md were made.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / d) for d in ("bench", "methods", "metrics", "reports")]   # a plain checkout: its four roots

# The colour-based attributes (older probe.py revisions have no COLOUR_ATTRIBUTES constant).
COLOURS = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Pale_Skin", "Wearing_Lipstick",
           "Bushy_Eyebrows")


def _unit(x):
    return (x + 1) / 2


def _signed(u):
    return u.clamp(0, 1) * 2 - 1


def _contrast(c):
    def f(x):
        u = _unit(x)
        m = u.mean(dim=(1, 2, 3), keepdim=True)
        return _signed((u - m) * c + m)
    return f


# name -> images in [-1, 1] -> images in [-1, 1]; the affine maps act on [0, 1] intensities.
TRANSFORMS = {
    "darken x0.6": lambda x: _signed(0.6 * _unit(x)),
    "brighten 0.6x+0.4": lambda x: _signed(0.6 * _unit(x) + 0.4),
    "contrast x0.6": _contrast(0.6),
    "contrast x1.4": _contrast(1.4),
}


def load_probe_module(path: str | None):
    if path is None:
        from latent_edit_bench.instruments import probe
        return probe
    name = "latent_edit_bench.instruments._probe_under_test"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def colour_scores(probe, images, attrs=COLOURS) -> torch.Tensor:
    """[B, len(attrs)] scores from one features() call (all colour features share the landmark net)."""
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES

    k = [CELEBA_ATTRIBUTES.index(a) for a in attrs]
    if not set(attrs) <= set(COLOURS):
        return probe(images)["attributes"][:, k]
    f = probe.features(images, only=attrs[0])
    raw = torch.stack([f[a] for a in attrs], 1)
    return torch.sigmoid((raw - probe.centre[k]) / probe.scale[k])


def invariance_table(probe, images, attrs=COLOURS) -> dict[str, dict[str, float]]:
    """{transform: {attr: mean |Δscore|}} over the images."""
    with torch.no_grad():
        base = colour_scores(probe, images, attrs)
        return {t: dict(zip(attrs, (colour_scores(probe, fn(images), attrs) - base).abs().mean(0).tolist()))
                for t, fn in TRANSFORMS.items()}


def format_table(table: dict[str, dict[str, float]]) -> str:
    attrs = list(next(iter(table.values())))
    lines = ["| attribute | " + " | ".join(table) + " |", "| --- |" + " ---: |" * len(table)]
    lines += [f"| {a} | " + " | ".join(f"{table[t][a]:.3f}" for t in table) + " |" for a in attrs]
    worst = max((v, a, t) for t, row in table.items() for a, v in row.items())
    lines.append(f"\nworst: {worst[0]:.3f} ({worst[1]}, {worst[2]})")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default="dcgan")
    ap.add_argument("--probe-py", default=None, help="path of a probe.py to score with (default: the package's)")
    ap.add_argument("--all", action="store_true", help="every supported attribute, not only the colour ones")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from latent_edit_bench.plugins import get_plugins

    mod = load_probe_module(args.probe_py)
    probe = mod.Probe().eval()
    images = get_plugins().backbones.create(args.backbone).sample(args.n, args.seed)
    print(f"mean |Δscore| over {args.n} {args.backbone} samples (seed {args.seed}), probe: {args.probe_py or 'bench'}")
    attrs = COLOURS + tuple(a for a in mod.SUPPORTED if a not in COLOURS) if args.all else COLOURS
    print(format_table(invariance_table(probe, images, attrs)))


if __name__ == "__main__":
    main()
