"""The model zoo: real weights users fetch themselves (none are reachable from CI machines).

Each entry knows its URL, sha256 (where published or measured), format, licence and cache path.
``bench zoo list`` shows them; ``bench zoo fetch NAME`` downloads into the cache and checks the
sha256; using a missing one raises :class:`MissingAsset` saying where to put it.
The cache is ``$BENCH_HOME/zoo`` (default ``~/.cache/latent-edit-bench/zoo``).
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from latent_edit_bench.assets import sha256_file
from latent_edit_bench.errors import BenchError, MissingAsset, UnknownName, environment_fault
from latent_edit_bench.fs import atomic, folder_lock


@dataclass(frozen=True)
class ZooEntry:
    name: str
    filename: str
    url: str
    format: str            # "rosinality-pt", "nvidia-pkl", "torchvision-pth", "eye-regressor", ...
    licence: str
    kind: str              # "stylegan2" (a backbone), "vgg19", "regressor", ...
    sha256: str | None = None
    notes: str = ""

    @property
    def path(self) -> Path:
        return cache_dir() / self.filename


ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry("stylegan2-ffhq256-rosinality", "550000.pt",
             "https://drive.google.com/open?id=1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO",
             "rosinality-pt", "MIT code; weights trained on FFHQ (CC BY-NC-SA 4.0)", "stylegan2",
             notes="the paper's generator: 256 px, channel_multiplier 2, 14 W+ layers. Google Drive: "
                   "download in a browser (rosinality/stylegan2-pytorch README) and place it at the cache path"),
    ZooEntry("stylegan2-ffhq256-nvidia", "ffhq-res256-mirror-paper256-noaug.pkl",
             "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
             "ffhq-res256-mirror-paper256-noaug.pkl",
             "nvidia-pkl", "NVIDIA Source Code License-NC (non-commercial)", "stylegan2",
             notes="half the channels of rosinality's 256 px model; read without executing pickled code"),
    ZooEntry("stylegan2-ffhq1024-nvidia", "ffhq.pkl",
             "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
             "nvidia-pkl", "NVIDIA Source Code License-NC (non-commercial)", "stylegan2",
             notes="1024 px, 18 W+ layers; a GPU job"),
    ZooEntry("vgg19-torchvision", "vgg19-dcbb9e9d.pth",
             "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
             "torchvision-pth", "BSD-3 (torchvision); ImageNet-trained", "vgg19",
             notes="the paper's perceptual network (conv_1..conv_4); torchvision puts the sha256 prefix in the name"),
    ZooEntry("eye-celeba-regressor", "003_dict.model",
             "https://github.com/KelestZ/Latent2im",
             "eye-regressor", "no licence published (ask the authors); or train your own", "regressor",
             notes="Enjoy-Your-Editing's ResNet-50 CelebA attribute regressor; or run "
                   "`bench zoo train-regressor --celeba DIR`"),
]}


def cache_dir() -> Path:
    home = os.environ.get("BENCH_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "latent-edit-bench"
    return base / "zoo"


def get(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        e = UnknownName("zoo entry", name, ZOO)
        e.args = (f"unknown zoo entry {name!r}; valid zoo entries: {', '.join(e.valid)}",)   # not "entrys"
        raise e from None


def resolve(name_or_path: str) -> Path:
    """A zoo name or a file path -> an existing file, or MissingAsset saying how to get it."""
    if name_or_path in ZOO:
        entry = ZOO[name_or_path]
        if entry.path.exists():
            return entry.path
        raise MissingAsset(
            f"{entry.name} is not downloaded: put {entry.filename} at {entry.path} "
            f"(from {entry.url}), or run `bench zoo fetch {entry.name}`"
            + (f". Note: {entry.notes}" if entry.notes else ""))
    path = Path(name_or_path).expanduser()
    if path.is_dir():   # it exists, but no loader can read a folder: say so rather than "does not exist"
        raise BenchError(f"{str(path)!r} is a directory; a checkpoint file is expected "
                         f"(e.g. a .pt, .pkl or .safetensors file inside it), or a zoo name")
    if path.exists():
        return path
    raise MissingAsset(f"no such file {str(path)!r}, and {name_or_path!r} is not a zoo name; "
                       f"zoo names: {', '.join(sorted(ZOO))}")


def fetch(name: str, progress: bool = True) -> Path:
    """Download a zoo entry into the cache (atomic rename), checking its sha256 when known."""
    entry = get(name)
    if entry.path.exists():
        return entry.path
    if "drive.google.com" in entry.url or "github.com" in entry.url:
        raise MissingAsset(f"{entry.name} cannot be fetched automatically ({entry.notes}); "
                           f"download it from {entry.url} and put it at {entry.path}")
    from tqdm.auto import tqdm

    entry.path.parent.mkdir(parents=True, exist_ok=True)
    # one download per file: a second process waits for the first, then finds the file there
    with folder_lock(entry.path.with_name(entry.path.name + ".lock")):
        if entry.path.exists():
            return entry.path
        with atomic(entry.path) as partial:
            try:
                with urllib.request.urlopen(entry.url, timeout=60) as r, open(partial, "wb") as f, \
                        tqdm(total=int(r.headers.get("content-length") or 0), unit="B", unit_scale=True,
                             desc=entry.filename, disable=not progress) as bar:
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
            except OSError as e:
                if environment_fault(e) is not None:   # our disk, not the network
                    raise
                raise BenchError(f"could not download {entry.url}: {e}. Put the file at {entry.path} by hand.") from None
            if entry.sha256 and (got := sha256_file(partial)) != entry.sha256:
                raise BenchError(f"{entry.filename}: sha256 {got} does not match the zoo's {entry.sha256}")
    return entry.path
