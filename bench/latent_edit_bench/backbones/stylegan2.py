"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") in pure PyTorch.

Module and parameter names are those of rosinality/stylegan2-pytorch (``style.1.weight``,
``conv1.conv.modulation.weight``, ``convs.3.activate.bias``, ``to_rgbs.0.conv.weight``,
``noises.noise_0``, ...), so its ``.pt`` checkpoints load with ``strict=True``; NVIDIA
stylegan2-ada-pytorch pickles are converted to these names in :mod:`.formats`.

No compiled ops: up/down-sampling is ``upfirdn2d`` written with ``F.conv2d``, the fused bias +
leaky-ReLU is plain PyTorch, so everything runs on CPU and GPU alike.

    G = Generator(64, channel_multiplier=1, max_channels=128)
    w = G.mapping(z)                       # [B, 512]
    img = G.synthesis(w)                   # W broadcast to every layer; or W+ [B, G.n_latent, 512]
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn
from torch.nn import functional as F

from latent_edit_bench.contracts.backbone import Backbone

# -- low-level ops --------------------------------------------------------------------------------

def make_kernel(k) -> torch.Tensor:
    """1-D taps -> normalised 2-D FIR filter (outer product), as in StyleGAN2."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()

def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), convolve with ``kernel``, keep every ``down``-th pixel.

    Same semantics as rosinality's ``upfirdn2d_native`` with square pads ``(pad0, pad1)`` on both axes.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    conv_pad = 0
    if p0 == p1 and p0 >= 0:
        conv_pad = p0            # let the conv pad: an explicit F.pad copy costs as much as the blur
    else:
        x = F.pad(x, [p0, p1, p0, p1])
    # true convolution = correlation with the flipped kernel; one depthwise conv over all channels
    weight = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, padding=conv_pad, groups=c)

def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = 2 ** 0.5, clamp: float | None = None) -> torch.Tensor:
    """(x + bias) -> leaky ReLU -> * sqrt(2) (gain keeping unit variance), optionally clamped to +-clamp."""
    # leaky ReLU commutes with a positive gain: scale first, in one pass with the bias, then
    # rectify in place (2 passes over the activations instead of 3; memory-bound on CPU)
    if bias is not None:
        x = torch.add((bias * scale).view(1, -1, *([1] * (x.ndim - 2))), x, alpha=scale)
    else:
        x = x * scale
    x = F.leaky_relu_(x, negative_slope)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x

class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU + gain. ``clamp`` reproduces NVIDIA's ``conv_clamp`` (None = off)."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2 ** 0.5,
                 clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale, self.clamp = negative_slope, scale, clamp

    def forward(self, x):
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale, self.clamp)

class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)

class Upsample(nn.Module):
    """2x upsampling with the FIR filter (used on the ToRGB skip path)."""

    def __init__(self, kernel, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)

class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor: int = 1):
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * upsample_factor ** 2   # zero insertion lost this much energy
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)

class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weights stored ~N(0,1), scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}"

class EqualLinear(nn.Module):
    """Linear with equalised learning rate and learning-rate multiplier ``lr_mul`` (0.01 in the mapping net)."""

    def __init__(self, in_dim, out_dim, bias=True, bias_init=0.0, lr_mul=1.0, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self):
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"

# -- synthesis ------------------------------------------------------------------------------------

class ModulatedConv2d(nn.Module):
    """Style-modulated conv (StyleGAN2 eq. 1-3), optionally 2x upsampling through a transposed conv + blur.

    Two equal formulations: ``fused=True`` builds one weight per sample and runs a grouped conv
    (rosinality / NVIDIA default); ``fused=False`` (our default, faster on CPU) scales the input
    activations by the style, runs one shared conv and scales the outputs by the demodulation
    coefficients.
    """

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False,
                 blur_kernel=(1, 3, 3, 1), fused=False):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size, self.in_channel, self.out_channel = kernel_size, in_channel, out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.demodulate, self.fused = demodulate, fused

    def extra_repr(self):
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
                f"demodulate={self.demodulate}, fused={self.fused}")

    def forward(self, x, style):
        style = self.modulation(style)                     # [B, I]
        if self.fused:
            return self._forward_grouped(x, style)
        weight = self.weight[0] * self.scale                 # [O, I, k, k], shared by the batch
        out = x * style[:, :, None, None]
        if self.upsample:
            out = self.blur(F.conv_transpose2d(out, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(out, weight, padding=self.padding)
        if self.demodulate:
            # |w_oi * s_i|^2 summed over i and taps, without materialising per-sample weights
            dcoefs = torch.rsqrt(style.square() @ weight.square().sum([2, 3]).t() + self.eps)
            out = out * dcoefs[:, :, None, None]
        return out

    def _forward_grouped(self, x, style):
        batch, in_ch, height, width = x.shape
        weight = self.scale * self.weight * style.view(batch, 1, in_ch, 1, 1)     # [B, O, I, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum([2, 3, 4]) + self.eps).view(batch, -1, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, batch * in_ch, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            out = self.blur(out.view(batch, self.out_channel, *out.shape[2:]))
        else:
            out = F.conv2d(x, weight.reshape(batch * self.out_channel, in_ch, k, k), padding=self.padding,
                           groups=batch)
            out = out.view(batch, self.out_channel, *out.shape[2:])
        return out

class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))   # per-layer noise strength

    def forward(self, image, noise=None):
        if noise is None:
            b, _, h, w = image.shape
            noise = image.new_empty(b, 1, h, w).normal_()
        return image + self.weight * noise

class ConstantInput(nn.Module):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int):
        return self.input.repeat(batch, 1, 1, 1)

class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU (one W+ layer)."""

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1),
                 demodulate=True, conv_clamp=None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel, clamp=conv_clamp)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise=noise))

class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, added to the upsampled RGB of the previous resolution."""

    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1), conv_clamp=None):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out

def stylegan2_channels(size: int, channel_multiplier: int = 2, channels: dict | None = None,
                       max_channels: int | None = None) -> dict[int, int]:
    """Width per resolution 4..size: rosinality's table (512 up to 32 px, then 16384 * cm / res),
    capped at ``max_channels``, then overridden by any entries of ``channels``."""
    if size < 8 or size & (size - 1):
        raise ValueError(f"StyleGAN2 resolution must be a power of 2 >= 8, got {size}")
    out = {}
    for log in range(2, int(math.log2(size)) + 1):
        res = 2 ** log
        width = 512 if res <= 32 else 16384 * channel_multiplier // res
        out[res] = min(width, max_channels) if max_channels else width
    for res, width in (channels or {}).items():
        if int(res) not in out:
            raise ValueError(f"channels has resolution {res}, not in 4..{size}")
        out[int(res)] = int(width)
    return out

class Generator(nn.Module):
    """StyleGAN2 generator (config F, skip architecture) with rosinality's state-dict layout.

    Args:
        size: output resolution, a power of 2 >= 8.
        style_dim: width of W (512 in the paper).
        n_mlp: number of mapping layers (8 in the paper; 2 in stylegan2-ada "auto" configs).
        channel_multiplier: 2 for config F, 1 for the half-width models (e.g. NVIDIA FFHQ-256).
        channels: optional {resolution: width} overriding the default table, e.g. for small models.
        max_channels: optional cap on every width (e.g. 128 or 256 for a 64 px model).
        lr_mlp: learning-rate multiplier of the mapping layers (0.01).
        blur_kernel: FIR taps of the resampling filter.
        z_dim: width of z (defaults to ``style_dim``).
        conv_clamp: clamp synthesis activations to +-conv_clamp as NVIDIA's ``conv_clamp`` (None = off).

    ``latent_avg`` (the mean W used for truncation) is a non-persistent buffer so the state dict
    equals rosinality's; checkpoint readers set it (rosinality stores it beside ``g_ema``).
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channels: dict | None = None, max_channels: int | None = None, lr_mlp: float = 0.01,
                 blur_kernel=(1, 3, 3, 1), z_dim: int | None = None, conv_clamp: float | None = None):
        super().__init__()
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.z_dim = z_dim or style_dim
        self.channel_multiplier, self.lr_mlp, self.conv_clamp = channel_multiplier, lr_mlp, conv_clamp
        self.blur_kernel = list(blur_kernel)
        self.channels = stylegan2_channels(size, channel_multiplier, channels, max_channels)

        layers = [PixelNorm()]
        for i in range(n_mlp):
            layers.append(EqualLinear(self.z_dim if i == 0 else style_dim, style_dim, lr_mul=lr_mlp,
                                      activation="fused_lrelu"))
        self.style = nn.Sequential(*layers)

        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel, conv_clamp=conv_clamp)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, conv_clamp=conv_clamp)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1          # noise inputs / styled convs
        self.n_latent = self.log_size * 2 - 2                   # W+ layers (convs + ToRGBs, shared)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))

        in_channel = ch[4]
        for i in range(3, self.log_size + 1):
            out_channel = ch[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, conv_clamp=conv_clamp))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel,
                                         conv_clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel, conv_clamp=conv_clamp))
            in_channel = out_channel

        self.register_buffer("latent_avg", torch.zeros(style_dim), persistent=False)
        # NHWC activations: oneDNN's convolutions (the depthwise FIR blur above all) are 25-30%
        # faster on CPU this way; results agree with NCHW to ~1e-5
        self.channels_last = True

    # -- mapping ------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, z_dim] -> w [B, style_dim]."""
        return self.style(z)

    get_latent = mapping   # rosinality's name

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 10000, seed: int | None = 0) -> torch.Tensor:
        """Mean of ``n_latent`` mapped samples, [1, style_dim]; z drawn on the CPU from ``seed``."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n_latent, self.z_dim, generator=g).to(self.input.input.device)
        return torch.cat([self.style(c) for c in z.split(2048)]).mean(0, keepdim=True)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """Truncation trick: w_avg + psi (w - w_avg)."""
        return w if psi == 1 else self.latent_avg + psi * (w - self.latent_avg)

    def set_fused(self, fused: bool) -> "Generator":
        """Choose the modulated-conv formulation (see ``ModulatedConv2d``)."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = fused
        return self

    # -- synthesis ----------------------------------------------------------------------------
    def constant_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def synthesis(self, latent: torch.Tensor, noise: list | None = None, noise_mode: str = "const") -> torch.Tensor:
        """W [B, D] or W+ [B, n_latent, D] -> image [B, 3, size, size] (about [-1, 1]).

        ``noise_mode``: "const" uses the registered noise buffers (deterministic), "random" draws
        fresh noise, "none" adds none; an explicit ``noise`` list wins over the mode.
        """
        if latent.ndim == 2:
            latent = latent[:, None].expand(-1, self.n_latent, -1)
        if latent.ndim != 3 or latent.shape[1] != self.n_latent or latent.shape[2] != self.style_dim:
            raise ValueError(f"expected W+ latents [B, {self.n_latent}, {self.style_dim}], got {list(latent.shape)}")
        if noise is None:
            if noise_mode == "const":
                noise = self.constant_noise()
            elif noise_mode == "random":
                noise = [None] * self.num_layers
            elif noise_mode == "none":
                noise = [torch.zeros_like(n) for n in self.constant_noise()]
            else:
                raise ValueError(f"noise_mode must be const, random or none, not {noise_mode!r}")

        out = self.input(latent.shape[0])
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                         noise[2::2], self.to_rgbs):
            out = conv_up(out, latent[:, i], noise=noise1)
            out = conv(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip.contiguous()

    def forward(self, styles, return_latents=False, inject_index=None, truncation=1.0, truncation_latent=None,
                input_is_latent=False, noise=None, randomize_noise=False):
        """rosinality's interface: ``styles`` is a list of one or two z (or w if ``input_is_latent``)
        tensors; two are mixed at ``inject_index`` (random if None). Returns (image, latent or None).
        Unlike rosinality, noise is constant unless ``randomize_noise``."""
        if not isinstance(styles, (list, tuple)):
            styles = [styles]
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation < 1:
            avg = self.latent_avg if truncation_latent is None else truncation_latent
            styles = [avg + truncation * (s - avg) for s in styles]
        if len(styles) < 2:
            latent = styles[0] if styles[0].ndim == 3 else styles[0][:, None].repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat([styles[0][:, None].repeat(1, inject_index, 1),
                                styles[1][:, None].repeat(1, self.n_latent - inject_index, 1)], 1)
        image = self.synthesis(latent, noise=noise, noise_mode="random" if randomize_noise else "const")
        return image, (latent if return_latents else None)

# -- discriminator --------------------------------------------------------------------------------

class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d (stride 2 when downsampling) -> [bias + leaky ReLU]."""

    def __init__(self, in_channel, out_channel, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1), bias=True,
                 activate=True, conv_clamp=None):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, self.padding = 2, 0
        else:
            stride, self.padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=self.padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias, clamp=conv_clamp))
        super().__init__(*layers)

class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel, blur_kernel=(1, 3, 3, 1), conv_clamp=None):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, conv_clamp=conv_clamp)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel,
                               conv_clamp=conv_clamp)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel, activate=False,
                              bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)

class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with rosinality's state-dict layout.

    Args:
        size: input resolution, a power of 2 >= 8.
        channel_multiplier, channels, max_channels: widths as for :class:`Generator`.
        blur_kernel: FIR taps of the downsampling filter.
        stddev_group: minibatch-stddev group size (4; None = whole batch); the batch must divide by it.
        stddev_feat: number of stddev feature maps appended (1).
        conv_clamp: clamp activations to +-conv_clamp as NVIDIA's ``conv_clamp`` (None = off).

    ``forward(images [B, 3, size, size]) -> logits [B, 1]``.
    """

    def __init__(self, size: int, channel_multiplier: int = 2, channels: dict | None = None,
                 max_channels: int | None = None, blur_kernel=(1, 3, 3, 1), stddev_group: int | None = 4,
                 stddev_feat: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.size, self.blur_kernel, self.conv_clamp = size, list(blur_kernel), conv_clamp
        self.channels = ch = stylegan2_channels(size, channel_multiplier, channels, max_channels)
        self.stddev_group, self.stddev_feat = stddev_group, stddev_feat

        convs = [ConvLayer(3, ch[size], 1, conv_clamp=conv_clamp)]
        in_channel = ch[size]
        for i in range(int(math.log2(size)), 2, -1):
            out_channel = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel, conv_clamp=conv_clamp))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)

        self.final_conv = ConvLayer(in_channel + stddev_feat, ch[4], 3, conv_clamp=conv_clamp)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1),
        )

    def minibatch_stddev(self, x):
        if not self.stddev_feat:
            return x
        batch, channel, height, width = x.shape
        group = batch if self.stddev_group is None else min(batch, self.stddev_group)
        if batch % group:
            raise ValueError(f"discriminator batch {batch} is not a multiple of its stddev group {group}")
        f = self.stddev_feat
        y = x.view(group, -1, f, channel // f, height, width)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)                # [n, F, c, H, W]
        y = y.mean([2, 3, 4]).view(-1, f, 1, 1).repeat(group, 1, height, width)
        return torch.cat([x, y], 1)

    def forward(self, x):
        out = self.final_conv(self.minibatch_stddev(self.convs(x)))
        return self.final_linear(out.view(out.shape[0], -1))

# -- the embedded 64-px StyleGAN2 ---------------------------------------------------------------------

# Trained here from the embedded DCGAN (tools/gpu/train_stylegan2_gpu.sh): 64 px, 10 W+ layers of 512,
# z the DCGAN's 100-D z (the warm start pairs G(z) with DCGAN(z)), widths wide where the face's
# layout is made and narrow at 32-64 px, like the DCGAN's own 512-256-128-64.
EMBEDDED_64 = dict(size=64, style_dim=512, n_mlp=8, z_dim=100, channels={4: 256, 8: 256, 16: 256, 32: 128, 64: 64})

# -- backbone -------------------------------------------------------------------------------------

class StyleGAN2Backbone(Backbone):
    """A StyleGAN2 generator (frozen, eval) as a backbone: edit space W+, constant noise.

    ``truncation`` (psi) is applied in ``to_edit``: w_avg + psi (mapping(z) - w_avg). 1.0 (off) is
    the default, suited to small models trained here; 0.7 is common for FFHQ models.
    """

    edit_space = "w+"

    def random_discriminator(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            d = Discriminator(self.resolution, channels=dict(self.generator.channels))
        return d.eval().requires_grad_(False).to(self.device)

    def __init__(self, generator: Generator, discriminator: Discriminator | None = None, truncation: float = 1.0,
                 name: str = "stylegan2"):
        super().__init__()
        self.name = name
        self.generator = generator.eval().requires_grad_(False)
        if discriminator is not None:
            self.discriminator = discriminator.eval().requires_grad_(False)   # a submodule: moves with .to()
        self.truncation = float(truncation)
        self.resolution = generator.size
        self.z_dim = generator.z_dim
        self.latent_dim = generator.style_dim
        self.n_layers = generator.n_latent

    def to_edit(self, z: torch.Tensor) -> torch.Tensor:
        w = self.generator.truncate(self.generator.mapping(z), self.truncation)
        return w[:, None].repeat(1, self.n_layers, 1)

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesis(latents, noise_mode="const")

    def style_weights(self) -> torch.Tensor:
        """Affine (style) weights of every styled conv, ToRGB excluded as in SeFa: [sum in_ch, latent_dim]."""
        g = self.generator
        mods = [g.conv1.conv.modulation] + [c.conv.modulation for c in g.convs]
        return torch.cat([m.weight * m.scale for m in mods])

    def early_activation(self, latents: torch.Tensor) -> torch.Tensor:
        """Output of the first styled conv (4x4), flattened."""
        g = self.generator
        x = g.conv1(g.input(latents.shape[0]), latents[:, 0], noise=g.noises.noise_0)
        return x.flatten(1)
