"""Regenerate tests/fixtures/faceapi_reference.npz: the ORIGINAL face-api nets' outputs on fixed face crops.

    python tools/parity/faceapi_reference/make_fixture.py        # needs Node 20 + npm (registry access once)

1. Installs package.json (face-api 1.7.15, tfjs 4.22.0, tfjs-backend-wasm 4.22.0) into --node-dir
   (default /tmp/faceapi_reference_node: node_modules stays out of the repo; NODE_PATH points there).
2. Photos: matplotlib's grace_hopper.jpg, scikit-image 0.25.2's astronaut.png (read from the wheel
   that ``pip download`` fetches; nothing installed), face-api's demo/sample1..6.jpg.
3. The original SSD detector (reference.js detect) finds the faces; we keep the best one (two for
   the group photos), shrink the photo by an integer factor (PIL reduce) so the face is <= 128 px,
   and cut the detection box out (integer, rounded outward). Plus two variants: the Grace Hopper
   crop resized to 112 x 112 (reaches the nets without any resize) and a landscape astronaut crop
   (box widened to 1.5 x its height: the padding goes above/below instead of left/right).
4. reference.js run feeds each crop, byte for byte, to the four original nets (wasm backend).

The npz holds the uint8 crops and the outputs; tests/test_faceapi.py compares our ports on them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
OUT = REPO / "tests" / "fixtures" / "faceapi_reference.npz"
SKIMAGE = "scikit-image==0.25.2"
ASTRONAUT_SHA256 = "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
MAX_FACE = 128  # px: keeps the fixture small and makes the 112-px nets shrink and the 150-px net enlarge


def node_workspace(node_dir: Path) -> Path:
    node_dir.mkdir(parents=True, exist_ok=True)
    want = (HERE / "package.json").read_text()
    pkg = node_dir / "package.json"
    if not (node_dir / "node_modules" / "@vladmandic" / "face-api").is_dir() or pkg.read_text() != want:
        pkg.write_text(want)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=node_dir, check=True)
    return node_dir / "node_modules"


def node(mode: str, node_modules: Path, items: list[dict], tmp: Path) -> dict:
    job = tmp / f"{mode}.json"
    job.write_text(json.dumps({"model_dir": str(node_modules / "@vladmandic" / "face-api" / "model"), "items": items}))
    env = dict(os.environ, NODE_PATH=str(node_modules))
    res = subprocess.run(["node", str(HERE / "reference.js"), mode, str(job)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout)


def write_rgb(arr: np.ndarray, name: str, tmp: Path) -> dict:
    path = tmp / f"{name}.rgb"
    np.ascontiguousarray(arr, dtype=np.uint8).tofile(path)
    return {"name": name, "path": str(path), "height": arr.shape[0], "width": arr.shape[1]}


def photos(node_modules: Path, tmp: Path) -> dict[str, tuple[bytes, int]]:
    """name -> (encoded file bytes, faces to keep)."""
    import matplotlib

    out = {"grace_hopper": ((Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes(), 1)}
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", SKIMAGE, "-d", str(tmp)], check=True)
    with zipfile.ZipFile(next(tmp.glob("scikit_image-*.whl"))) as zf:
        data = zf.read("skimage/data/astronaut.png")
    if hashlib.sha256(data).hexdigest() != ASTRONAUT_SHA256:
        sys.exit("astronaut.png does not have the expected sha256")
    out["astronaut"] = (data, 1)
    demo = node_modules / "@vladmandic" / "face-api" / "demo"
    for i in range(1, 7):
        out[f"sample{i}"] = ((demo / f"sample{i}.jpg").read_bytes(), 2)
    return out


def crop_face(rgb: np.ndarray, box: list[float], widen: float = 0.0) -> tuple[np.ndarray, int, list[int]]:
    """Shrink by an integer factor k so the face is <= MAX_FACE px, then cut the box (rounded outward).

    widen > 0 first sets the box width to widen * its height, about the same centre."""
    x, y, w, h = box
    if widen:
        x, w = x + w / 2 - widen * h / 2, widen * h
    k = max(1, math.ceil(max(w, h) / MAX_FACE))
    small = np.asarray(Image.fromarray(rgb).reduce(k)) if k > 1 else rgb
    x0, y0 = max(0, math.floor(x / k)), max(0, math.floor(y / k))
    x1, y1 = min(small.shape[1], math.ceil((x + w) / k)), min(small.shape[0], math.ceil((y + h) / k))
    return np.ascontiguousarray(small[y0:y1, x0:x1]), k, [x0, y0, x1, y1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node-dir", type=Path, default=Path(tempfile.gettempdir()) / "faceapi_reference_node")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if shutil.which("node") is None:
        sys.exit("needs Node 20 + npm on PATH")
    node_modules = node_workspace(args.node_dir)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = photos(node_modules, tmp)
        rgbs = {n: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for n, (b, _) in files.items()}
        det = node("detect", node_modules, [write_rgb(a, n, tmp) for n, a in rgbs.items()], tmp)
        crops, info = {}, {}
        for name, (data, keep) in files.items():
            faces = sorted(det["result"][name], key=lambda f: -f["score"])[:keep]
            if len(faces) < keep:
                sys.exit(f"{name}: the detector found {len(faces)} faces, expected {keep}")
            for j, face in enumerate(faces):
                crop, k, box = crop_face(rgbs[name], face["box"])
                key = name if keep == 1 else f"{name}_face{j}"
                crops[key] = crop
                info[key] = {"photo": name, "photo_sha256": hashlib.sha256(data).hexdigest(), "reduce": k,
                             "box_xyxy_in_reduced": box, "detection": face}
        face = info["astronaut"]["detection"]
        crops["astronaut_wide"], k, box = crop_face(rgbs["astronaut"], face["box"], widen=1.5)
        info["astronaut_wide"] = {**info["astronaut"], "reduce": k, "box_xyxy_in_reduced": box, "widen": 1.5}
        gh = crops["grace_hopper"]
        crops["grace_hopper_112"] = np.asarray(Image.fromarray(gh).resize((112, 112), Image.BILINEAR))
        info["grace_hopper_112"] = {"photo": "grace_hopper", "note": "grace_hopper crop, PIL bilinear to 112x112"}
        ref = node("run", node_modules, [write_rgb(a, n, tmp) for n, a in crops.items()], tmp)
    names = list(crops)
    r = ref["result"]
    arrays = {
        "names": np.array(names),
        "landmarks": np.array([r[n]["landmarks_raw"] for n in names], np.float32).reshape(-1, 68, 2),
        "landmarks_unpadded": np.array([r[n]["landmarks"] for n in names], np.float32).reshape(-1, 68, 2),
        "expression": np.array([r[n]["expression"] for n in names], np.float32),
        "age": np.array([r[n]["age"] for n in names], np.float32),
        "gender": np.array([r[n]["gender"] for n in names], np.float32),
        "descriptor": np.array([r[n]["descriptor"] for n in names], np.float32),
        "meta": np.array(json.dumps({"versions": ref["versions"], "crops": info,
                                     "generated_by": "tools/parity/faceapi_reference/make_fixture.py"})),
    }
    arrays.update({f"crop_{i}": crops[n] for i, n in enumerate(names)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {len(names)} crops, {args.out.stat().st_size / 1e3:.0f} kB; "
          f"original pipeline on grace_hopper: {json.dumps(det['result']['grace_hopper'][0])}")


if __name__ == "__main__":
    main()
