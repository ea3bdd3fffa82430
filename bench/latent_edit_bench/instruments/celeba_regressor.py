"""R: the 40-attribute CelebA regressor of Enjoy Your Editing (a ResNet-50 with fc -> 40).

Checkpoint format (EYE's, e.g. ``003_dict.model``): a dict with ``'model'`` (the ResNet-50
state_dict, torchvision names, possibly ``module.``-prefixed by DataParallel). Files written by
``bench zoo train-regressor`` add ``'attributes'`` (the 40 names) and ``'meta'``, which says how the
network expects its input and what its head is:

    meta = {'input_size': 128, 'normalize': 'none', 'head': 'sigmoid', 'antialias': True, ...}

- input_size: images of another size are resized to input_size x input_size first (bilinear;
  antialias: whether shrinking low-pass filters, as PIL does for the trainer's images).
- normalize: 'none' feeds images in [-1, 1] as they are; 'imagenet' maps to [0, 1] and applies
  ImageNet mean/std.
- head: 'sigmoid' (trained with BCE-with-logits) or 'identity' (a raw regression onto {0, 1},
  clamped to [0, 1]).

A file without 'meta' is taken to be EYE's own, and read as the official code uses it
(KelestZ/Latent2im, graphs/stylegan_v2_real/transform_base.py): the 256-px generator output in
[-1, 1] goes straight into the ResNet — no resize, no ImageNet normalisation, no sigmoid — and the
raw outputs are treated as probabilities (clamped inside their BCE). Their companion regressor
script trains the same network with MSE on [0, 1] labels after Resize(256) + CenterCrop(256) +
Normalize(0.5, 0.5). So: input_size 256, normalize 'none', head 'identity', antialias off.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError, MissingAsset
from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.instruments.resnet import ResNet50

EYE_DEFAULTS = {"input_size": 256, "normalize": "none", "head": "identity", "antialias": False}
NORMALIZE = ("none", "imagenet")
HEADS = ("sigmoid", "identity")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HOW_TO_GET = (
    "train one with `bench zoo train-regressor --celeba DIR -o PATH` (CelebA layout: "
    "DIR/img_align_celeba/*.jpg, DIR/list_attr_celeba.txt), or pass the path of an Enjoy-Your-Editing "
    "`003_dict.model` (the ResNet-50 of KelestZ/Latent2im) with --weights"
)


def read_checkpoint(path) -> dict:
    """Load a checkpoint without running code from it; returns the dict holding 'model'."""
    if path is None:
        raise MissingAsset(f"instrument 'celeba-resnet50' needs weights: {HOW_TO_GET}")
    path = Path(path)
    if not path.is_file():
        raise MissingAsset(f"regressor weights not found at {path}: {HOW_TO_GET}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any global outside plain tensors/containers: a pickled class, a function...
        first = str(e).splitlines()[0]
        raise BenchError(f"{path} holds more than tensors (pickled objects would run code on load); refused. "
                         f"Save it as {{'model': state_dict}}. Loader said: {first}") from None
    except Exception as e:  # not a torch file at all
        raise BenchError(f"{path} is not a readable torch checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        kind = type(ckpt).__name__ if not isinstance(ckpt, dict) else f"dict with keys {sorted(map(str, ckpt))[:8]}"
        raise BenchError(f"{path} is not a regressor checkpoint: expected a dict with 'model' (a ResNet-50 "
                         f"state_dict, as EYE's 003_dict.model), got a {kind}")
    return ckpt


def strip_prefix(state: dict, prefix: str = "module.") -> dict:
    """DataParallel saves every key as 'module.<name>'."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_resnet(state: dict, source="checkpoint") -> ResNet50:
    """A ResNet-50 with fc -> 40 from a state_dict; strict, with an error that lists what differs."""
    model = ResNet50(num_classes=len(CELEBA_ATTRIBUTES))
    expected = model.state_dict()
    # old checkpoints may lack batch-norm counters; they do not affect outputs
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if not torch.is_tensor(state[k]) or tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        def listing(keys):
            return ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")
        lines = [f"{source} is not a ResNet-50 with fc -> {len(CELEBA_ATTRIBUTES)} (torchvision names):"]
        if missing:
            lines.append(f"  missing keys: {listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys: {listing(unexpected)}")
        if wrong:
            lines.append("  wrong shapes: " + listing(
                [f"{k} {tuple(getattr(state[k], 'shape', ()))} != {tuple(expected[k].shape)}" for k in wrong]))
        raise BenchError("\n".join(lines))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=False)  # strictness checked above, counters optional
    return model


class CelebAResNet50(Instrument):
    """R(x): 40 CelebA attribute probabilities of images in [-1, 1]; differentiable."""

    name = "celeba-resnet50"
    outputs = (
        Output("attributes", (len(CELEBA_ATTRIBUTES),), (0.0, 1.0), "probability", labels=CELEBA_ATTRIBUTES,
               description="presence of each CelebA attribute, EYE's regressor R"),
    )
    assets = ()  # user-supplied weights, nothing shipped
    differentiable = True
    supported_attributes = CELEBA_ATTRIBUTES

    def __init__(self, model: ResNet50, input_size: int = 256, normalize: str = "none", head: str = "identity",
                 antialias: bool = False, source: str = ""):
        super().__init__()
        if normalize not in NORMALIZE:
            raise BenchError(f"regressor normalize must be one of {NORMALIZE}, got {normalize!r}")
        if head not in HEADS:
            raise BenchError(f"regressor head must be one of {HEADS}, got {head!r}")
        # channels-last convs run 1.4-1.5x faster on this CPU (forward and backward) and suit GPUs
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.input_size = int(input_size)
        self.normalize = normalize
        self.head = head
        self.antialias = bool(antialias)
        self.source = source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)  # a measuring instrument: gradients flow to the images only

    @classmethod
    def from_checkpoint(cls, weights, input_size=None, normalize=None, head=None) -> "CelebAResNet50":
        ckpt = read_checkpoint(weights)
        meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
        names = ckpt.get("attributes")
        if names is not None and tuple(names) != CELEBA_ATTRIBUTES:
            raise BenchError(f"{weights}: its 'attributes' are not CelebA's 40 names in column order")
        conf = {k: meta.get(k, v) for k, v in EYE_DEFAULTS.items()}
        for k, v in (("input_size", input_size), ("normalize", normalize), ("head", head)):
            if v is not None:
                conf[k] = v
        model = load_resnet(strip_prefix(ckpt["model"]), source=str(weights))
        return cls(model, source=str(weights), **conf)

    def train(self, mode: bool = True):
        # batch-norm running statistics are part of the trained regressor: never batch mode
        return super().train(False)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        p = self.mean
        x = images.to(device=p.device, dtype=p.dtype)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=self.antialias)
        if self.normalize == "imagenet":
            x = ((x + 1) / 2 - self.mean) / self.std
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.logits(images)
        probs = torch.sigmoid(z) if self.head == "sigmoid" else z.clamp(0.0, 1.0)
        return {"attributes": probs}


def celeba_resnet50(weights=None, input_size=None, normalize=None, head=None, **_options) -> CelebAResNet50:
    """Registry factory: ``--weights PATH`` (an EYE ``003_dict.model`` or a file from train-regressor)."""
    return CelebAResNet50.from_checkpoint(weights, input_size=input_size, normalize=normalize, head=head)
