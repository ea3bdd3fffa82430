"""Convert the DigiFace DCGAN of PyPI gan-face-generate 1.1.1 into the package's safetensors file.

    python tools/convert_dcgan.py [--wheel PATH]

Without --wheel it runs ``pip download gan-face-generate==1.1.1 --no-deps``. Only the weights file
is read, never the package's code (it imports torchvision). The checkpoint is a torch zip that
``torch.load(weights_only=True)`` reads without executing code. Prints the sha256 to put in
bench/assets/register.toml.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

SOURCE_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"  # weights.tar
OUT = Path(__file__).resolve().parents[1] / "bench" / "assets" / "dcgan_digiface.safetensors"

# gan-face-generate's nn.Sequential indices -> our module names
RENAME = {0: "blocks.0.conv", 1: "blocks.0.norm", 3: "blocks.1.conv", 4: "blocks.1.norm",
          6: "blocks.2.conv", 7: "blocks.2.norm", 9: "blocks.3.conv", 10: "blocks.3.norm", 12: "to_rgb"}


def read_weights(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read("gan_face_generate/weights.tar")
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"weights.tar sha256 {digest} != expected {SOURCE_SHA256}")
    return data


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
        wheel = args.wheel
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "gan-face-generate==1.1.1", "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("gan_face_generate-1.1.1-*.whl"))
        tensors = convert(read_weights(wheel))
    save_file(tensors, str(args.out), metadata={"source": "PyPI gan-face-generate 1.1.1 weights.tar"})
    print(f"{args.out}  sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
