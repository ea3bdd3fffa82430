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


def load_images(paths) -> list[tuple[Path, np.ndarray]]:
    """Read every path as RGB uint8; one BenchError naming all missing or unreadable files."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BenchError(f"image file(s) not found: {', '.join(missing)}")
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append((p, np.asarray(im.convert("RGB"))))
        except (UnidentifiedImageError, OSError) as e:
            raise BenchError(f"cannot read {str(p)!r} as an image: {e}") from None
    return out


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
