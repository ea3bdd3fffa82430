"""Regenerate tests/fixtures/human_reference.npz: the ORIGINAL human graph models' outputs on real photos.

    python tools/parity/human_reference/make_fixture.py      # needs Node 20 + npm (registry access once)

1. Installs package.json (tfjs 4.22.0 + wasm backend, @vladmandic/human 3.3.6, human-models 3.0.4,
   face-api 1.7.15 for its demo photos) into --node-dir (default /tmp/human_reference_node).
2. Face crops: the 16 crops of tests/fixtures/faceapi_reference.npz (Grace Hopper, the astronaut,
   face-api's demo photos; cut around face-api's own SSD detections, see tools/parity/faceapi_reference/).
   Their sha256 go into the fixture, so the test notices if that fixture changes.
3. Photos for the detector: matplotlib's grace_hopper.jpg and face-api's demo/sample1.jpg (three
   faces), letterboxed to 256 x 256 by latent_edit_bench.instruments.blazeface.letterbox and rounded to uint8.
4. reference.js runs each original graph with human's own preprocessing (wasm backend): emotion and
   gender on the crops (64 px grey), facemesh on the crops (cropAndResize to 192), blazeface on the
   letterboxed photos (its four outputs re-assembled to [896, 17] as human does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(REPO / d) for d in ("bench", "methods", "metrics", "reports")]   # a plain checkout: its four roots
from latent_edit_bench.instruments.blazeface import letterbox  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "human_reference.npz"
CROPS = REPO / "tests" / "fixtures" / "faceapi_reference.npz"


def node_workspace(node_dir: Path) -> Path:
    node_dir.mkdir(parents=True, exist_ok=True)
    want = (HERE / "package.json").read_text()
    pkg = node_dir / "package.json"
    if not (node_dir / "node_modules" / "@vladmandic" / "human").is_dir() or pkg.read_text() != want:
        pkg.write_text(want)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=node_dir, check=True)
    return node_dir / "node_modules"


def item(arr: np.ndarray, name: str, nets: list[str], tmp: Path) -> dict:
    path = tmp / f"{name}.rgb"
    np.ascontiguousarray(arr, dtype=np.uint8).tofile(path)
    return {"name": name, "path": str(path), "height": arr.shape[0], "width": arr.shape[1], "nets": nets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node-dir", type=Path, default=Path(tempfile.gettempdir()) / "human_reference_node")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if shutil.which("node") is None:
        sys.exit("needs Node 20 + npm on PATH")
    nm = node_workspace(args.node_dir)
    vm = nm / "@vladmandic"
    models = {"blazeface": vm / "human/models/blazeface.json", "facemesh": vm / "human/models/facemesh.json",
              "emotion": vm / "human/models/emotion.json", "gender": vm / "human-models/models/gender.json"}
    z = np.load(CROPS)
    names = [str(n) for n in z["names"]]
    crops = [z[f"crop_{i}"] for i in range(len(names))]
    import matplotlib

    photo_files = {"grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
                   "sample1": vm / "face-api" / "demo" / "sample1.jpg"}
    photos = {}
    for name, path in photo_files.items():
        rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)[None]
        x, _, _ = letterbox(rgb.float() / 127.5 - 1)
        photos[name] = ((x[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        items = [item(c, n, ["emotion", "gender", "facemesh"], tmp) for n, c in zip(names, crops)]
        items += [item(a, f"photo_{n}", ["blazeface"], tmp) for n, a in photos.items()]
        job = tmp / "job.json"
        job.write_text(json.dumps({"models": {k: str(v) for k, v in models.items()}, "items": items}))
        res = subprocess.run(["node", str(HERE / "reference.js"), str(job)], env=dict(os.environ, NODE_PATH=str(nm)),
                             check=True, capture_output=True, text=True)
    ref = json.loads(res.stdout)
    r = ref["result"]
    arrays = {
        "names": np.array(names),
        "crop_sha256": np.array([hashlib.sha256(np.ascontiguousarray(c).tobytes()).hexdigest() for c in crops]),
        "emotion": np.array([r[n]["emotion"][0] for n in names], np.float32),
        "gender": np.array([r[n]["gender"][0] for n in names], np.float32),
        "mesh": np.array([r[n]["facemesh"][0] for n in names], np.float32).reshape(-1, 468, 3),
        "face_flag": np.array([r[n]["facemesh"][1][0] for n in names], np.float32),
        "photo_names": np.array(list(photos)),
        "photo_inputs": np.stack(list(photos.values())),
        "blazeface": np.array([r[f"photo_{n}"]["blazeface"][0] for n in photos], np.float32).reshape(-1, 896, 17),
        "meta": np.array(json.dumps({"versions": ref["versions"], "photos": {k: str(v.name) for k, v in
                                                                            photo_files.items()},
                                     "generated_by": "tools/parity/human_reference/make_fixture.py"})),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {len(names)} crops, {len(photos)} photos, {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
