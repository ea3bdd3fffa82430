"""Make tests/fixtures/stlpips_vgg_reference.npz: ST-LPIPS' own VGG16 trunk on fixed photo crops.

    python tools/parity/stlpips_reference.py [--wheel PATH]

The reference must come from stlpips' code, but its package imports torchvision, which has no CPU
build here (and the project must not need it). The trunk, though, is defined without torchvision:
``models_lpf/vgg.py`` (``vgg16(filter_size, pad_more)``, antialiased-cnns' ``make_layers``) and
``models_lpf/downsample.py`` (``Downsample``, the BlurPool). So this script executes ONLY those two
source files, straight from the wheel, as a stand-in package; the one import they need that is not
torch (``from IPython import embed``, unused) is shimmed with an empty module. It builds the trunk
exactly as ``invariant_networks.vggnet(variant='shift_tolerant')`` does (``filter_size=3``,
``pad_more=True``), loads the ``net.*`` tensors of ``vgg_shift_tolerant.pth`` into it (strict), and
normalises inputs with the file's own ScalingLayer buffers, ``(x - shift) / scale``, as
``LPIPS.forward`` does for version 0.1. Conv outputs are caught by forward hooks (cloned: the ReLUs
after them are in-place).

Stored (small): inputs in [-1, 1] (a grace_hopper.jpg face crop at 32x32 and an astronaut.png face
crop at 23x29, odd and non-square; both from the project venv's matplotlib / a downloaded
scikit-image wheel), and for each of conv_1..conv_4 the maps of 8 fixed channels (every channel of a
layer feeds each of these, so all weights are exercised).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "convert"))   # convert_stlpips_vgg, pypi_wheel
from convert_stlpips_vgg import download_wheel, read_wheel  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "stlpips_vgg_reference.npz"
CONV_INDEX = (0, 2, 6, 8)  # the first four Conv2d of vgg16(pad_more=True).features
CHANNELS = {"conv_1": 64, "conv_2": 64, "conv_3": 128, "conv_4": 128}
SKIMAGE = "scikit-image==0.26.0"


def stlpips_trunk(wheel: Path) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    pkg = "stlpips_models_lpf"
    with zipfile.ZipFile(wheel) as zf:
        sources = {m: zf.read(f"stlpips_pytorch/models_lpf/{m}.py").decode() for m in ("downsample", "vgg")}
    sys.modules.setdefault("IPython", types.SimpleNamespace(embed=None))  # shim: imported, never used
    package = types.ModuleType(pkg)
    package.__path__ = []
    sys.modules[pkg] = package
    for name in ("downsample", "vgg"):  # vgg.py does `from .downsample import Downsample`
        mod = types.ModuleType(f"{pkg}.{name}")
        mod.__package__ = pkg
        sys.modules[mod.__name__] = mod
        exec(compile(sources[name], f"stlpips_pytorch/models_lpf/{name}.py", "exec"), mod.__dict__)
        setattr(package, name, mod)
    # vggnet's slices take features[0:34] (relu1_2 .. relu5_3): the last pool + blur are left out
    features = sys.modules[f"{pkg}.vgg"].vgg16(filter_size=3, pad_more=True).features[:34]
    state = torch.load(io.BytesIO(read_wheel(wheel)), map_location="cpu", weights_only=True)
    # net.slice2.6.weight -> 6.weight: the slices keep the indices of vgg16(...).features
    net = {".".join(k.split(".")[2:]): v for k, v in state.items() if k.startswith("net.")}
    features.load_state_dict(net, strict=True)  # includes the BlurPool 'filt' buffers
    return features.eval(), state["scaling_layer.shift"], state["scaling_layer.scale"]


def photo_crops(tmp: str) -> list[np.ndarray]:
    import matplotlib

    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", SKIMAGE, "-d", tmp], check=True)
    with zipfile.ZipFile(next(Path(tmp).glob("scikit_image-*.whl"))) as zf:
        astronaut = Image.open(io.BytesIO(zf.read("skimage/data/astronaut.png"))).convert("RGB")
    crops = [hopper.crop((180, 70, 440, 330)).resize((32, 32), Image.BICUBIC),
             astronaut.crop((160, 30, 330, 230)).resize((29, 23), Image.BICUBIC)]  # PIL size is (W, H)
    return [np.asarray(c, dtype=np.float32).transpose(2, 0, 1)[None] / 127.5 - 1 for c in crops]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="stlpips_pytorch-0.0.2-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    channels = {k: np.sort(rng.choice(n, 8, replace=False)) for k, n in CHANNELS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        features, shift, scale = stlpips_trunk(args.wheel or download_wheel(tmp))
        inputs = photo_crops(tmp)
    caught: list[torch.Tensor] = []
    for i in CONV_INDEX:
        features[i].register_forward_hook(lambda m, inp, out: caught.append(out.detach().clone()))
    arrays = {f"channels_{k}": v for k, v in channels.items()}
    with torch.no_grad():
        for n, x in enumerate(inputs):
            caught.clear()
            features(((torch.from_numpy(x) - shift) / scale))
            arrays[f"input{n}"] = x
            for (layer, idx), out in zip(channels.items(), caught):
                arrays[f"input{n}_{layer}"] = out[:, idx].numpy()
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {args.out.stat().st_size} bytes; " + ", ".join(
        f"{k} {v.shape}" for k, v in arrays.items() if k.startswith("input1")))


if __name__ == "__main__":
    main()
