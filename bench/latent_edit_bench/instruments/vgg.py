"""VGG perceptual trunks: the instruments ``vgg16-stlpips`` (embedded) and ``vgg19`` (torchvision weights).

Both return the maps of EYE's content loss, named as in PyTorch's neural-style tutorial (each Conv2d
numbered in order; the map is the conv output, before its ReLU):

    conv_1 = conv1_1 [64, H, W]       conv_2 = conv1_2 [64, H, W]
    conv_3 = conv2_1 [128, h, w]      conv_4 = conv2_2 [128, h, w]

with h = H // 2 for vgg19 (max-pool 2/2) and h = H // 2 + 1 for vgg16-stlpips (see below). Input in
[-1, 1] is mapped to [0, 1] and normalised with ImageNet's mean/std inside (ST-LPIPS' ScalingLayer
is the same map). Only the layers up to conv_4 run.

Layouts follow torchvision's ``features.N`` (a flat Sequential). VGG19 is the plain network. The
ST-LPIPS VGG16 (PyPI stlpips-pytorch 0.0.2: ``invariant_networks.vggnet(variant='shift_tolerant')``
= antialiased-cnns' ``models_lpf/vgg.py`` ``vgg16(filter_size=3, pad_more=True)``) replaces every
max-pool with max-pool 2 stride 1 followed by a BlurPool (reflect pad 2 on every side,
[1, 2, 1]x[1, 2, 1]/16 depthwise, stride 2): each pool takes two indices, so conv2_1 is
``features.6`` there, not 5. The blur filter is a constant, rebuilt here, not stored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.instrument import Instrument, Output

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CFG = {  # torchvision's configurations: channels, "M" = pool
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
CONTENT_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4")


class BlurPool(nn.Module):
    """stlpips' Downsample(filt_size=3, stride=2, pad_more=True): reflect pad 2, binomial blur, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = a[:, None] * a[None, :]
        self.register_buffer("filt", (filt / filt.sum()).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def make_features(cfg: list, blur: bool, n_convs: int) -> nn.Sequential:
    """torchvision-style ``features`` up to the ReLU after conv number ``n_convs``."""
    layers, cin, convs = [], 3, 0
    for v in cfg:
        if convs == n_convs:
            break
        if v == "M":
            layers += [nn.MaxPool2d(2, stride=1), BlurPool(cin)] if blur else [nn.MaxPool2d(2, 2)]
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]  # not in-place: conv maps are returned
            cin, convs = v, convs + 1
    return nn.Sequential(*layers)


class VGGFeatures(Instrument):
    """A VGG ``features`` trunk (``arch`` "vgg16" or "vgg19"; ``blur`` for ST-LPIPS' anti-aliased
    pooling; ``n_convs`` convs built, all by default) returning conv_1..conv_4."""

    def __init__(self, arch: str, blur: bool = False, n_convs: int | None = None, name: str | None = None,
                 assets: tuple = ()):
        super().__init__()
        cfg = CFG[arch]
        n_all = sum(v != "M" for v in cfg)
        self.name, self.assets = name or arch, assets
        self.features = make_features(cfg, blur, n_all if n_convs is None else n_convs)
        self.conv_index = [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]
        widths = [v for v in cfg if v != "M"]
        self.outputs = tuple(Output(name, (widths[i], None, None), None, "activation",
                                    description="pre-ReLU conv map [C, h, w] (see bench/latent_edit_bench/instruments/vgg.py)")
                             for i, name in enumerate(CONTENT_LAYERS[:len(self.conv_index)]))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # channels-last: oneDNN's (and cuDNN's) fast layout for these dense 3x3 convs and the pools; on
        # the 2-core CPU an EYE step's content loss (forward on x, forward + backward on x2) takes ~60%
        # of the time it took in NCHW. load_state_dict copies into these tensors, keeping the layout.
        self.to(memory_format=torch.channels_last)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def load(self, state: dict, what: str) -> "VGGFeatures":
        """Strict for every layer built; deeper ``features.*`` and ``classifier.*`` keys (a full
        checkpoint) are ignored; anything else is an error."""
        own = self.state_dict()
        stray = [k for k in state if not k.startswith(("features.", "classifier."))]
        missing = [k for k in own if k not in state]
        if stray or missing:
            raise BenchError(f"{what} is not a VGG state_dict: missing {missing[:4]}, unexpected {stray[:4]}")
        try:
            self.load_state_dict({k: state[k] for k in own}, strict=True)
        except RuntimeError as e:
            raise BenchError(f"{what} does not fit {self.name}: {e}") from None
        return self

    def forward(self, images):
        self.check_images(images)
        x = (((images.to(self.mean) + 1) / 2 - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        out = {}
        for layer in self.features[:self.conv_index[len(self.outputs) - 1] + 1]:
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                out[CONTENT_LAYERS[len(out)]] = x
        return out


def vgg16_stlpips(**_options) -> VGGFeatures:
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path

    inst = VGGFeatures("vgg16", blur=True, n_convs=len(CONTENT_LAYERS), name="vgg16-stlpips",
                       assets=("vgg16-stlpips",))
    return inst.load(load_file(str(asset_path("vgg16-stlpips"))), "asset 'vgg16-stlpips'")


def vgg19(weights: str = "vgg19-torchvision", **_options) -> VGGFeatures:
    """torchvision's ImageNet VGG19 (``vgg19-dcbb9e9d.pth``): a zoo name or a path."""
    from latent_edit_bench import zoo

    path = zoo.resolve(weights)
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain state_dict; no code runs
    if not isinstance(state, dict):
        raise BenchError(f"{path} is not a state_dict")
    return VGGFeatures("vgg19", n_convs=len(CONTENT_LAYERS)).load(state, str(path))
