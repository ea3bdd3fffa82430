"""`bench invert`'s output folder (docs/augment.md): writing one photo's files, reading them back, quality.csv.

``aligned/<name>.png``, ``recon/<name>.png``, ``latents/<name>.safetensors`` (the latent plus its quality
numbers in the metadata) and ``quality.csv`` (rebuilt from the latents files every time). A photo whose
latents file exists is done: a killed run resumes, and nothing finished is lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import save_csv, save_image, save_tensors

QUALITY_COLUMNS = ("perceptual", "pixel_mse", "landmark_error_iod", "identity_cos", "emotion_agreement",
                   "same_top_emotion", "loss")


def latents_file(out: Path, name: str) -> Path:
    return out / "latents" / f"{name}.safetensors"


def output_names(paths: list[Path]) -> list[str]:
    """Output names per photo: the file stem, made unique with the parent folder when stems collide."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def write_inverted(out: Path, name: str, crop: np.ndarray, recon: np.ndarray, tensors: dict, meta: dict) -> None:
    """One photo's files: its aligned crop, its reconstruction, then its latents file."""
    for folder, image in (("aligned", crop), ("recon", recon)):
        save_image(Image.fromarray(image), out / folder / f"{name}.png")
    save_tensors(latents_file(out, name), tensors, metadata=meta)   # written last: marks the photo done


def read_inverted(folder: Path) -> list[dict]:
    """Every inverted photo of a ``bench invert`` folder: metadata plus the latent [1, L, D], sorted by name."""
    from safetensors import safe_open

    folder = Path(folder)
    files = sorted((folder / "latents").glob("*.safetensors"))
    if not files:
        raise BenchError(f"{folder} holds no inverted photos (expected latents/*.safetensors from `bench invert`)")
    rows = []
    for f in files:
        try:
            with safe_open(str(f), "pt") as h:
                meta = dict(h.metadata() or {})
                latent = h.get_tensor("latent")
        except Exception as e:   # a damaged file names itself
            raise BenchError(f"cannot read {f}: {e}") from None
        rows.append({**meta, "latent": latent, "file": f})
    return rows


def write_quality_table(out: Path) -> Path:
    """quality.csv from every latents file of ``out``: one row per photo, its quality numbers."""
    import pandas as pd

    rows = [{"name": r["name"], "source": r["source"], **{k: float(r[k]) for k in QUALITY_COLUMNS if k in r}}
            for r in read_inverted(out)]
    return save_csv(pd.DataFrame(rows), out / "quality.csv", float_format="%.4f")
