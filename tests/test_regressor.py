"""R (celeba-resnet50): torchvision parity, EYE checkpoint loading, and the CelebA trainer end to end."""

from __future__ import annotations

import importlib.util
import os
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError, MissingAsset
from latent_edit_bench.instruments.celeba_regressor import CelebAResNet50, celeba_resnet50
from latent_edit_bench.instruments.resnet import ResNet50
from latent_edit_bench.trainers.regressor import load_image, read_celeba, train_regressor

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "resnet50_torchvision_reference.json"


def _reference_tool():
    spec = importlib.util.spec_from_file_location("reference_resnet50", ROOT / "tools" / "parity" / "reference_resnet50.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- the network -----------------------------------------------------------------------------------

def test_resnet50_matches_torchvision():
    ref = json.loads(REFERENCE.read_text())
    tool = _reference_tool()
    net = ResNet50(num_classes=40).eval()
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == ref["keys"]
    net.load_state_dict(tool.seeded_state_dict(net, ref["seed"]))
    with torch.no_grad():
        for size, logits in ref["logits"].items():
            want = torch.tensor(logits)
            got = net(tool.seeded_input(int(size), ref["seed"])).double()
            assert (got - want).abs().max() <= 1e-5 * want.abs().max(), size


# -- the instrument ------------------------------------------------------------------------------

def _eye_model(seed=0) -> ResNet50:
    """A random R whose raw outputs mostly fall inside (0, 1), so the EYE clamp does not hide differences."""
    torch.manual_seed(seed)
    net = ResNet50(num_classes=40).eval()
    with torch.no_grad():
        net.fc.weight.mul_(0.02)
        net.fc.bias.fill_(0.5)
    return net


class NotWeights:
    """Pickled by reference: loading it would import and run this module."""

    def __init__(self):
        self.x = 1


def test_eye_checkpoint_loads_and_matches(tmp_path):
    net = _eye_model()
    sd = {"module." + k: v for k, v in net.state_dict().items()}  # as DataParallel saves it
    path = tmp_path / "003_dict.model"
    torch.save({"model": sd, "optm": {"state": {}, "param_groups": []}}, path)
    r = celeba_resnet50(weights=path)
    assert (r.input_size, r.normalize, r.head) == (256, "none", "identity")  # the official usage
    assert r.output("attributes").labels == CELEBA_ATTRIBUTES and r.supported_attributes == CELEBA_ATTRIBUTES
    g = torch.Generator().manual_seed(1)
    for size in (256, 64):
        x = torch.rand(2, 3, size, size, generator=g) * 2 - 1
        y = r(x)["attributes"]
        with torch.no_grad():
            want = net(F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False) if size != 256 else x)
        assert y.shape == (2, 40)
        torch.testing.assert_close(y, want.clamp(0, 1), rtol=0, atol=1e-5)  # memory formats differ
        assert ((y > 0) & (y < 1)).float().mean() > 0.9  # not a saturated comparison
    x = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1).requires_grad_()
    r(x)["attributes"][0, CELEBA_ATTRIBUTES.index("Smiling")].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sigmoid_head_any_size(tmp_path):
    net = ResNet50(num_classes=40).eval()
    path = tmp_path / "r.model"
    meta = {"input_size": 64, "normalize": "imagenet", "head": "sigmoid", "antialias": False}
    torch.save({"model": net.state_dict(), "attributes": list(CELEBA_ATTRIBUTES), "meta": meta}, path)
    r = CelebAResNet50.from_checkpoint(path)
    x = torch.rand(3, 3, 80, 80) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = torch.sigmoid(net(((F.interpolate(x, size=(64, 64), mode="bilinear") + 1) / 2 - mean) / std))
    torch.testing.assert_close(r(x)["attributes"], want, rtol=0, atol=1e-5)


def test_bad_checkpoints_are_refused(tmp_path):
    net = ResNet50(num_classes=40)
    sd = net.state_dict()
    bad = dict(sd)
    del bad["layer3.2.bn2.running_var"]
    bad["head.weight"] = torch.zeros(1)
    bad["fc.weight"] = torch.zeros(1000, 2048)
    torch.save({"model": bad}, tmp_path / "keys.model")
    with pytest.raises(BenchError) as e:
        celeba_resnet50(weights=tmp_path / "keys.model")
    msg = str(e.value)
    assert "missing keys: layer3.2.bn2.running_var" in msg and "unexpected keys: head.weight" in msg
    assert "fc.weight (1000, 2048) != (40, 2048)" in msg

    torch.save(sd, tmp_path / "bare.model")  # a state_dict not wrapped in {'model': ...}
    with pytest.raises(BenchError, match="expected a dict with 'model'"):
        celeba_resnet50(weights=tmp_path / "bare.model")

    torch.save({"model": sd, "extra": NotWeights()}, tmp_path / "code.model")
    with pytest.raises(BenchError, match="refused"):
        celeba_resnet50(weights=tmp_path / "code.model")

    with pytest.raises(MissingAsset, match="bench zoo train-regressor"):
        celeba_resnet50(weights=None)
    with pytest.raises(MissingAsset, match="003_dict.model"):
        celeba_resnet50(weights=tmp_path / "absent.model")


# -- the trainer -----------------------------------------------------------------------------------

BLOND, GLASSES = CELEBA_ATTRIBUTES.index("Blond_Hair"), CELEBA_ATTRIBUTES.index("Eyeglasses")


def make_celeba(root: Path, n: int = 32, n_train: int = 24) -> Path:
    """A tiny CelebA-layout folder: brightness decides Blond_Hair, a dark bar Eyeglasses; 40x48 images."""
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, part = [], []
    for i in range(n):
        blond, glasses = i % 2 == 0, (i // 2) % 2 == 0
        img = np.clip((190 if blond else 60) + rng.normal(0, 20, (48, 40, 3)), 0, 255)
        if glasses:
            img[20:26, 4:36] = 0
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(img.astype(np.uint8)).save(root / "img_align_celeba" / name, quality=95)
        v = [-1] * 40
        v[BLOND], v[GLASSES] = (1 if blond else -1), (1 if glasses else -1)
        rows.append(f"{name} " + " ".join(f"{x:2d}" for x in v))
        part.append(f"{name} {0 if i < n_train else 1}")
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    return root


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    return make_celeba(tmp_path_factory.mktemp("celeba"))


# One thread, here and in the CLI's process: with 2 threads this training is not bit-reproducible run to
# run on some CPUs (an AVX-512 Xeon: weights 3.5e-3 apart in some runs; one thread: equal in every run),
# and the tests below compare trainings bit for bit.
TORCH_THREADS = 1
SETTINGS = dict(epochs=2, batch_size=8, lr=1e-3, image_size=32, device="cpu", seed=3, progress=False)


@pytest.fixture(scope="module")
def trained(celeba, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r.model"
    return train_regressor(celeba, out, **SETTINGS)


def test_training_learns_and_loads(trained, celeba):
    assert trained.finished and trained.step == 6 and trained.epoch == 2
    assert np.mean(trained.losses[-2:]) < 0.5 * np.mean(trained.losses[:2])
    assert not Path(str(trained.out_path) + ".partial").exists()
    ckpt = torch.load(trained.out_path, weights_only=True)
    assert ckpt["attributes"] == list(CELEBA_ATTRIBUTES) and ckpt["meta"]["input_size"] == 32

    # the instrument reproduces the trainer's own validation accuracy: same preprocessing, head and weights
    r = celeba_resnet50(weights=trained.out_path)
    _, val = read_celeba(celeba)
    x = torch.stack([load_image(celeba / "img_align_celeba" / f, 32) for f in val.files])
    p = r(x)["attributes"]
    assert p.shape == (8, 40) and p.min() >= 0 and p.max() <= 1
    acc = ((p > 0.5).float() == val.labels).float().mean(0)
    assert acc.tolist() == pytest.approx([trained.val_accuracy[a] for a in CELEBA_ATTRIBUTES], abs=1e-9)
    assert r(torch.zeros(2, 3, 64, 64))["attributes"].shape == (2, 40)


def test_resume_is_exact(trained, celeba, tmp_path):
    out = tmp_path / "r.model"
    first = train_regressor(celeba, out, max_steps=3, **SETTINGS)  # "killed" after epoch 1
    assert not first.finished and first.epoch == 1 and Path(str(out) + ".partial").exists() and not out.exists()
    mid = train_regressor(celeba, out, max_steps=1, **SETTINGS)  # and once inside epoch 2
    assert (mid.epoch, mid.step) == (1, 4)
    done = train_regressor(celeba, out, **SETTINGS)
    assert done.finished and done.losses == trained.losses
    a = torch.load(trained.out_path, weights_only=True)["model"]
    b = torch.load(out, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    train_regressor(celeba, out, max_steps=1, **SETTINGS)
    with pytest.raises(BenchError, match="other settings.*lr: 0.001 -> 0.002"):  # never mixes two runs
        train_regressor(celeba, out, **{**SETTINGS, "lr": 2e-3})


def test_folder_is_validated(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        read_celeba(tmp_path / "nowhere")
    root = make_celeba(tmp_path / "c", n=4, n_train=3)
    (root / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(BenchError, match="not in .*e.g. \\['000002.jpg'\\]"):
        read_celeba(root)
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    lines[1] = lines[1].replace("Smiling", "Smile")
    (root / "list_attr_celeba.txt").write_text("\n".join(lines))
    with pytest.raises(BenchError, match="missing \\['Smiling'\\], unexpected \\['Smile'\\]"):
        read_celeba(root)
    (root / "list_attr_celeba.txt").unlink()
    with pytest.raises(BenchError, match="list_attr_celeba.txt"):
        read_celeba(root)


@pytest.mark.slow
def test_cli_trains_the_same_model(trained, celeba, tmp_path):
    """`bench zoo train-regressor` end to end on the generated folder: same weights as the function call."""
    import subprocess
    import sys

    ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "cli.model"
    res = subprocess.run([sys.executable, "-m", "latent_edit_bench.cli", "zoo", "train-regressor", "--celeba", str(celeba),
                          "-o", str(out), "--epochs", "2", "--batch-size", "8", "--image-size", "32",
                          "--seed", "3", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    assert "finished at epoch 2" in res.stdout
    a = torch.load(trained.out_path, weights_only=True)["model"]
    b = torch.load(out, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    bad = subprocess.run([sys.executable, "-m", "latent_edit_bench.cli", "zoo", "train-regressor", "--celeba", str(tmp_path),
                          "-o", str(tmp_path / "x.model")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "list_attr_celeba.txt" in bad.stderr
