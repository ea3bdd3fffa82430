"""A run's provenance (manifest.json): its config, the instruments and weights behind each number, the
versions, the machine, the plugins and each method's status. Built by :class:`~latent_edit_bench.pipeline.run.Run`
from what it loaded; docs/run-format.md documents every field."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata
from pathlib import Path

import torch

from latent_edit_bench.contracts.artifacts import module_fingerprint
from latent_edit_bench.errors import BenchError, CorruptFile
from latent_edit_bench.fs import read_index, read_json, write_text
from latent_edit_bench.pipeline.config import SAMPLE_SEED_OFFSET

PACKAGES = ("latent-edit-bench", "torch", "numpy", "pandas", "scipy", "pluggy", "safetensors", "seaborn",
            "jinja2", "pyarrow", "deepface")


def build_manifest(run) -> dict:
    """The manifest of ``run`` (a :class:`Run` with its models loaded); the fields a previous invocation
    wrote that outlive it (created, seconds, methods) are carried over from the folder's manifest."""
    from latent_edit_bench.assets import register

    reg = register()
    used = set(getattr(run.backbone, "assets", ()) or ())
    for inst in run.instruments.values():
        used.update(asset_names(inst))
    assets = [{"name": n, **{k: reg[n].get(k) for k in ("file", "sha256", "licence", "origin")}}
              for n in sorted(used) if n in reg]
    weights = {"backbone": {"name": run.cfg.backbone, "sha256": module_fingerprint(run.backbone)}}
    weights.update({name: module_fingerprint(inst) for name, inst in run.instruments.items()})
    path = run.out / "manifest.json"
    try:   # a corrupt one only loses the times it carried (check_folder moved it aside already)
        old = read_json(path) if path.exists() else {}
    except CorruptFile:
        old = {}
    session = run.session
    return {
        "id": run.out.name,
        "created": old.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": old.get("seconds", 0.0),   # earlier invocations' time; this one's is added at the end
        "config": run.cfg.to_dict(),
        "instruments": dict(run.roles),
        "versions": versions(),
        "platform": {"python": platform.python_version(), "machine": platform.machine(),
                     "processor": processor(session.device),   # floats differ across these
                     # the kernels PyTorch picked (AVX512, AVX2, ...; ATEN_CPU_CAPABILITY can hold them lower)
                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "device": str(session.device), "dtype": session.dtype_name,
                     "batch_size": session.batch_size, "torch_threads": torch.get_num_threads(),
                     "executor": run.executor.describe()},   # the jobs' device and threads, if elsewhere
        "attribute_kinds": dict(run.kinds),
        # the independent judge of each target (None: no network scores it offline); metrics/.../judge.py
        "judges": ({a: run.instruments["judge"].judge_of(a) for a in run.cfg.attrs}
                   if "judge" in run.instruments else {}),
        "metrics": {name: {"title": m.title or name, "needs": list(m.needs)} for name, m in run.metrics.items()},
        "plugins": run.plugins.versions(),
        "seeds": {"fit": run.cfg.fit_seed_list, "samples": run.cfg.seed + SAMPLE_SEED_OFFSET,
                  "bootstrap": run.cfg.seed},
        "joint_fits": list(run.joint),   # methods fitted once per seed for all attrs (`bench status` reads it)
        "assets": assets,
        "weights_sha256": weights,
        "methods": old.get("methods", {}),
    }


def asset_names(inst) -> set:
    names = set(getattr(inst, "assets", ()) or ())
    for child in inst.modules():                 # composite instruments (probe) carry their parts' assets
        if child is not inst:
            names.update(getattr(child, "assets", ()) or ())
    return names


def processor(device: torch.device) -> str:
    """What computed the numbers: the GPU's name on CUDA, else the CPU's model name (Linux), else ''."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def write_json(path: Path, obj: dict) -> None:
    """manifest.json (and any JSON record of the run), written atomically."""
    write_text(path, json.dumps(obj, indent=2, default=str))


def failed_methods(folder) -> list[str]:
    """The methods a run folder's manifest records as failed (their errors are in the manifest and report)."""
    path = Path(folder) / "manifest.json"
    methods = read_json(path).get("methods", {}) if path.is_file() else {}
    return [m for m, s in methods.items() if s.get("status") == "failed"]


def check_folder(out: Path, cfg) -> None:
    """Refuse an ``out`` that holds a run of another config (``cfg`` a RunConfig), naming each setting that
    differs. A manifest.json that does not parse is moved aside with units.json: what config made the unit
    files is unknown, so none is trusted (each is moved aside and redone; fits reload from the cache,
    which verifies itself)."""
    old = read_index(Path(out) / "manifest.json", also=[Path(out) / "units.json"]).get("config")
    new = cfg.to_dict()
    if old is not None and old != new:
        diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        hint = (f"; to score it with other metrics, `bench report {out} --metrics {','.join(cfg.metrics)}`"
                if [k for k in new if old.get(k) != new[k]] == ["metrics"] else "")
        raise BenchError(f"{out} holds a run with a different config ({'; '.join(diff)}); choose "
                         f"another --out, rerun with the folder's settings, or remove the folder{hint}")
