"""``bench run``: fit -> edit (to 0 and to 1) -> measure -> summarise -> report, resumable.

The work is split into units, each written atomically to ``runs/<id>/units/`` when done: the shared
originals (rendered and measured once), then one unit per (method, attribute) holding X0 and X1's
measurements. A rerun of the same command finds its folder (the id hashes the config), skips
finished units and redoes only what a crash interrupted; fits resume through the artifact store.
Summaries and the report are cheap and rebuilt from the units every time. A method that raises or
produces NaN is recorded as failed and the others go on. Folder layout: docs/run-format.md.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import platform
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .attributes import CELEBA_ATTRIBUTES
from .errors import BenchError, MissingAsset
from .fs import atomic, writable_dir
from .method import FitContext, canonical_json, fit_or_load, module_fingerprint
from .metric import EditSet
from .protocol import DEFAULT_TOL, matched_edit, native_edit
from .stats import Bootstrap, compare

DEFAULT_METRICS = ("edit", "topk", "gesture", "emotion", "landmarks", "identity")
DEFAULT_INSTRUMENTS = {"attributes": "probe", "emotion": "auto", "landmarks": "faceapi-landmarks",
                       "descriptor": "faceapi-descriptor"}   # role -> instrument name
EMOTION_BACKENDS = ("deepface-emotion", "fer-emotion")   # "auto": the first that loads
COMPARISON_COLUMNS = ["attr", "method", "metric", "quantity", "label", "value", "baseline", "diff", "diff_lo",
                      "diff_hi", "rel", "rel_lo", "rel_hi", "p_value", "test"]
SAMPLE_SEED_OFFSET = 1000   # evaluation samples are drawn from seed + 1000: held out from every fit
PACKAGES = ("latent-edit-bench", "torch", "numpy", "pandas", "scipy", "pluggy", "safetensors", "seaborn",
            "jinja2", "pyarrow", "deepface")


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (and its id). Paths and device are not part of it."""

    methods: tuple
    attrs: tuple
    backbone: str = "dcgan"
    weights: str | None = None
    preset: str = "quick"
    n: int | None = None                   # None: the preset's n_eval
    seed: int = 0
    protocol: str = "matched"
    tol: float = DEFAULT_TOL
    search_steps: int = 6                  # bisections after the matched search's grid scan (bracket / 64)
    reference: str = "baseline"
    metrics: tuple = DEFAULT_METRICS
    instruments: dict = field(default_factory=lambda: dict(DEFAULT_INSTRUMENTS))
    trajectory: dict = field(default_factory=lambda: {"samples": 4, "targets": [0.0, 0.25, 0.5, 0.75, 1.0]})
    n_boot: int = 2000
    overrides: dict = field(default_factory=dict)   # {method: {option: value}} over the preset's config

    def to_dict(self) -> dict:
        return json.loads(canonical_json(dataclasses.asdict(self)))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:10]


# -- set-up: validate everything before any work ----------------------------------------------------

def _split(names) -> tuple:
    if isinstance(names, str):
        names = names.split(",")
    return tuple(n.strip() for n in names if n.strip())


def make_config(methods, attrs, preset: str = "quick", n: int | None = None, **kw) -> RunConfig:
    from .presets import preset as get_preset

    cfg = RunConfig(methods=_split(methods), attrs=_split(attrs), preset=preset, **kw)
    if n is None:
        cfg.n = int(get_preset(preset)["n_eval"])
    else:
        cfg.n = int(n)
    return cfg


def validate(cfg: RunConfig, plugins) -> None:
    """Raise BenchError (exit 2) for anything wrong in the config, naming what is valid."""
    from .presets import PRESETS

    if not cfg.methods:
        raise BenchError("--methods needs at least one method; valid methods: " + ", ".join(plugins.methods.names()))
    if not cfg.attrs:
        raise BenchError("--attrs needs at least one attribute")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise BenchError(f"a method is named twice in --methods: {', '.join(cfg.methods)}")
    for m in cfg.methods:
        plugins.methods.get(m)
    known = plugins.attributes()
    for a in cfg.attrs:
        if a not in known:
            raise BenchError(f"unknown attribute {a!r}; valid: {', '.join(known)}")
    if cfg.n is None or cfg.n <= 0:
        raise BenchError(f"-n must be a positive number of samples, got {cfg.n}")
    if cfg.preset not in PRESETS:
        raise BenchError(f"unknown preset {cfg.preset!r}; valid presets: {', '.join(PRESETS)}")
    if cfg.protocol not in ("matched", "native"):
        raise BenchError(f"unknown protocol {cfg.protocol!r}; valid: matched, native")
    if not 0 < cfg.tol < 0.5:
        raise BenchError(f"--tol must be in (0, 0.5), got {cfg.tol}")
    for m in cfg.metrics:
        plugins.metrics.get(m)
    plugins.backbones.get(cfg.backbone)
    for role, name in cfg.instruments.items():
        if not (role == "emotion" and name == "auto"):
            plugins.instruments.get(name)


# -- the run ----------------------------------------------------------------------------------------

class Run:
    """One benchmark run in one folder. ``Run(cfg, out).execute()`` does (or finishes) all the work."""

    def __init__(self, cfg: RunConfig, out: Path, plugins=None, cache_dir: Path | str = "cache",
                 device: str | torch.device = "cpu", batch_size: int = 64, log: Callable[[str], None] = print,
                 progress: bool = True, report: bool = True):
        from .plugins import get_plugins

        self.cfg, self.out = cfg, Path(out)
        self.plugins = plugins or get_plugins()
        self.cache_dir, self.device = Path(cache_dir), torch.device(device)
        self.batch_size, self.log, self.progress, self.report = batch_size, log, progress, report
        validate(cfg, self.plugins)
        unknown = sorted(set(cfg.overrides) - set(cfg.methods))
        if unknown:
            raise BenchError(f"--set names method(s) not in the run: {', '.join(unknown)}; "
                             f"methods: {', '.join(cfg.methods)}")
        self.editors = {m: self.plugins.methods.create(m, **{**_method_config(cfg.preset, m),
                                                             **cfg.overrides.get(m, {})})
                        for m in cfg.methods}
        self.metrics = {m: self.plugins.metrics.create(m) for m in cfg.metrics}
        writable_dir(self.out)
        writable_dir(self.cache_dir)
        self._check_folder()

    # -- folder ----------------------------------------------------------------------------------
    def _check_folder(self) -> None:
        path = self.out / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text()).get("config")
            if old is not None and old != self.cfg.to_dict():
                raise BenchError(f"{self.out} holds a run with a different config; choose another --out "
                                 f"or remove the folder")

    def unit_path(self, method: str | None, attr: str | None = None) -> Path:
        if method is None:
            return self.out / "units" / "original.safetensors"
        return self.out / "units" / method / f"{attr}.safetensors"

    # -- loading ---------------------------------------------------------------------------------
    def _load_models(self) -> None:
        opts = {"weights": self.cfg.weights} if self.cfg.weights else {}
        self.backbone = self.plugins.backbones.create(self.cfg.backbone, **opts).to(self.device).eval()
        self.instruments: dict[str, object] = {}      # instrument name -> module (each loaded once)
        self.roles: dict[str, str] = {}               # role -> instrument name
        for role, name in self.cfg.instruments.items():
            if role == "emotion" and name == "auto":
                name, inst = self._first_loadable(EMOTION_BACKENDS)
                self.instruments.setdefault(name, inst.to(self.device).eval())
            if name not in self.instruments:
                self.instruments[name] = self.plugins.instruments.create(name).to(self.device).eval()
            self.roles[role] = name
        R = self.instruments[self.roles["attributes"]]
        supported = tuple(getattr(R, "supported_attributes", CELEBA_ATTRIBUTES))
        bad = [a for a in self.cfg.attrs if a not in supported]
        if bad:
            raise BenchError(f"instrument {self.roles['attributes']!r} does not support {', '.join(bad)}; "
                             f"supported: {', '.join(supported)}")
        self.ctx = FitContext(self.backbone, {self.roles["attributes"]: R}, attributes=self.cfg.attrs,
                              seed=self.cfg.seed, device=self.device, cache_dir=self.cache_dir,
                              progress=self.progress, attribute_instrument=self.roles["attributes"])

    def _first_loadable(self, names):
        """(name, instrument) of the first of ``names`` whose weights load; the others are logged."""
        for name in names:
            try:
                return name, self.plugins.instruments.create(name)
            except MissingAsset as e:
                self.log(f"emotion: {name} not available ({str(e).splitlines()[0]}); trying the next backend")
        raise BenchError(f"no emotion instrument could be loaded; tried {', '.join(names)}")

    # -- measuring -------------------------------------------------------------------------------
    @torch.no_grad()
    def measure(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render latents and run every role's instrument once per batch: {role: [N, ...]} on the CPU."""
        parts: dict[str, list] = {}
        for i in range(0, latents.shape[0], self.batch_size):
            x = self.backbone.synthesize(latents[i:i + self.batch_size].to(self.device))
            outs = {name: inst(x) for name, inst in self.instruments.items()}
            for role, name in self.roles.items():
                parts.setdefault(role, []).append(outs[name][role].float().cpu())
        return {role: torch.cat(v) for role, v in parts.items()}

    def latents(self) -> torch.Tensor:
        return self.ctx.latents(self.cfg.n, seed=self.cfg.seed + SAMPLE_SEED_OFFSET)

    def originals(self) -> dict[str, torch.Tensor]:
        path = self.unit_path(None)
        if path.exists():
            return _unprefix(load_file(path), "orig.")
        self.log(f"originals: rendering and measuring {self.cfg.n} samples")
        m = self.measure(self.latents())
        _save_atomic({f"orig.{k}": v for k, v in m.items()}, path)
        return m

    # -- one method --------------------------------------------------------------------------------
    def edit_unit(self, name: str, editor, attr: str) -> dict[str, torch.Tensor]:
        """Edit all samples to 0 and to 1, measure both sets; returns the unit's tensors."""
        lat = self.latents()
        for s in editor.strength_range(attr):   # fail fast, before any rendering, on a broken edit
            if not torch.isfinite(editor.edit(lat.to(self.device), attr, float(s))).all():
                raise FloatingPointError(f"{name} produced non-finite latents for {attr} at strength {s:g}")
        unit = {}
        for t, target in (("0", 0.0), ("1", 1.0)):
            if self.cfg.protocol == "matched":
                edited, _, _, strength = matched_edit(editor, self.ctx, lat, attr, target,
                                                      steps=self.cfg.search_steps,
                                                      batch_size=self.batch_size, tol=self.cfg.tol)
            else:
                strength = editor.native_strength(self.ctx, lat, attr, target).float()
                edited = native_edit(editor, lat, attr, strength, batch_size=self.batch_size)
            if not torch.isfinite(edited).all():
                raise FloatingPointError(f"{name} produced non-finite latents for {attr} -> {target:g}")
            m = self.measure(edited)
            for role, v in m.items():
                if role != "attributes" and not torch.isfinite(v).all():
                    raise FloatingPointError(f"{name}: the {role} of the {attr} -> {target:g} edits are NaN")
            # reached: judged on the measured X0/X1, the same numbers the edit metric reports
            reached = (m["attributes"][:, CELEBA_ATTRIBUTES.index(attr)] - target).abs() <= self.cfg.tol
            unit.update({f"x{t}.{role}": v for role, v in m.items()})
            unit[f"strength{t}"] = strength.float().cpu()
            unit[f"reached{t}"] = reached.float().cpu()
        return unit

    def trajectory(self, name: str, editor, attr: str, unit: dict) -> Path:
        """Image grid: rows = the first samples, columns = original then edits to the targets 0 ... 1.

        Targets 0 and 1 reuse the unit's strengths; the matched protocol searches the ones between,
        the native protocol interpolates between the native strengths for 0 and 1."""
        from reports.images import make_grid, save_png

        k = min(self.cfg.trajectory["samples"], self.cfg.n)
        lat = self.latents()[:k]
        s0, s1 = unit["strength0"][:k], unit["strength1"][:k]
        cols = [lat]
        for target in self.cfg.trajectory["targets"]:
            if target in (0.0, 1.0):
                edited = native_edit(editor, lat, attr, s0 if target == 0.0 else s1)
            elif self.cfg.protocol == "matched":
                edited = matched_edit(editor, self.ctx, lat, attr, target, steps=self.cfg.search_steps,
                                      batch_size=self.batch_size, tol=self.cfg.tol)[0]
            else:
                edited = native_edit(editor, lat, attr, s0 + float(target) * (s1 - s0))
            cols.append(edited)
        grid = torch.stack(cols, 1).reshape(-1, *lat.shape[1:])    # row-major: sample, then column
        with torch.no_grad():
            images = self.backbone.render(grid.to(self.device))
        path = self.out / "trajectories" / f"{name}__{attr}.png"
        save_png(make_grid(images, ncol=len(cols)), path, scale=2)
        return path

    # -- the whole run -----------------------------------------------------------------------------
    def execute(self) -> Path:
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        self._load_models()
        manifest = self._manifest()
        _write_json(self.out / "manifest.json", manifest)
        orig = self.originals()
        status = manifest["methods"]
        todo = [(m, a) for m in self.cfg.methods for a in self.cfg.attrs]
        bar = tqdm(total=len(todo), desc="run", unit="edit set", disable=not self.progress)
        for name, editor in self.editors.items():
            status[name] = {"status": "ok"}
            try:
                stage = "fit"
                t = time.perf_counter()
                fit_or_load(editor, self.ctx)
                status[name].update(artifact=str(editor.artifact_path), cache_hit=editor.cache_hit,
                                    fit_seconds=round(time.perf_counter() - t, 2))
                for attr in self.cfg.attrs:
                    path = self.unit_path(name, attr)
                    if not path.exists():
                        stage = f"edit {attr}"
                        self.log(f"{name}: editing {attr} to 0 and 1 ({self.cfg.protocol} protocol)")
                        unit = self.edit_unit(name, editor, attr)
                        stage = f"trajectory {attr}"
                        self.trajectory(name, editor, attr, unit)
                        _save_atomic(unit, path)
                    bar.update(1)
            except Exception as e:   # one method's failure must not cost the others their results
                status[name] = {"status": "failed", "stage": stage, "error": f"{type(e).__name__}: {e}",
                                "traceback": traceback.format_exc(limit=8)}
                self.log(f"{name}: FAILED during {stage}: {type(e).__name__}: {e}")
                bar.update(sum(1 for a in self.cfg.attrs if not self.unit_path(name, a).exists()))
            _write_json(self.out / "manifest.json", manifest)
        bar.close()
        self.summarise(orig, manifest)
        manifest["seconds"] = round(time.perf_counter() - t0, 1)
        _write_json(self.out / "manifest.json", manifest)
        if self.report:
            from reports.html import render_report

            path = render_report([self.out], self.out / "report.html")
            self.log(f"report: {path}")
        return self.out

    # -- summarise ---------------------------------------------------------------------------------
    def summarise(self, orig: dict, manifest: dict) -> None:
        ok = [m for m in self.cfg.methods if manifest["methods"].get(m, {}).get("status") == "ok"]
        measurements = [_measurement_rows("original", "", float("nan"), orig, None, None)]
        samples, summary = [], []
        boot = Bootstrap(self.cfg.n, self.cfg.n_boot, seed=self.cfg.seed)
        trajectories: dict = {}
        for name in ok:
            for attr in self.cfg.attrs:
                unit = load_file(self.unit_path(name, attr))
                for t in ("0", "1"):
                    measurements.append(_measurement_rows(name, attr, float(t), _unprefix(unit, f"x{t}."),
                                                          unit[f"strength{t}"], unit[f"reached{t}"]))
                es = EditSet(name, attr, orig, _unprefix(unit, "x0."), _unprefix(unit, "x1."),
                             unit["reached0"].bool(), unit["reached1"].bool(), unit["strength0"],
                             unit["strength1"], instruments=dict(self.roles))
                frame = pd.DataFrame({"method": name, "attr": attr, "sample": np.arange(self.cfg.n)})
                for mname, metric in self.metrics.items():
                    cols = {k: v.detach().double().cpu().numpy() for k, v in metric.measure(es).items()}
                    part = pd.DataFrame(cols)
                    s = metric.summarise(part, attr, boot)
                    s.insert(0, "metric", mname)
                    s.insert(0, "method", name)
                    s.insert(0, "attr", attr)
                    summary.append(s)
                    frame = pd.concat([frame, part.add_prefix(f"{mname}.")], axis=1)
                samples.append(frame)
                png = self.out / "trajectories" / f"{name}__{attr}.png"
                if png.exists():
                    trajectories.setdefault(name, {})[attr] = str(png.relative_to(self.out))
        manifest["figures"] = {"trajectories": trajectories}
        pd.concat(measurements, ignore_index=True).to_parquet(self.out / "measurements.parquet", index=False)
        samples = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=["method", "attr", "sample"])
        samples.to_parquet(self.out / "samples.parquet", index=False)
        summary = pd.concat(summary, ignore_index=True) if summary else pd.DataFrame(
            columns=["attr", "method", "metric", "quantity", "label", "value", "lo", "hi", "n", "better", "table"])
        summary.to_csv(self.out / "summary.csv", index=False)
        self.compare(samples, ok, boot).to_csv(self.out / "comparison.csv", index=False)

    def compare(self, samples: pd.DataFrame, ok: list, boot: Bootstrap) -> pd.DataFrame:
        ref = self.cfg.reference
        rows = []
        if ref not in ok:
            return pd.DataFrame(columns=COMPARISON_COLUMNS)
        for attr in self.cfg.attrs:
            base_all = samples[(samples.method == ref) & (samples.attr == attr)].reset_index(drop=True)
            for name in ok:
                if name == ref:
                    continue
                mine_all = samples[(samples.method == name) & (samples.attr == attr)].reset_index(drop=True)
                for mname, metric in self.metrics.items():
                    pre = f"{mname}."
                    cols = [c for c in base_all.columns if c.startswith(pre)]
                    base = base_all[cols].rename(columns=lambda c: c[len(pre):])
                    mine = mine_all[cols].rename(columns=lambda c: c[len(pre):])
                    for q in metric.quantities(attr, list(base.columns)):
                        rows.append({"attr": attr, "method": name, "metric": mname, "quantity": q.name,
                                     "label": q.label or q.name, **compare(q, mine, base, boot)})
        return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)

    # -- provenance --------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        from .assets import register

        reg = register()
        used = set(getattr(self.backbone, "assets", ()) or ())
        for inst in self.instruments.values():
            used.update(_asset_names(inst))
        assets = [{"name": n, **{k: reg[n].get(k) for k in ("file", "sha256", "licence", "origin")}}
                  for n in sorted(used) if n in reg]
        weights = {"backbone": {"name": self.cfg.backbone, "sha256": module_fingerprint(self.backbone)}}
        weights.update({name: module_fingerprint(inst) for name, inst in self.instruments.items()})
        old = {}
        path = self.out / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
        return {
            "id": self.out.name,
            "created": old.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": self.cfg.to_dict(),
            "instruments": dict(self.roles),
            "versions": _versions(),
            "platform": {"python": platform.python_version(), "machine": platform.machine(),
                         "device": str(self.device), "torch_threads": torch.get_num_threads()},
            "seeds": {"fit": self.cfg.seed, "samples": self.cfg.seed + SAMPLE_SEED_OFFSET,
                      "bootstrap": self.cfg.seed},
            "assets": assets,
            "weights_sha256": weights,
            "methods": old.get("methods", {}),
        }


# -- helpers ----------------------------------------------------------------------------------------

def _method_config(preset: str, method: str) -> dict:
    from .presets import method_config

    return method_config(preset, method)


def _asset_names(inst) -> set:
    names = set(getattr(inst, "assets", ()) or ())
    for child in inst.modules():                 # composite instruments (probe) carry their parts' assets
        if child is not inst:
            names.update(getattr(child, "assets", ()) or ())
    return names


def _versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _unprefix(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _save_atomic(tensors: dict, path: Path) -> None:
    with atomic(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


def _write_json(path: Path, obj: dict) -> None:
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def _measurement_rows(method, attr, target, m: dict, strength, reached) -> pd.DataFrame:
    from .measure import DEEPFACE_EMOTIONS

    n = next(iter(m.values())).shape[0]
    cols = {"method": [method] * n, "attr": [attr] * n, "target": np.full(n, target), "sample": np.arange(n),
            "strength": np.zeros(n) if strength is None else strength.double().numpy(),
            "reached": np.zeros(n, bool) if reached is None else reached.bool().numpy()}
    if "attributes" in m:
        cols.update({f"R.{a}": m["attributes"][:, i].double().numpy() for i, a in enumerate(CELEBA_ATTRIBUTES)})
    if "emotion" in m:
        cols.update({f"E.{e}": m["emotion"][:, i].double().numpy() for i, e in enumerate(DEEPFACE_EMOTIONS)})
    if "landmarks" in m:
        lm = m["landmarks"].double().numpy()
        for i in range(lm.shape[1]):
            cols[f"L.{i}.x"], cols[f"L.{i}.y"] = lm[:, i, 0], lm[:, i, 1]
    if "descriptor" in m:
        cols.update({f"D.{i}": m["descriptor"][:, i].double().numpy() for i in range(m["descriptor"].shape[1])})
    return pd.DataFrame(cols)
