"""Convert ST-LPIPS' anti-aliased VGG16 trunk (PyPI stlpips-pytorch 0.0.2, BSD-2) to safetensors.

    python tools/convert/convert_stlpips_vgg.py [--wheel PATH] [--n-convs 4] [--out PATH]

Without --wheel it runs ``pip download stlpips-pytorch==0.0.2 --no-deps``. Only the weights file
``stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth`` is read (sha256-checked, then
``torch.load(weights_only=True)``: tensors only); the package's code is never imported (it
imports torchvision). Keys ``net.sliceK.N.weight`` keep their index N (stlpips' slices keep the
indices of antialiased-cnns' ``vgg16(filter_size=3, pad_more=True).features``) and become
``features.N.weight``, the layout of bench/latent_edit_bench/instruments/vgg.py with ``blur=True``.

The file also holds the BlurPool filters (``sliceK.N.filt``, constants that vgg.py rebuilds: they
are checked equal here, then dropped), LPIPS' ScalingLayer (checked equal to the ImageNet
normalisation vgg.py applies) and the LPIPS linear heads ``lin0..lin4`` (not used, dropped).
By default only the first 4 convs are written (conv1_1..conv2_2: what the conv_1..conv_4 content
loss needs, 1 MB); ``--n-convs 13`` writes the whole trunk (59 MB).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import pypi_wheel  # the script's folder, tools/convert/, is on sys.path when it runs
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / d) for d in ("bench", "methods", "metrics", "reports")]   # a plain checkout: its four roots
from latent_edit_bench.instruments.vgg import IMAGENET_MEAN, IMAGENET_STD, BlurPool, VGGFeatures  # noqa: E402

VERSION = "0.0.2"
MEMBER = "stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth"
SOURCE_SHA256 = "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250"
OUT = ROOT / "bench" / "latent_edit_bench" / "assets" / "vgg16_stlpips.safetensors"


def read_wheel(wheel: Path) -> bytes:
    return pypi_wheel.read_member(wheel, MEMBER, SOURCE_SHA256)


def download_wheel(dest: str) -> Path:
    return pypi_wheel.download_wheel("stlpips-pytorch", VERSION, dest)


def convert(data: bytes, n_convs: int) -> dict[str, torch.Tensor]:
    sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    # ST-LPIPS' ScalingLayer must be the normalisation vgg.py applies: (x - (2 mean - 1)) / (2 std)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    for key, want in (("scaling_layer.shift", 2 * mean - 1), ("scaling_layer.scale", 2 * std)):
        if not torch.allclose(sd[key].flatten(), want, atol=1e-7):
            sys.exit(f"{key} = {sd[key].flatten().tolist()} is not ImageNet's {want.tolist()}")
    trunk = VGGFeatures("vgg16", blur=True, n_convs=n_convs)
    out = {}
    for key, value in sd.items():
        if not key.startswith("net.slice"):
            continue
        _, _, idx, leaf = key.split(".")
        layer = trunk.features[int(idx)] if int(idx) < len(trunk.features) else None
        if leaf == "filt":
            if isinstance(layer, BlurPool) and not torch.equal(value, layer.filt):
                sys.exit(f"{key}: blur filter differs from vgg.py's BlurPool")
            continue
        if layer is not None:
            out[f"features.{idx}.{leaf}"] = value.float().contiguous()
    missing = set(trunk.state_dict()) - set(out)
    if missing:
        sys.exit(f"{MEMBER} lacks {sorted(missing)}")
    trunk.load_state_dict(out, strict=True)  # shapes and names fit the trunk vgg.py builds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help=f"stlpips_pytorch-{VERSION}-py3-none-any.whl")
    ap.add_argument("--n-convs", type=int, default=4, choices=range(1, 14), metavar="1..13")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tensors = convert(read_wheel(args.wheel or download_wheel(tmp)), args.n_convs)
    pypi_wheel.save_reproducible(tensors, args.out, f"PyPI stlpips-pytorch {VERSION} {MEMBER} "
                                 f"(sha256 {SOURCE_SHA256}), first {args.n_convs} convs")


if __name__ == "__main__":
    main()
