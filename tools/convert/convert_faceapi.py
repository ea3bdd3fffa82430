"""Convert four face-api networks (npm @vladmandic/face-api 1.7.15, MIT) into safetensors files.

    python tools/convert/convert_faceapi.py [--package DIR_OR_TGZ] [--out-dir DIR]

Without --package it runs ``npm pack @vladmandic/face-api@1.7.15`` in a temporary folder. Only
``model/<name>.bin`` and ``model/<name>-weights_manifest.json`` are read (both sha256-checked).

TF.js weight format: one group per model, tensors back to back in manifest order, no padding. A
tensor is raw little-endian float32, or uint8 with ``{scale, min}``: value = q * scale + min,
computed in float64 and rounded to float32 (what tfjs does). Tensors keep their manifest names and
TF layouts (conv HWIO, depthwise [kh, kw, C, 1], fc [in, out]); bench/latent_edit_bench/instruments/faceapi_nets.py
transposes them on load. Prints one register table per file for bench/latent_edit_bench/assets/register.toml.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

VERSION = "1.7.15"
ASSET_DIR = Path(__file__).resolve().parents[2] / "bench" / "latent_edit_bench" / "assets"

# model name -> (sha256 of .bin, sha256 of manifest), from the npm tarball of 1.7.15
SOURCES = {
    "face_landmark_68_model": ("4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
                               "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9"),
    "face_expression_model": ("9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
                              "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8"),
    "age_gender_model": ("49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
                         "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f"),
    "face_recognition_model": ("b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
                               "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"),
}
ASSET_NAMES = {  # register name, shipped file
    "face_landmark_68_model": ("faceapi-landmark68", "faceapi_landmark68.safetensors"),
    "face_expression_model": ("faceapi-expression", "faceapi_expression.safetensors"),
    "age_gender_model": ("faceapi-age-gender", "faceapi_age_gender.safetensors"),
    "face_recognition_model": ("faceapi-recognition", "faceapi_recognition.safetensors"),
}
NOTES = {
    "face_landmark_68_model": "68-point landmark net: 4 dense blocks of separable convs, fc 256 -> 136; 112 px",
    "face_expression_model": "expression net: same trunk as the landmark net, fc 256 -> 7; 112 px",
    "age_gender_model": "age/gender net: TinyXception (2 main blocks), fc 512 -> 1 (age) and 512 -> 2 (gender); 112 px",
    "face_recognition_model": "128-D face descriptor: ResNet-34-like (dlib's), 150 px",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(manifest: list, data: bytes) -> dict[str, np.ndarray]:
    """TF.js weight group -> {manifest name: float32 array in TF layout}."""
    if len(manifest) != 1:
        raise ValueError(f"expected one weight group, got {len(manifest)}")
    out, offset = {}, 0
    for spec in manifest[0]["weights"]:
        if spec["dtype"] != "float32":
            raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
        shape = tuple(spec["shape"])
        n = int(np.prod(shape, dtype=np.int64))
        quant = spec.get("quantization")
        if quant is None:
            values = np.frombuffer(data, dtype="<f4", count=n, offset=offset).copy()
            offset += 4 * n
        elif quant["dtype"] == "uint8":
            q = np.frombuffer(data, dtype=np.uint8, count=n, offset=offset)
            values = (q.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
            offset += n
        else:
            raise ValueError(f"{spec['name']}: unsupported quantization {quant['dtype']}")
        out[spec["name"]] = values.reshape(shape)
    if offset != len(data):
        raise ValueError(f"weights file has {len(data)} bytes, manifest accounts for {offset}")
    return out


def read_package(package: Path, model: str) -> tuple[list, bytes, str]:
    """(manifest, .bin bytes, .bin sha256) from an extracted package folder or the npm .tgz."""
    names = (f"model/{model}.bin", f"model/{model}-weights_manifest.json")
    if package.is_dir():
        raw = [(package / n).read_bytes() for n in names]
    else:
        with tarfile.open(package) as tf:
            raw = [tf.extractfile(f"package/{n}").read() for n in names]
    want_bin, want_manifest = SOURCES[model]
    for blob, want, name in zip(raw, (want_bin, want_manifest), names):
        if sha256(blob) != want:
            raise SystemExit(f"{name}: sha256 {sha256(blob)} != expected {want} (not face-api {VERSION}?)")
    return json.loads(raw[1]), raw[0], want_bin


def register_table(model: str, out: Path) -> str:
    name, file = ASSET_NAMES[model]
    return "\n".join([
        f"[{name}]",
        f'file = "{file}"',
        f'sha256 = "{sha256(out.read_bytes())}"',
        f'origin = "npm @vladmandic/face-api {VERSION} (https://github.com/vladmandic/face-api), '
        f'files model/{model}.bin + model/{model}-weights_manifest.json; uint8-dequantised to float32"',
        f'source_sha256 = "{SOURCES[model][0]}"',
        'licence = "MIT (package LICENSE: Copyright (c) Vladimir Mandic; '
        'the models come from justadudewhohacks/face-api.js, MIT)"',
        'converted_by = "tools/convert/convert_faceapi.py"',
        f'notes = "{NOTES[model]}; tensors keep manifest names and TF layouts"',
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, help="extracted npm package folder or the .tgz from npm pack")
    ap.add_argument("--out-dir", type=Path, default=ASSET_DIR)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package
        if package is None:
            subprocess.run(["npm", "pack", f"@vladmandic/face-api@{VERSION}", "--silent"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            package = Path(tmp) / f"vladmandic-face-api-{VERSION}.tgz"
        tables = []
        for model in SOURCES:
            manifest, data, source_sha = read_package(package, model)
            tensors = {k: torch.from_numpy(v) for k, v in decode(manifest, data).items()}
            out = args.out_dir / ASSET_NAMES[model][1]
            # one metadata key: safetensors writes several in hash order, which breaks byte-determinism
            save_file(tensors, str(out), metadata={"source": f"npm @vladmandic/face-api {VERSION} model/{model}.bin "
                                                             f"sha256 {source_sha}; TF layouts"})
            tables.append(register_table(model, out))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
