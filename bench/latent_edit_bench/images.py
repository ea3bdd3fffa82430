"""Image grids, image files in and out, landmark overlays: without torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import save_image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile a batch into one HWC uint8 image, ``ncol`` per row (default: near-square)."""
    arr = to_uint8(images)
    b, h, w, _ = arr.shape
    ncol = ncol or int(np.ceil(np.sqrt(b)))
    nrow = int(np.ceil(b / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i in range(b):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = arr[i]
    return grid


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")   # what save_png writes, by the path's suffix (PIL)


def save_png(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    img = Image.fromarray(array)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return save_image(img, path)


# The largest image read (width x height), checked on the header before anything is decoded: a
# 14000 x 14000 PNG of a few KB would otherwise take ~600 MB (a "decompression bomb"). --max-pixels raises it.
MAX_PIXELS = 100_000_000
_FLATTEN = ("RGBA", "LA", "PA", "P", "La", "RGBa")   # transparency (a palette may carry it): flattened on white
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")   # 16-bit greyscale PNGs open as one of these


def load_images(paths, max_pixels: int = MAX_PIXELS) -> list[tuple[Path, np.ndarray]]:
    """Read every path as RGB uint8; one BenchError naming all missing files, or the first unreadable one."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BenchError(f"image file(s) not found: {', '.join(missing)}")
    return [(p, read_rgb(p, max_pixels)) for p in paths]


def read_rgb(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One image file as [H, W, 3] uint8 RGB: EXIF rotation applied; 16-bit greyscale scaled (not clipped
    to white); CMYK, palette and greyscale converted; transparency flattened on white. A mode with no
    sound RGB reading (float, LAB, ...) and an image over ``max_pixels`` are refused (BenchError)."""
    from PIL import ImageOps

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None   # our limit, with our message, is checked on the header below
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise BenchError(f"{str(path)!r} is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                                 f"(a guard against decompression bombs); shrink it, or pass --max-pixels {w * h}")
            im = ImageOps.exif_transpose(im)
            if im.mode in _SIXTEEN_BIT:
                grey = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode != "I" or grey.max() > 255 else 255.0   # "I" may hold 8-bit values
                grey = np.clip(np.round(grey * 255.0 / top), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            if im.mode in _FLATTEN:
                rgba = im.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                flat.alpha_composite(rgba)
                return np.asarray(flat.convert("RGB"))
            if im.mode not in ("RGB", "L", "1", "CMYK", "YCbCr"):
                raise BenchError(f"{str(path)!r} has image mode {im.mode!r}, which has no sound RGB reading here; "
                                 f"save it as 8-bit RGB (or greyscale, CMYK, 16-bit greyscale)")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:   # PIL's errors for broken files
        raise BenchError(f"cannot read {str(path)!r} as an image: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


def draw_landmarks(rgb: np.ndarray, landmarks: np.ndarray, min_size: int = 512,
                   color=(0, 255, 64)) -> Image.Image:
    """The image upscaled (nearest) to at least ``min_size`` on its long side, landmarks as dots."""
    h, w = rgb.shape[:2]
    k = max(1, int(np.ceil(min_size / max(h, w))))
    im = Image.fromarray(rgb).resize((w * k, h * k), Image.NEAREST) if k > 1 else Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    r = max(2.0, max(im.size) / 200)
    for x, y in landmarks * k:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))
    return im
