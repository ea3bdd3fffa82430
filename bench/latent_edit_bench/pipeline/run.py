"""``bench run``: fit (per attribute and fit seed) -> ladder edits -> measure -> summarise, resumable.

The run writes files and nothing else: the report (``reports/``) is rendered from the folder afterwards
by the CLI (``bench run`` then ``bench report``'s code), so no core module imports it.


The work is split into units, each written atomically to ``runs/<id>/units/`` when done: the shared
originals (rendered and measured once), then one unit per (method, fit seed, attribute) holding the
measured ladder edits (every sample driven to R_k(original) + level for every signed level). A rerun
of the same command finds its folder (the id hashes the config), skips finished units and redoes
only what a crash interrupted; fits resume through the artifact store. A method that fits jointly
(``Editor.joint_fit``: EYE and its regularised forms, as the paper trains them) fits one artifact per
fit seed for the run's whole attribute set, cached per (method, attribute set, fit seed); the others
(and every method under ``fit="per-attribute"``) one per (method, attribute, fit seed), so a run with
other ``--attrs`` reuses every fit it shares. Summaries
are cheap and rebuilt from the units every time. A method that raises or produces
NaN is recorded as failed and the others go on. Folder layout and rules: docs/run-format.md.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from latent_edit_bench.pipeline.analysis import analyse
from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError, MissingAsset, did_you_mean
from latent_edit_bench.fs import atomic, writable_dir
from latent_edit_bench.attributes import EMOTION_LABELS as DEEPFACE_LABELS   # the emotion columns, DeepFace order
from latent_edit_bench.contracts.method import FitContext, canonical_json, fit_or_load, module_fingerprint
from latent_edit_bench.contracts.metric import EditSet
from latent_edit_bench.contracts.instrument import supported_attributes
from latent_edit_bench.pipeline.protocol import LADDER_TOL, ladder_edit
from latent_edit_bench.pipeline.validity import trainer_status
from latent_edit_bench.pipeline.session import PRECISION_NOTES, Session

DEFAULT_METRICS = ("edit", "topk", "gesture", "emotion", "landmarks", "identity", "judge")
DEFAULT_INSTRUMENTS = {"attributes": "probe", "emotion": "auto", "landmarks": "faceapi-landmarks",
                       "descriptor": "faceapi-descriptor",
                       "judge": "judge", "judge_emotion": "judge",
                       "mesh": "mediapipe-facemesh"}   # role -> instrument name; loaded only if a metric needs it
DEFAULT_LEVELS = (0.1, 0.2, 0.3)   # 0.4: reached by fewer than half the samples for most methods in the demo
EMOTION_BACKENDS = ("deepface-emotion", "fer-emotion")   # "auto": the first that loads
SAMPLE_SEED_OFFSET = 1000   # evaluation samples are drawn from seed + 1000: held out from every fit
FIT_MODES = ("joint", "per-attribute")   # RunConfig.fit / --fit
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
    fit_seeds: int | None = None           # K fits per method and attribute; None: the preset's
    fit: str = "joint"                     # FIT_MODES: joint-fitting methods fit all attrs at once, or per attribute
    levels: tuple = DEFAULT_LEVELS         # |achieved change of R_k|, each towards presence and absence
    tol: float = LADDER_TOL                # a level is reached within ±tol
    min_reach: float = 0.5                 # a method reaches a level when this fraction of samples does, every seed
    search_steps: int = 4                  # false-position refinements after the ladder's grid scan
    reference: str = "baseline"
    metrics: tuple = DEFAULT_METRICS
    instruments: dict = field(default_factory=lambda: dict(DEFAULT_INSTRUMENTS))
    trajectory: dict = field(default_factory=lambda: {"samples": 4})
    n_boot: int = 2000
    overrides: dict = field(default_factory=dict)   # {method: {option: value}} over the preset's config
    judges: dict = field(default_factory=dict)      # {attribute: judge spec} over the built-in judges (--judge)

    def to_dict(self) -> dict:
        return json.loads(canonical_json(dataclasses.asdict(self)))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:10]

    @property
    def fit_seed_list(self) -> list[int]:
        return [self.seed + k for k in range(int(self.fit_seeds))]

    @property
    def signed_levels(self) -> list[float]:
        return sorted([-float(v) for v in self.levels] + [float(v) for v in self.levels])


# -- set-up: validate everything before any work ----------------------------------------------------

def _split(names) -> tuple:
    if isinstance(names, str):
        names = names.split(",")
    return tuple(n.strip() for n in names if n.strip())


def parse_levels(text: str) -> tuple:
    """"0.1,0.2,0.3" -> (0.1, 0.2, 0.3); a BenchError naming the problem for an empty item or a non-number
    (the range is checked by :func:`validate`)."""
    parts = [v.strip() for v in str(text).split(",")]
    if not all(parts):
        raise BenchError(f"--levels {text!r} has an empty item; write L1,L2,... e.g. 0.1,0.2,0.3")
    try:
        return tuple(float(v) for v in parts)
    except ValueError:
        raise BenchError(f"--levels {text!r}: expected numbers in (0, 1) separated by commas, e.g. 0.1,0.2,0.3") from None


def make_config(methods, attrs, preset: str = "quick", n: int | None = None, fit_seeds: int | None = None,
                levels=None, **kw) -> RunConfig:
    from latent_edit_bench.presets import preset as get_preset

    p = get_preset(preset)
    if levels is not None:
        kw["levels"] = parse_levels(levels) if isinstance(levels, str) else tuple(float(v) for v in levels)
    if kw.get("reference") is None:
        kw.pop("reference", None)
    cfg = RunConfig(methods=_split(methods), attrs=_split(attrs), preset=preset, **kw)
    if "reference" not in kw and cfg.reference not in cfg.methods and cfg.methods:
        cfg.reference = cfg.methods[0]
    cfg.n = int(p["n_eval"]) if n is None else int(n)
    cfg.fit_seeds = int(p["fit_seeds"]) if fit_seeds is None else int(fit_seeds)
    return cfg


def validate(cfg: RunConfig, plugins) -> None:
    """Raise BenchError (exit 2) for anything wrong in the config, naming what is valid."""
    from latent_edit_bench.presets import PRESETS

    if not cfg.methods:
        raise BenchError("--methods needs at least one method; valid methods: " + ", ".join(plugins.methods.names()))
    if not cfg.attrs:
        raise BenchError("--attrs needs at least one attribute")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise BenchError(f"a method is named twice in --methods: {', '.join(cfg.methods)}")
    for m in cfg.methods:
        plugins.methods.get(m)
    if cfg.reference not in cfg.methods:
        raise BenchError(f"--reference {cfg.reference!r} is not in --methods ({', '.join(cfg.methods)}); "
                         f"name one of them, e.g. --reference {cfg.methods[0]}")
    known = plugins.attributes()
    for a in cfg.attrs:
        if a not in known:
            raise BenchError(f"unknown attribute {a!r}{did_you_mean(a, known)}; valid: {', '.join(known)}")
    if len(set(cfg.attrs)) != len(cfg.attrs):
        raise BenchError(f"an attribute is named twice in --attrs: {', '.join(cfg.attrs)}")
    if cfg.n is None or cfg.n <= 0:
        raise BenchError(f"-n must be a positive number of samples, got {cfg.n}")
    if cfg.fit_seeds is None or cfg.fit_seeds < 1:
        raise BenchError(f"--fit-seeds must be at least 1, got {cfg.fit_seeds}")
    if cfg.fit not in FIT_MODES:
        raise BenchError(f"--fit must be one of {', '.join(FIT_MODES)}, got {cfg.fit!r}")
    if not cfg.levels:
        raise BenchError("--levels needs at least one level")
    bad = [v for v in cfg.levels if not 0 < v < 1]
    if bad:
        raise BenchError(f"--levels must lie in (0, 1) (achieved changes of R_k, applied in both directions); "
                         f"got {', '.join(f'{v:g}' for v in bad)}")
    if len(set(cfg.levels)) != len(cfg.levels):
        raise BenchError(f"a level is named twice in --levels: {', '.join(f'{v:g}' for v in cfg.levels)}")
    if not 0 < cfg.tol < 0.5:
        raise BenchError(f"--tol must be in (0, 0.5), got {cfg.tol}")
    if not 0 < cfg.min_reach <= 1:
        raise BenchError(f"--min-reach must be in (0, 1], got {cfg.min_reach}")
    if cfg.preset not in PRESETS:
        raise BenchError(f"unknown preset {cfg.preset!r}; valid presets: {', '.join(PRESETS)}")
    for m in cfg.metrics:
        plugins.metrics.get(m)
    plugins.backbones.get(cfg.backbone)
    for role, name in cfg.instruments.items():
        if not (role == "emotion" and name == "auto"):
            plugins.instruments.get(name)
    from latent_edit_bench.instruments.judge import check_judges

    check_judges(cfg.judges, plugins.instruments)


# -- the run ----------------------------------------------------------------------------------------

class Run:
    """One benchmark run in one folder. ``Run(cfg, out).execute()`` does (or finishes) all the work."""

    def __init__(self, cfg: RunConfig, out: Path, session: Session | None = None, cache_dir: Path | str = "cache",
                 log: Callable[[str], None] = print, executor=None):
        from latent_edit_bench.pipeline.units import LocalExecutor

        self.cfg, self.out = cfg, Path(out)
        if session is None:
            raise BenchError("Run needs a session: Session(get_plugins(), ...) (latent_edit_bench.api.run builds one)")
        self.session = session
        self.plugins = self.session.plugins
        self.cache_dir, self.log = Path(cache_dir), log
        self.executor = executor or LocalExecutor()   # where the units are done (pipeline/units.py, pipeline/executors.py)
        self._editors: dict = {}                      # fitted in this process, for its edit unit
        validate(cfg, self.plugins)
        unknown = sorted(set(cfg.overrides) - set(cfg.methods))
        if unknown:
            raise BenchError(f"--set names method(s) not in the run: {', '.join(unknown)}; "
                             f"methods: {', '.join(cfg.methods)}")
        # a bad option fails here, before any work; then the methods that fit all attributes at once in this run
        editors = {m: self.editor(m) for m in cfg.methods}
        self.joint = tuple(m for m, e in editors.items() if cfg.fit == "joint" and getattr(e, "joint_fit", False))
        # the judge metric labels its rows with the run's judge specs (--judge); other metrics take no options here
        self.metrics = {m: self.plugins.metrics.create(m, **({"judges": dict(cfg.judges)} if m == "judge" else {}))
                        for m in cfg.metrics}
        writable_dir(self.out)
        writable_dir(self.cache_dir)
        self._check_folder()

    def editor(self, method: str):
        """A fresh, unfitted editor of ``method`` with the preset's config and the run's overrides."""
        return self.plugins.methods.create(method, **{**_method_config(self.cfg.preset, method),
                                                      **self.cfg.overrides.get(method, {})})

    # -- folder ----------------------------------------------------------------------------------
    def _check_folder(self) -> None:
        path = self.out / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text()).get("config")
            new = self.cfg.to_dict()
            if old is not None and old != new:
                diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
                raise BenchError(f"{self.out} holds a run with a different config ({'; '.join(diff)}); choose "
                                 f"another --out, rerun with the folder's settings, or remove the folder")

    def unit_path(self, method: str | None, attr: str | None = None, seed: int = 0) -> Path:
        if method is None:
            return self.out / "units" / "original.safetensors"
        return self.out / "units" / method / f"seed{seed}" / f"{attr}.safetensors"

    # -- loading ---------------------------------------------------------------------------------
    def _load_models(self) -> None:
        s = self.session
        opts = {"weights": self.cfg.weights} if self.cfg.weights else {}
        self.backbone = s.backbone(self.cfg.backbone, **opts)
        self.instruments = s.pool                     # instrument name -> module (each loaded once)
        self.roles: dict[str, str] = {}               # role -> instrument name
        needed = {"attributes"} | {r for m in self.metrics.values() for r in m.needs}   # R drives the ladder
        missing = sorted(needed - set(self.cfg.instruments))
        if missing:
            raise BenchError(f"metric(s) need instrument output(s) {', '.join(missing)} that no instrument role "
                             f"provides; roles: {', '.join(self.cfg.instruments)}")
        for role, name in self.cfg.instruments.items():
            if role not in needed:    # loaded only when a metric reads it
                continue
            if role == "emotion" and name == "auto":
                name, _ = self._first_loadable(EMOTION_BACKENDS)
            # the judge is a composite: its nets come from the session's pool too (each loaded once)
            opts = {"judges": dict(self.cfg.judges), "create": s.instrument} if name == "judge" else {}
            s.instrument(name, **opts)
            self.roles[role] = name
        R = self.instruments[self.roles["attributes"]]
        supported = supported_attributes(R)
        bad = [a for a in self.cfg.attrs if a not in supported]
        if bad:
            raise BenchError(f"instrument {self.roles['attributes']!r} does not support {', '.join(bad)}; "
                             f"supported: {', '.join(supported)}")
        kinds = getattr(R, "attribute_kinds", None) or {}
        self.kinds = {a: kinds.get(a, "network") for a in self.cfg.attrs}   # trained classifiers: "network"
        # one pool: the fits load their extra nets (content, landmarks) through the session, so an instrument
        # that both measures and trains (hfld's landmarks) is loaded once, from this run's plugins
        self.ctx = FitContext(self.backbone, s.pool, attributes=self.cfg.attrs, seed=self.cfg.seed,
                              device=s.device, cache_dir=self.cache_dir, progress=s.progress,
                              attribute_instrument=self.roles["attributes"], load_instrument=s.instrument,
                              batch_size=s.batch_size, dtype=s.dtype)

    def _first_loadable(self, names):
        """(name, instrument) of the first of ``names`` that loads; the skipped ones get one short line per
        run (the full MissingAsset text is a paragraph, and most users run without DeepFace's file)."""
        skipped = {}
        for name in names:
            try:
                inst = self.session.instrument(name)
            except BenchError as e:   # weights missing, or (make demo) the deepface package not installed
                skipped[name] = e
                continue
            if skipped and not getattr(self, "_emotion_hinted", False):
                self._emotion_hinted = True
                self.log(f"emotion: using {name}; " + "; ".join(_skip_reason(n, e) for n, e in skipped.items()))
            return name, inst
        raise BenchError("no emotion instrument could be loaded: "
                         + "; ".join(_skip_reason(n, e) for n, e in skipped.items()))

    # -- measuring -------------------------------------------------------------------------------
    def measure(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render latents and run every role's instrument once per batch: {role: [N, ...]} float32, left on
        the session's device (the caller moves them when it writes them)."""
        return self.session.measure(self.backbone, latents, self.roles)

    def latents(self) -> torch.Tensor:
        return self.ctx.latents(self.cfg.n, seed=self.cfg.seed + SAMPLE_SEED_OFFSET)

    def originals(self) -> dict[str, torch.Tensor]:
        path = self.unit_path(None)
        if "originals" in self.ctx.memo:
            return self.ctx.memo["originals"]
        if path.exists():
            m = _unprefix(load_file(path), "orig.")
        else:
            self.log(f"originals: rendering and measuring {self.cfg.n} samples")
            m = {k: v.cpu() for k, v in self.measure(self.latents()).items()}
            _save_atomic({f"orig.{k}": v for k, v in m.items()}, path)
        self.ctx.memo["originals"] = m
        return m

    # -- one (method, fit seed, attribute) ---------------------------------------------------------
    def fit_attributes(self, name: str, attr: str | None) -> tuple:
        """The attribute set ``name``'s fit for ``attr`` covers: the run's attributes, sorted, for a method
        fitted jointly in this run (sorted: the cache key hashes the set, and the fit sees that order);
        else ``attr`` alone."""
        return tuple(sorted(self.cfg.attrs)) if name in self.joint else (attr,)

    def fit(self, name: str, attr: str | None, seed: int):
        """The editor of ``name`` with fit seed ``seed`` that edits ``attr``: fitted for ``attr`` alone, or (a
        joint method; ``attr`` None is allowed) for the run's whole attribute set; cached per method, config,
        attribute set and seed."""
        editor = self.editor(name)
        fit_or_load(editor, dataclasses.replace(self.ctx, attributes=self.fit_attributes(name, attr), seed=seed))
        return editor

    def edit_unit(self, name: str, editor, attr: str, seed: int, orig: dict) -> dict[str, torch.Tensor]:
        """Drive all samples along the ladder, measure every edit; returns the unit's tensors."""
        lat = self.latents()
        for s in editor.strength_range(attr):   # fail fast, before any search, on a broken edit
            edited = editor.edit(lat.to(self.session.device), attr, float(s))
            if not isinstance(edited, torch.Tensor) or edited.shape != lat.shape:
                got = tuple(edited.shape) if isinstance(edited, torch.Tensor) else type(edited).__name__
                raise TypeError(f"{name}.edit() returned {got} for latents of shape {tuple(lat.shape)}; the method "
                                f"contract wants edited latents of the same shape [N, layers, dim] "
                                f"(docs/writing-a-method.md)")
            if not torch.isfinite(edited).all():
                raise FloatingPointError(f"{name} produced non-finite latents for {attr} at strength {s:g}")
        lad = ladder_edit(editor, self.ctx, lat, attr, self.cfg.signed_levels, tol=self.cfg.tol,
                          steps=self.cfg.search_steps, batch_size=self.session.batch_size)
        if not torch.isfinite(lad.latents).all():
            raise FloatingPointError(f"{name} produced non-finite latents for {attr}")
        n_lv, n = lad.latents.shape[:2]
        m = {k: v.cpu() for k, v in self.measure(lad.latents.reshape(n_lv * n, *lad.latents.shape[2:])).items()}
        for role, v in m.items():   # NaN by design (a column nobody scores, e.g. judge) is NaN in the originals too
            measured = torch.isfinite(orig[role].reshape(orig[role].shape[0], -1)).all(0)
            if role != "attributes" and not torch.isfinite(v.reshape(v.shape[0], -1)[:, measured]).all():
                raise FloatingPointError(f"{name}: the {role} of the {attr} edits are NaN")
        # reached: judged on the measured edits, the same numbers every metric reads
        k = CELEBA_ATTRIBUTES.index(attr)
        r = m["attributes"][:, k].reshape(n_lv, n)
        target = orig["attributes"][:, k][None, :] + lad.levels[:, None]
        unit = {f"x.{role}": v.reshape(n_lv, n, *v.shape[1:]) for role, v in m.items()}
        unit.update(levels=lad.levels, target=target, strength=lad.strength,
                    reached=((r - target).abs() <= self.cfg.tol).float())
        if seed == self.cfg.fit_seed_list[0]:
            self.trajectory(name, attr, lat, lad.latents)
        return unit

    def trajectory(self, name: str, attr: str, lat: torch.Tensor, ladder: torch.Tensor) -> Path:
        """Image grid: rows = the first samples, columns = levels -max ... original ... +max."""
        from latent_edit_bench.images import make_grid, save_png

        k = min(self.cfg.trajectory["samples"], self.cfg.n)
        neg = sum(1 for v in self.cfg.signed_levels if v < 0)
        cols = [ladder[i, :k] for i in range(neg)] + [lat[:k]] + [ladder[i, :k] for i in range(neg, len(ladder))]
        grid = torch.stack(cols, 1).reshape(-1, *lat.shape[1:])    # row-major: sample, then column
        images = self.session.render(self.backbone, grid)
        path = self.out / "trajectories" / f"{name}__{attr}.png"
        save_png(make_grid(images, ncol=len(cols)), path, scale=2)
        return path

    # -- the whole run -----------------------------------------------------------------------------
    def execute(self) -> Path:
        """Do (or finish) the run. A second identical run started meanwhile waits on ``<out>/.lock``, then
        finds the finished units and only re-summarises, instead of redoing all the work beside this one."""
        from latent_edit_bench.fs import folder_lock

        def waiting():
            self.log(f"another bench run is working in {self.out}; waiting")

        with folder_lock(self.out / ".lock", on_wait=waiting):
            return self._execute()

    @property
    def failed(self) -> list[str]:
        """Methods the folder's manifest records as failed (after :meth:`execute`: this run's failures)."""
        path = self.out / "manifest.json"
        methods = json.loads(path.read_text()).get("methods", {}) if path.exists() else {}
        return [m for m in self.cfg.methods if methods.get(m, {}).get("status") == "failed"]

    def _execute(self) -> Path:
        from tqdm.auto import tqdm

        from latent_edit_bench.pipeline.units import Ledger

        t0 = time.perf_counter()
        if self.session.dtype_name in PRECISION_NOTES:
            self.log(PRECISION_NOTES[self.session.dtype_name])
        self._load_models()
        manifest = self._manifest()
        _write_json(self.out / "manifest.json", manifest)
        self._status = status = manifest["methods"]
        for name in self.cfg.methods:
            status[name] = {"status": "ok", "fits": status.get(name, {}).get("fits", {})}
        self.ledger = Ledger(self.out)
        todo = self.todo()
        edits = len(self.cfg.methods) * len(self.cfg.fit_seed_list) * len(self.cfg.attrs)
        bar = tqdm(total=edits, initial=edits - sum(u.kind == "edit" for u in todo), desc="run", unit="unit",
                   disable=not self.session.progress)

        def on_event(unit, state, info):   # the executor reports; the driver alone writes the records
            rec = self.ledger.update(unit.id, state=state, **info)
            if state == "done" and unit.kind == "fit":   # a joint fit: one record, keyed "Bald,Male"
                status[unit.method]["fits"].setdefault(str(unit.seed), {})[unit.attrs_label] = {
                    "artifact": str(self.cache_dir / info["artifact_in_cache"]), "cache_hit": info["cache_hit"],
                    "fit_seconds": info["fit_seconds"]}
            elif state == "failed" and status[unit.method]["status"] != "failed":
                status[unit.method] = {"status": "failed", "stage": unit.stage, "error": rec["error"],
                                       "traceback": rec.get("traceback")}
                self.log(f"{unit.method}: FAILED during {unit.stage}: {rec['error']}")
            if unit.kind == "edit" and state in ("done", "failed", "skipped"):
                bar.update(1)
            if state in ("done", "failed"):
                _write_json(self.out / "manifest.json", manifest)

        self.executor.execute(self, todo, on_event)
        bar.close()
        _write_json(self.out / "manifest.json", manifest)
        self.summarise(self.originals(), manifest)
        # the time all invocations took: a rerun that resumes (or only re-summarises) adds to it
        manifest["seconds"] = round(float(manifest.get("seconds") or 0) + time.perf_counter() - t0, 1)
        _write_json(self.out / "manifest.json", manifest)
        return self.out

    # -- units: the seam between the run and its executor ------------------------------------------
    def todo(self) -> list:
        """The units still to do, in order: the originals if missing, each missing edit unit (method, fit
        seed, attribute) and the fit it needs (a joint fit once, if any of its edit units is missing). A unit
        file whose sha256 differs from the one recorded when it was written is moved aside
        (``<name>.corrupt-<time>``) and redone."""
        from latent_edit_bench.pipeline.units import all_units
        from latent_edit_bench.contracts.method import quarantine

        units = all_units(self.cfg.methods, self.cfg.attrs, self.cfg.fit_seed_list, joint=self.joint)
        for u in units:
            path = self.unit_path(u.method, u.attr, u.seed)
            if u.kind != "fit" and path.exists() and not self.ledger.intact(u.id, path):
                quarantine(path, "sha256 differs from the one recorded in units.json")
        todo = [u for u in units if u.kind != "fit" and not self.unit_path(u.method, u.attr, u.seed).exists()]
        fits = {u.fit for u in todo if u.kind == "edit"}   # a fit is cached: it is only needed by a missing edit
        return [u for u in units if u in fits or u in todo]

    def method_failed(self, name: str) -> bool:
        return self._status.get(name, {}).get("status") == "failed"

    def run_unit(self, unit) -> dict:
        """Do one unit in this process and write its file; returns its record (what units.json keeps)."""
        from latent_edit_bench.assets import sha256_file

        if not hasattr(self, "ctx"):   # a worker: the models are loaded per job
            self._load_models()
        if unit.kind == "fit":
            t = time.perf_counter()
            editor = self.fit(unit.method, unit.attr, unit.seed)
            self._editors[unit.fit] = editor
            return {"artifact_in_cache": str(Path(editor.artifact_path).relative_to(self.cache_dir)),
                    "cache_hit": editor.cache_hit, "fit_seconds": round(time.perf_counter() - t, 2),
                    "sha256": sha256_file(editor.artifact_path)}
        if unit.kind == "originals":
            path = self.unit_path(None)
            self.originals()
        else:
            # a joint fit serves every attribute's edit unit: kept; a per-attribute one serves this one only
            editor = (self._editors.get if unit.fit_attrs else self._editors.pop)(unit.fit, None)
            if editor is None:   # fitted by another job: load it from the cache (sha256-checked)
                editor = self.fit(unit.method, unit.attr, unit.seed)
            self.log(f"{unit.method}: ladder edits of {unit.attr}, fit seed {unit.seed}")
            path = self.unit_path(unit.method, unit.attr, unit.seed)
            _save_atomic(self.edit_unit(unit.method, editor, unit.attr, unit.seed, self.originals()), path)
        return {"sha256": sha256_file(path)}

    def cached_fit(self, unit) -> dict | None:
        """The record of fit ``unit`` if the cache already holds its artifact intact (then no job is needed:
        a rerun with more attributes or fit seeds submits only the new fits), else None."""
        from latent_edit_bench.assets import sha256_file
        from latent_edit_bench.contracts.method import artifact_path, load_artifact

        try:
            path = artifact_path(self.editor(unit.method), dataclasses.replace(
                self.ctx, attributes=self.fit_attributes(unit.method, unit.attr), seed=unit.seed))
            if not path.exists():
                return None
            load_artifact(path)   # raises if it does not parse or differs from its sidecar's sha256
        except Exception:         # whatever is wrong, the job fits (or quarantines and refits) it
            return None
        return {"artifact_in_cache": str(path.relative_to(self.cache_dir)), "cache_hit": True, "fit_seconds": 0.0,
                "sha256": sha256_file(path)}

    def spec(self, device: str | None = None, threads: int | None = None, dtype: str | None = None) -> dict:
        """What a job needs to rebuild this run on a worker (:func:`latent_edit_bench.worker.work`); paths absolute."""
        s = self.session
        return {"config": self.cfg.to_dict(), "out": str(self.out.absolute()),
                "cache_dir": str(self.cache_dir.absolute()), "device": device or str(s.device),
                "dtype": dtype or s.dtype_name, "batch_size": s.batch_size, "threads": threads}

    # -- summarise ---------------------------------------------------------------------------------
    def summarise(self, orig: dict, manifest: dict) -> None:
        ok = [m for m in self.cfg.methods if manifest["methods"].get(m, {}).get("status") == "ok"]
        measurements = [_measurement_rows("original", "", -1, None, orig, None, None, None)]
        samples = []
        trajectories: dict = {}
        for name in ok:
            for attr in self.cfg.attrs:
                for seed in self.cfg.fit_seed_list:
                    unit = load_file(self.unit_path(name, attr, seed))
                    levels = self.cfg.signed_levels      # exact decimals (the unit stores float32)
                    assert len(levels) == len(unit["levels"]), "unit written for other levels"
                    measured = _unprefix(unit, "x.")     # role -> [L, N, ...]
                    for i, level in enumerate(levels):
                        x = {role: v[i] for role, v in measured.items()}
                        measurements.append(_measurement_rows(name, attr, seed, level, x, unit["target"][i],
                                                              unit["strength"][i], unit["reached"][i]))
                        es = EditSet(name, attr, orig, x, unit["reached"][i].bool(), unit["strength"][i],
                                     level=level, seed=seed, instruments=dict(self.roles))
                        frame = pd.DataFrame({"method": name, "attr": attr, "seed": seed, "level": level,
                                              "sample": np.arange(self.cfg.n),
                                              "reached": unit["reached"][i].bool().numpy()})
                        parts = [frame]
                        for mname, metric in self.metrics.items():
                            cols = {k: v.detach().double().cpu().numpy() for k, v in metric.measure(es).items()}
                            parts.append(pd.DataFrame(cols).add_prefix(f"{mname}."))
                        samples.append(pd.concat(parts, axis=1))
                png = self.out / "trajectories" / f"{name}__{attr}.png"
                if png.exists():
                    trajectories.setdefault(name, {})[attr] = str(png.relative_to(self.out))
        manifest["figures"] = {"trajectories": trajectories}
        pd.concat(measurements, ignore_index=True).to_parquet(self.out / "measurements.parquet", index=False)
        samples = (pd.concat(samples, ignore_index=True) if samples else
                   pd.DataFrame(columns=["method", "attr", "seed", "level", "sample", "reached"]))
        samples.to_parquet(self.out / "samples.parquet", index=False)
        tables = analyse(samples, self.metrics, methods=ok, attrs=self.cfg.attrs, reference=self.cfg.reference,
                         n=self.cfg.n, min_reach=self.cfg.min_reach, n_boot=self.cfg.n_boot, seed=self.cfg.seed,
                         kinds=self.kinds, validity=trainer_status(self.validity()))
        for name, frame in tables.items():
            frame.to_csv(self.out / f"{name}.csv", index=False)

    def validity(self) -> pd.DataFrame:
        """validity.csv: how well the trainer and the judge see each target on this backbone, against the
        built-in human labels of its weights if any (64 renders, once; a rerun reads the file back)."""
        from latent_edit_bench.pipeline.validate import run_validity

        path = self.out / "validity.csv"
        if path.exists():
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
        frame = run_validity(self.session, self.backbone, self.roles, self.cfg.attrs, module_fingerprint(self.backbone))
        with atomic(path) as tmp:
            frame.to_csv(tmp, index=False)
        return frame

    # -- provenance --------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        from latent_edit_bench.assets import register

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
            "seconds": old.get("seconds", 0.0),   # earlier invocations' time; this one's is added at the end
            "config": self.cfg.to_dict(),
            "instruments": dict(self.roles),
            "versions": _versions(),
            "platform": {"python": platform.python_version(), "machine": platform.machine(),
                         "processor": _processor(self.session.device),   # floats differ across these
                         # the kernels PyTorch picked (AVX512, AVX2, ...; ATEN_CPU_CAPABILITY can hold them lower)
                         "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                         "device": str(self.session.device), "dtype": self.session.dtype_name,
                         "batch_size": self.session.batch_size, "torch_threads": torch.get_num_threads(),
                         "executor": self.executor.describe()},   # the jobs' device and threads, if elsewhere
            "attribute_kinds": dict(self.kinds),
            # the independent judge of each target (None: no network scores it offline); see metrics/latent_edit_bench/metrics/judge.py
            "judges": ({a: self.instruments["judge"].judge_of(a) for a in self.cfg.attrs}
                       if "judge" in self.instruments else {}),
            "metrics": {name: {"title": m.title or name, "needs": list(m.needs)} for name, m in self.metrics.items()},
            "plugins": self.plugins.versions(),
            "seeds": {"fit": self.cfg.fit_seed_list, "samples": self.cfg.seed + SAMPLE_SEED_OFFSET,
                      "bootstrap": self.cfg.seed},
            "joint_fits": list(self.joint),   # methods fitted once per seed for all attrs (`bench status` reads it)
            "assets": assets,
            "weights_sha256": weights,
            "methods": old.get("methods", {}),
        }


# -- helpers ----------------------------------------------------------------------------------------

def config_from_dict(d: dict) -> RunConfig:
    """The RunConfig whose ``to_dict()`` is ``d`` (a manifest's or a job spec's config)."""
    tuples = {f.name for f in dataclasses.fields(RunConfig) if f.type == "tuple"}
    return RunConfig(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


def _method_config(preset: str, method: str) -> dict:
    from latent_edit_bench.presets import method_config

    return method_config(preset, method)


def _skip_reason(name: str, e: Exception) -> str:
    """One short clause on why ``name`` did not load: for missing weights, the path where the file goes."""
    if isinstance(e, MissingAsset) and e.short:
        return e.short
    return f"{name} not loadable ({str(e).split(': ')[0][:100]})"


def _asset_names(inst) -> set:
    names = set(getattr(inst, "assets", ()) or ())
    for child in inst.modules():                 # composite instruments (probe) carry their parts' assets
        if child is not inst:
            names.update(getattr(child, "assets", ()) or ())
    return names


def _processor(device: torch.device) -> str:
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


# role -> (column prefix, labels): names, "xy" for points [N, P, 2], None for plain indices
_COLUMNS = {"attributes": ("R", CELEBA_ATTRIBUTES), "emotion": ("E", DEEPFACE_LABELS), "landmarks": ("L", "xy"),
            "descriptor": ("D", None), "judge": ("J", CELEBA_ATTRIBUTES), "judge_emotion": ("JE", DEEPFACE_LABELS),
            "mesh": ("M", "xy")}


def _measurement_rows(method, attr, seed, level, m: dict, target, strength, reached) -> pd.DataFrame:
    n = next(iter(m.values())).shape[0]
    cols = {"method": [method] * n, "attr": [attr] * n, "seed": np.full(n, seed),
            "level": np.full(n, np.nan if level is None else level), "sample": np.arange(n),
            "target": np.full(n, np.nan) if target is None else target.double().numpy(),
            "strength": np.zeros(n) if strength is None else strength.double().numpy(),
            "reached": np.zeros(n, bool) if reached is None else reached.bool().numpy()}
    for role, (prefix, labels) in _COLUMNS.items():   # the parquet's column order: this table's
        if role not in m:
            continue
        v = m[role].double().numpy()
        if labels == "xy":                                # points [N, P, 2] -> P.i.x, P.i.y
            for k in range(v.shape[1]):
                cols[f"{prefix}.{k}.x"], cols[f"{prefix}.{k}.y"] = v[:, k, 0], v[:, k, 1]
        else:
            names = labels if labels is not None else range(v.shape[1])
            cols.update({f"{prefix}.{name}": v[:, k] for k, name in enumerate(names)})
    return pd.DataFrame(cols)
