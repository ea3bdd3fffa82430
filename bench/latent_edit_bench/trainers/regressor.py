"""Train R, the 40-attribute CelebA regressor, from scratch; write it in Enjoy-Your-Editing's format.

    train_regressor("/data/celeba", "celeba_r50.model", epochs=10)

Data: a CelebA folder as distributed,

    DIR/img_align_celeba/*.jpg      the aligned 178x218 crops
    DIR/list_attr_celeba.txt        line 1: count; line 2: the 40 names; then "file v1 ... v40", v in {-1, 1}
    DIR/list_eval_partition.txt     optional: "file 0|1|2" (train/val/test); without it 10% is held out

Images: centre square crop (178x178 of the 178x218 aligned face), PIL bilinear resize to
image_size (antialiased when shrinking), random horizontal flip for training, values in [-1, 1]
(EYE's convention: no ImageNet normalisation). No torchvision.

Model: ResNet-50 (torchvision layout) with fc -> 40, random init (no ImageNet weights here),
BCE-with-logits, Adam, cosine learning-rate decay over all steps, batch-norm in batch mode.

Resumable: every epoch and every ``save_every`` steps, model, optimizer, RNG state and the position
in the epoch go to ``out_path + '.partial'`` (written atomically). The data order of an epoch is a
function of (seed, epoch) only, so a resumed run draws exactly the batches the killed one would
have: on the CPU the final weights are bit-identical to an uninterrupted run. ``max_steps`` stops a
call early on purpose (time-boxed jobs); the next call resumes.

Output: ``{'model': state_dict, 'attributes': [40 names], 'meta': {...}}`` — tensors and plain
Python only, so ``torch.load(weights_only=True)`` reads it; ``meta`` tells the celeba-resnet50
instrument the input size, normalisation and head, and records the per-attribute validation accuracy.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import atomic
from latent_edit_bench.instruments.resnet import ResNet50

IMAGES = "img_align_celeba"
ATTRS = "list_attr_celeba.txt"
PARTITION = "list_eval_partition.txt"
HOLDOUT = 0.1  # validation fraction when the folder has no partition file
FORMAT = "latent-edit-bench celeba-resnet50 v1"


# -- the CelebA folder ---------------------------------------------------------------------------

@dataclass
class CelebASplit:
    root: Path
    files: list[str]          # image names under root/img_align_celeba
    labels: torch.Tensor      # [N, 40] float 0/1


def _attr_table(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path) as f:
        lines = f.read().splitlines()
    if len(lines) < 2:
        raise BenchError(f"{path}: expected a count line and a line of attribute names, found {len(lines)} lines")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise BenchError(f"{path}: first line should be the number of images, got {lines[0][:60]!r}") from None
    names = lines[1].split()
    if tuple(names) != CELEBA_ATTRIBUTES:
        missing = [a for a in CELEBA_ATTRIBUTES if a not in names]
        extra = [a for a in names if a not in CELEBA_ATTRIBUTES]
        detail = f"missing {missing}, unexpected {extra}" if missing or extra else "same names in another order"
        raise BenchError(f"{path}: line 2 must list CelebA's 40 attributes in column order ({detail})")
    rows = [ln.split() for ln in lines[2:] if ln.strip()]
    if len(rows) != count:
        raise BenchError(f"{path}: line 1 says {count} images but {len(rows)} rows follow")
    files, values = [], np.empty((len(rows), 40), dtype=np.int8)
    for i, row in enumerate(rows):
        if len(row) != 41:
            raise BenchError(f"{path}, line {i + 3}: expected a file name and 40 values, got {len(row)} fields")
        try:
            v = [int(x) for x in row[1:]]
        except ValueError:
            raise BenchError(f"{path}, line {i + 3}: values must be -1 or 1: {' '.join(row[1:])[:80]}") from None
        if any(x not in (-1, 1) for x in v):
            raise BenchError(f"{path}, line {i + 3}: values must be -1 or 1: {' '.join(row[1:])[:80]}")
        files.append(row[0])
        values[i] = v
    return files, values


def _partition(path: Path, files: list[str]) -> np.ndarray:
    part = {}
    with open(path) as f:
        for i, ln in enumerate(f):
            row = ln.split()
            if not row:
                continue
            if len(row) != 2 or row[1] not in ("0", "1", "2"):
                raise BenchError(f"{path}, line {i + 1}: expected 'file 0|1|2', got {ln.strip()[:80]!r}")
            part[row[0]] = int(row[1])
    absent = [f for f in files if f not in part]
    if absent:
        raise BenchError(f"{path}: {len(absent)} images of {ATTRS} have no partition, e.g. {absent[:3]}")
    return np.array([part[f] for f in files], dtype=np.int8)


def read_celeba(celeba_dir, seed: int = 0) -> tuple[CelebASplit, CelebASplit]:
    """(train, val) of a CelebA-layout folder, validated; BenchError names what is missing or wrong."""
    root = Path(celeba_dir)
    if not root.is_dir():
        raise BenchError(f"CelebA folder {root} does not exist")
    for name, is_dir in ((IMAGES, True), (ATTRS, False)):
        p = root / name
        if not (p.is_dir() if is_dir else p.is_file()):
            raise BenchError(f"CelebA folder {root} has no {name}{'/' if is_dir else ''} "
                             f"(expected {IMAGES}/*.jpg, {ATTRS} and optionally {PARTITION})")
    files, values = _attr_table(root / ATTRS)
    present = set(os.listdir(root / IMAGES))
    absent = [f for f in files if f not in present]
    if absent:
        raise BenchError(f"{len(absent)} images listed in {ATTRS} are not in {root / IMAGES}, e.g. {absent[:3]}")
    if (root / PARTITION).is_file():
        part = _partition(root / PARTITION, files)
    else:
        g = torch.Generator().manual_seed(seed)
        val = torch.randperm(len(files), generator=g)[: max(1, int(round(HOLDOUT * len(files))))]
        part = np.zeros(len(files), dtype=np.int8)
        part[val.numpy()] = 1
    labels = torch.from_numpy((values > 0).astype(np.float32))

    def split(k):
        idx = np.flatnonzero(part == k)
        return CelebASplit(root, [files[i] for i in idx], labels[torch.from_numpy(idx)])

    return split(0), split(1)


def load_image(path, image_size: int, flip: bool = False) -> torch.Tensor:
    """Centre square crop, bilinear resize, [-1, 1], [3, S, S]."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((image_size, image_size), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32)
    if flip:
        a = a[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) / 127.5 - 1.0


class _Images(torch.utils.data.Dataset):
    """Indexed by (i, flip) so that all randomness is decided by the main process."""

    def __init__(self, split: CelebASplit, image_size: int):
        self.split, self.image_size = split, image_size

    def __len__(self):
        return len(self.split.files)

    def __getitem__(self, key):
        i, flip = key
        path = self.split.root / IMAGES / self.split.files[i]
        return load_image(path, self.image_size, flip), self.split.labels[i]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, augment: bool = True) -> list[list[tuple]]:
    """One epoch's batches of (index, flip) pairs, a function of (seed, epoch) only; a short last batch is dropped."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    flips = (torch.rand(n, generator=g) < 0.5).tolist() if augment else [False] * n
    starts = range(0, n - batch_size + 1, batch_size)
    return [[(order[k], flips[k]) for k in range(b, b + batch_size)] for b in starts]


# -- training ------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    out_path: Path
    finished: bool                  # False when max_steps stopped the call (resume to continue)
    epoch: int                      # epochs completed
    step: int                       # optimizer steps in all
    losses: list[float] = field(default_factory=list)   # training loss of every step, all calls
    val_accuracy: dict = field(default_factory=dict)    # attribute -> accuracy (finished runs)
    val_loss: float | None = None


def cosine_lr(lr: float, step: int, total: int) -> float:
    return 0.5 * lr * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _save_atomic(obj, path: Path):
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def _load_partial(path: Path, config: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise BenchError(f"cannot resume from {path} ({e}); delete it or pass resume=False") from None
    old = state.get("config", {})
    differ = {k: (old.get(k), v) for k, v in config.items() if k != "epochs" and old.get(k) != v}
    if differ:
        listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differ.items())
        raise BenchError(f"{path} belongs to a run with other settings ({listing}); "
                         "delete it or pass resume=False to start over")
    return state


@torch.no_grad()
def evaluate(model, split: CelebASplit, image_size: int, batch_size: int, device, workers: int = 0):
    """Per-attribute accuracy (logit > 0) and mean BCE on a split, batch-norm in eval mode."""
    model.eval()
    keys = [(i, False) for i in range(len(split.files))]
    loader = torch.utils.data.DataLoader(_Images(split, image_size), batch_size=batch_size, sampler=keys,
                                         num_workers=workers)
    correct = torch.zeros(len(CELEBA_ATTRIBUTES), dtype=torch.float64)
    loss, n = 0.0, 0
    for x, y in loader:
        z = model(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
        correct += ((z > 0).float() == y).double().sum(0)
        loss += F.binary_cross_entropy_with_logits(z, y, reduction="sum").item() / y.shape[1]
        n += y.shape[0]
    model.train()
    return (correct / max(n, 1)).tolist(), loss / max(n, 1)


def train_regressor(celeba_dir, out_path, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                    image_size: int = 128, device: str | None = None, seed: int = 0, resume: bool = True,
                    progress: bool = True, save_every: int = 1000, max_steps: int | None = None,
                    workers: int | None = None, augment: bool = True) -> TrainResult:
    """Train ResNet-50 -> 40 CelebA attributes; see the module docstring. Returns a TrainResult.

    celeba_dir: CelebA-layout folder.  out_path: final checkpoint (EYE format); the partial state
    lives at out_path + '.partial' until the run finishes.  epochs: total epochs (a resumed run may
    raise it; the cosine schedule then stretches).  device: 'cpu', 'cuda', ... (default: cuda if
    available).  save_every: also checkpoint every this many steps.  max_steps: stop this call after
    that many steps (keeps the partial).  workers: data-loading processes (default 0 on CPU, up to 8
    otherwise).  resume=False discards an existing partial.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("image_size", image_size)):
        if int(v) < 1:
            raise BenchError(f"{name} must be at least 1, got {v}")
    if max_steps is not None and max_steps < 1:
        raise BenchError(f"max_steps must be at least 1, got {max_steps}")
    if image_size < 32:
        raise BenchError(f"image_size must be at least 32 (ResNet-50 downsamples by 32), got {image_size}")
    train, val = read_celeba(celeba_dir, seed)
    if len(train.files) < batch_size:
        raise BenchError(f"only {len(train.files)} training images in {celeba_dir}: "
                         f"fewer than one batch of {batch_size}")
    config = {"celeba_dir": str(Path(celeba_dir).resolve()), "image_size": int(image_size),
              "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed), "augment": bool(augment),
              "n_train": len(train.files), "n_val": len(val.files), "epochs": int(epochs)}

    torch.manual_seed(seed)  # model init
    model = ResNet50(num_classes=len(CELEBA_ATTRIBUTES)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    epoch, step_in_epoch, step, losses = 0, 0, 0, []
    if resume and partial.is_file():
        state = _load_partial(partial, config)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch, step_in_epoch, step = state["epoch"], state["step_in_epoch"], state["step"]
        losses = list(state["losses"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
    elif partial.exists():
        partial.unlink()

    def save_partial():
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                 "step_in_epoch": step_in_epoch, "step": step, "losses": losses, "config": config,
                 "rng": torch.get_rng_state()}
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        _save_atomic(state, partial)

    steps_per_epoch = len(train.files) // batch_size
    total = steps_per_epoch * epochs
    amp = device.type == "cuda"  # bf16 autocast pays on GPUs only (20x slower on this CPU)
    model = model.to(memory_format=torch.channels_last)  # faster convs on CPU and GPU alike
    data = _Images(train, image_size)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, desc="train-regressor", unit="step")
    model.train()
    done_this_call = 0
    while epoch < epochs:
        batches = epoch_batches(len(train.files), batch_size, seed, epoch, augment)[step_in_epoch:]
        loader = torch.utils.data.DataLoader(data, batch_sampler=batches, num_workers=workers,
                                             pin_memory=device.type == "cuda")
        for x, y in loader:
            for group in opt.param_groups:
                group["lr"] = cosine_lr(lr, step, total)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, step_in_epoch, done_this_call = step + 1, step_in_epoch + 1, done_this_call + 1
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
            stop = max_steps is not None and done_this_call >= max_steps
            if step_in_epoch == steps_per_epoch:
                epoch, step_in_epoch = epoch + 1, 0
            if stop or step_in_epoch == 0 or (save_every and step % save_every == 0):
                save_partial()
            if stop:
                if bar is not None:
                    bar.close()
                return TrainResult(out_path, False, epoch, step, losses)
            if step_in_epoch == 0:
                break  # next epoch
    if bar is not None:
        bar.close()

    t0 = time.time()
    acc, val_loss = evaluate(model, val, image_size, batch_size, device, workers) if val.files else ([], None)
    val_accuracy = dict(zip(CELEBA_ATTRIBUTES, acc))
    majority = (torch.maximum(val.labels.mean(0), 1 - val.labels.mean(0)).tolist() if val.files else [])
    meta = {
        "format": FORMAT,
        "input_size": int(image_size), "normalize": "none", "head": "sigmoid", "antialias": True,
        "input": "[-1, 1] RGB; centre square crop of the aligned CelebA face, bilinear resize",
        "epochs": epoch, "steps": step, "batch_size": batch_size, "lr": lr, "seed": seed,
        "optimizer": "Adam, cosine decay", "loss": "BCE with logits",
        "augment": "horizontal flip" if augment else "none",
        "init": "random (no ImageNet weights)", "n_train": len(train.files), "n_val": len(val.files),
        "val_accuracy": val_accuracy, "val_mean_accuracy": float(np.mean(acc)) if acc else None,
        "val_majority_accuracy": dict(zip(CELEBA_ATTRIBUTES, majority)), "val_loss": val_loss,
        "train_loss_last_epoch": float(np.mean(losses[-steps_per_epoch:])) if losses else None,
        "torch": str(torch.__version__),  # TorchVersion would not load with weights_only
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _save_atomic({"model": state, "attributes": list(CELEBA_ATTRIBUTES), "meta": meta}, out_path)
    if partial.exists():
        partial.unlink()
    if progress:
        print(format_accuracy(val_accuracy, meta["val_majority_accuracy"]))
        print(f"validation: {len(val.files)} images, BCE {val_loss}, evaluated in {time.time() - t0:.0f} s")
        print(f"wrote {out_path}")
    return TrainResult(out_path, True, epoch, step, losses, val_accuracy, val_loss)


def format_accuracy(accuracy: dict, majority: dict | None = None) -> str:
    """A plain table: attribute, validation accuracy, and the majority-class baseline beside it."""
    lines = [f"{'attribute':<22} {'accuracy':>8}" + (f" {'majority':>8}" if majority else "")]
    for name, a in accuracy.items():
        lines.append(f"{name:<22} {a:8.4f}" + (f" {majority[name]:8.4f}" if majority else ""))
    if accuracy:
        mean = float(np.mean(list(accuracy.values())))
        base = f" {float(np.mean(list(majority.values()))):8.4f}" if majority else ""
        lines.append(f"{'mean':<22} {mean:8.4f}{base}")
    return "\n".join(lines)
