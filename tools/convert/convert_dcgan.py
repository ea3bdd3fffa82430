"""Convert the DigiFace DCGAN of PyPI gan-face-generate 1.1.1 into the package's safetensors file.

    python tools/convert/convert_dcgan.py [--wheel PATH]

Without --wheel it runs ``pip download gan-face-generate==1.1.1 --no-deps``. Only the weights file
is read, never the package's code (it imports torchvision). The checkpoint is a torch zip that
``torch.load(weights_only=True)`` reads without executing code. Prints the sha256 to put in
bench/latent_edit_bench/assets/register.toml.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import pypi_wheel  # the script's folder, tools/convert/, is on sys.path when it runs
import torch

SOURCE_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"  # weights.tar
OUT = Path(__file__).resolve().parents[2] / "bench" / "latent_edit_bench" / "assets" / "dcgan_digiface.safetensors"

# gan-face-generate's nn.Sequential indices -> our module names
RENAME = {0: "blocks.0.conv", 1: "blocks.0.norm", 3: "blocks.1.conv", 4: "blocks.1.norm",
          6: "blocks.2.conv", 7: "blocks.2.norm", 9: "blocks.3.conv", 10: "blocks.3.norm", 12: "to_rgb"}


def read_weights(wheel: Path) -> bytes:
    return pypi_wheel.read_member(wheel, "gan_face_generate/weights.tar", SOURCE_SHA256)


def convert(data: bytes) -> dict[str, torch.Tensor]:
    sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["netG_state_dict"]
    out = {}
    for key, value in sd.items():
        _, idx, leaf = key.split(".")
        value = value if leaf == "num_batches_tracked" else value.float()
        out[f"{RENAME[int(idx)]}.{leaf}"] = value.contiguous()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="gan_face_generate-1.1.1-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tensors = convert(read_weights(args.wheel or pypi_wheel.download_wheel("gan-face-generate", "1.1.1", tmp)))
    pypi_wheel.save_reproducible(tensors, args.out, "PyPI gan-face-generate 1.1.1 weights.tar")


if __name__ == "__main__":
    main()
