"""Reference outputs of torchvision's ResNet-50 (fc -> 40) for the parity test of bench/latent_edit_bench/instruments/resnet.py.

    pip download --no-deps torchvision==0.28.0 -d /tmp/tvw   # the release built for torch 2.13
    mkdir /tmp/tv && cd /tmp/tv && python -m zipfile -e /tmp/tvw/torchvision-*.whl .
    python tools/parity/reference_resnet50.py --torchvision /tmp/tv

torchvision is never installed into the project: the unpacked wheel goes on sys.path for this one
run. Its compiled ops (a CUDA build) do not load on our CPU torch; the models need none of them, so
the module that registers their meta kernels is stubbed out.

Weights are not torchvision's random init (which our init need not reproduce) but a seeded recipe
per tensor name (``seeded_state_dict``), loaded into both networks. Writes
tests/data/resnet50_torchvision_reference.json: state-dict names and shapes in order, and eval-mode
logits for seeded inputs at two sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import zlib
from pathlib import Path

import torch

SEED = 20240607
SIZES = (64, 97)  # 97: odd size, exercises floor in strided convs and pooling
OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "resnet50_torchvision_reference.json"


def seeded_tensor(name: str, shape, seed: int = SEED) -> torch.Tensor:
    """A deterministic, well-scaled value for the state-dict entry ``name`` (independent of key order)."""
    g = torch.Generator().manual_seed(seed + zlib.crc32(name.encode()))
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(7, dtype=torch.long)
    if len(shape) == 4:  # conv: He scale keeps activations O(1)
        fan_in = shape[1] * shape[2] * shape[3]
        return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    if name.startswith("fc."):
        if leaf == "weight":
            return torch.randn(shape, generator=g) / shape[1] ** 0.5
        return 0.1 * torch.randn(shape, generator=g)
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf == "weight":  # batch-norm scale
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)  # batch-norm bias, running_mean


def seeded_state_dict(model: torch.nn.Module, seed: int = SEED) -> dict[str, torch.Tensor]:
    return {k: seeded_tensor(k, v.shape, seed) for k, v in model.state_dict().items()}


def seeded_input(size: int, seed: int = SEED) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + size)
    return torch.rand(2, 3, size, size, generator=g) * 2 - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torchvision", type=Path, required=True, help="folder holding an unpacked torchvision wheel")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    sys.path.insert(0, str(args.torchvision))
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torchvision
    from torchvision.models import resnet50

    torch.set_num_threads(1)
    net = resnet50(num_classes=40).eval()
    net.load_state_dict(seeded_state_dict(net), strict=True)
    logits = {}
    with torch.no_grad():
        for size in SIZES:
            logits[str(size)] = net(seeded_input(size)).double().tolist()
    ref = {
        "made_by": "tools/parity/reference_resnet50.py",
        "torchvision": torchvision.__version__,
        "torch": torch.__version__,
        "seed": SEED,
        "keys": [[k, list(v.shape)] for k, v in net.state_dict().items()],
        "logits": logits,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(ref, indent=0) + "\n")
    print(f"wrote {args.out} ({len(ref['keys'])} tensors, sizes {SIZES})")


if __name__ == "__main__":
    main()
