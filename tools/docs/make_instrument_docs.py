"""Regenerate the images of docs/instruments.md: landmark overlays on real photos, and a DCGAN grid.

    python tools/docs/make_instrument_docs.py [--sources DIR] [--out docs/img]

Photos: matplotlib's grace_hopper.jpg (installed with seaborn), scikit-image's astronaut.png (read
from the wheel that `pip download scikit-image==0.26.0 --no-deps` fetches; skimage is never installed)
and face-api's demo photos (from `npm pack @vladmandic/face-api@1.7.15`). Both downloads are cached in
--sources. The instruments take face crops, so each photo is cropped around a hand-picked rough box
and the crop is then re-centred three times on the landmarks found in it (a tight crop: see face_crop).
Prints the measurements as markdown for the docs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / d) for d in ("bench", "methods", "metrics", "reports")]   # a plain checkout: its four roots

from latent_edit_bench.measure import DEEPFACE_EMOTIONS, Instruments, draw_landmarks  # noqa: E402

SKIMAGE = "scikit-image==0.26.0"
FACEAPI = "@vladmandic/face-api@1.7.15"
# name: (source, file, rough face box x0, y0, x1, y1 in the photo's pixels)
PHOTOS = {
    "grace_hopper": ("matplotlib", "grace_hopper.jpg", (140, 60, 380, 340)),
    "astronaut": ("skimage", "astronaut.png", (140, 10, 310, 190)),
    "faceapi_sample1": ("faceapi", "sample1.jpg", (1344, 144, 1656, 480)),
    "faceapi_sample3a": ("faceapi", "sample3.jpg", (528, 216, 888, 600)),
    "faceapi_sample3b": ("faceapi", "sample3.jpg", (1440, 216, 1776, 552)),
    "faceapi_sample6": ("faceapi", "sample6.jpg", (660, 320, 900, 560)),
}
ABBREV = {"Male": "Ma", "Young": "Yo", "Smiling": "Sm", "Mouth_Slightly_Open": "MO", "Narrow_Eyes": "NE",
          "Bald": "Bd", "Black_Hair": "Bk", "Blond_Hair": "Bl", "Brown_Hair": "Br", "Gray_Hair": "Gr",
          "Pale_Skin": "PS", "Wearing_Lipstick": "WL", "Big_Lips": "BL", "Big_Nose": "BN",
          "Bushy_Eyebrows": "BE"}


def source_file(kind: str, name: str, cache: Path) -> Path:
    if kind == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / name
    if target.exists():
        return target
    if kind == "skimage":
        subprocess.run([sys.executable, "-m", "pip", "download", SKIMAGE, "--no-deps", "-d", str(cache)], check=True)
        wheel = next(cache.glob("scikit_image-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read(f"skimage/data/{name}"))
    elif kind == "faceapi":
        subprocess.run(["npm", "pack", FACEAPI, "--pack-destination", str(cache)], check=True, cwd=cache)
        tgz = next(cache.glob("vladmandic-face-api-*.tgz"))
        with tarfile.open(tgz) as t:
            for m in t.getmembers():
                if m.name.startswith("package/demo/sample") and m.name.endswith(".jpg"):
                    (cache / Path(m.name).name).write_bytes(t.extractfile(m).read())
    return target


def face_crop(rgb: np.ndarray, box, inst: Instruments, rounds: int = 3, k: float = 1.3, up: float = 0.06):
    """Crop ``box``, then re-centre on the landmarks: side k x their extent, shifted up by ``up`` x side.

    face-api's landmark net wants tight crops (its own pipeline feeds the detector's box): on these
    photos the mean distance to dlib's points is 5-10% of the inter-ocular distance at k = 1.2-1.4,
    10-20% at 1.5 and 30% or worse at 1.8.
    """
    from latent_edit_bench.measure import to_pixels, to_tensor
    from latent_edit_bench.instruments.probe import pad_square

    x0, y0, x1, y1 = box
    for _ in range(rounds):
        crop = rgb[y0:y1, x0:x1]
        with torch.no_grad():
            lm = inst.landmarks(pad_square(to_tensor(crop)))["landmarks"][0]
        pts = to_pixels(lm, crop.shape[1], crop.shape[0]) + [x0, y0]
        (lx, ly), (hx, hy) = pts.min(0), pts.max(0)
        side = k * max(hx - lx, hy - ly)
        cx, cy = (lx + hx) / 2, (ly + hy) / 2 - up * side
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(rgb.shape[1], cx + side / 2)), int(min(rgb.shape[0], cy + side / 2))
    return rgb[y0:y1, x0:x1]


def dcgan_grid(inst: Instruments, out: Path, n: int = 16, seed: int = 0, scale: int = 4):
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.plugins import get_plugins
    from latent_edit_bench.images import to_uint8

    bb = get_plugins().backbones.create("dcgan")
    images = bb.sample(n, seed)
    with torch.no_grad():
        res = inst.attributes(images)
    attrs, lms = res["attributes"], res["landmarks"]
    tiles = []
    for i, rgb in enumerate(to_uint8(images)):
        px = lms[i].numpy() * rgb.shape[0]
        tile = draw_landmarks(rgb, px, min_size=rgb.shape[0] * scale)
        vals = [f"{ABBREV[a]} {attrs[i, CELEBA_ATTRIBUTES.index(a)]:.2f}" for a in ABBREV]
        text = "\n".join("  ".join(vals[j:j + 5]) for j in range(0, len(vals), 5))
        canvas = Image.new("RGB", (tile.width, tile.height + 42), "white")
        canvas.paste(tile, (0, 0))
        ImageDraw.Draw(canvas).multiline_text((4, tile.height + 2), text, fill=(0, 0, 0), spacing=2)
        tiles.append(canvas)
    w, h, ncol = tiles[0].width, tiles[0].height, 4
    grid = Image.new("RGB", (ncol * (w + 4) + 4, ((n + ncol - 1) // ncol) * (h + 4) + 4), "white")
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncol)
        grid.paste(t, (4 + c * (w + 4), 4 + r * (h + 4)))
    grid.save(out)
    return attrs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=Path, default=Path("/tmp/bench-doc-sources"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--dlib", action="store_true", help="also report the landmark distance to dlib's")
    args = ap.parse_args(argv)
    args.sources.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    inst = Instruments("default")
    ref = None
    if args.dlib:
        from latent_edit_bench.measure import DlibReference

        ref = DlibReference()
    rows = []
    for name, (kind, file, box) in PHOTOS.items():
        rgb = np.asarray(Image.open(source_file(kind, file, args.sources)).convert("RGB"))
        crop = face_crop(rgb, box, inst)
        Image.fromarray(crop).save(args.sources / f"crop_{name}.png")
        m = inst.measure(Path(f"{name}.png"), crop)
        draw_landmarks(crop, m.landmarks).save(args.out / f"overlay_{name}.png")
        if ref is not None:
            from latent_edit_bench.measure import landmark_error

            m.dlib_error = landmark_error(m.landmarks, ref.landmarks(crop)[0])
        rows.append((name, crop.shape, m))
    attrs = dcgan_grid(inst, args.out / "dcgan_probe_grid.png")

    print("| photo | crop | " + " | ".join(f"{e} fer / fa" for e in DEEPFACE_EMOTIONS) + " | age | male |"
          + (" dlib % IOD |" if ref else ""))
    print("|---" * (len(DEEPFACE_EMOTIONS) + 4 + bool(ref)) + "|")
    for name, shape, m in rows:
        fer, fa = m.emotions["fer-emotion"], m.emotions["faceapi-expression"]
        emo = " | ".join(f"{fer[e]:.2f} / {fa[e]:.2f}" for e in DEEPFACE_EMOTIONS)
        print(f"| {name} | {shape[1]}x{shape[0]} | {emo} | {m.age:.1f} | {m.male:.3f} |"
              + (f" {m.dlib_error:.1f} |" if ref else ""))
    print()
    names = list(ABBREV)
    print("| photo | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for name, _, m in rows:
        print(f"| {name} | " + " | ".join(f"{m.attributes[a]:.2f}" for a in names) + " |")
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES

    print("| DCGAN seed 0, mean of 16 | " + " | ".join(
        f"{attrs[:, CELEBA_ATTRIBUTES.index(a)].mean():.2f}" for a in names) + " |")


if __name__ == "__main__":
    main()
