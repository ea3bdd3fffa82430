"""``bench run``: fit (per attribute and fit seed) -> ladder edits -> measure -> summarise, resumable.

The run writes files and nothing else: the report (``reports/``) is rendered from the folder afterwards
(``api.run`` then ``render_report``), so no core module imports it. Its neighbours: the config
(config.py), where units run (units.py, executors.py), the tables (summary.py), the provenance
(manifest.py).

The work is split into units, each written atomically to ``runs/<id>/units/`` when done: the shared
originals (rendered and measured once), then one unit per (method, fit seed, attribute) holding the
measured ladder edits (every sample driven to R_k(original) + level for every signed level). A rerun
of the same command finds its folder (the id hashes the config), skips finished units and redoes
only what a crash interrupted; fits resume through the artifact store. A method that fits jointly
(``Editor.joint_fit``: EYE and its regularised forms, as the paper trains them) fits one artifact per
fit seed for the run's whole attribute set, cached per (method, attribute set, fit seed); the others
(and every method under ``fit="per-attribute"``) one per (method, attribute, fit seed), so a run with
other ``--attrs`` reuses every fit it shares. Summaries are cheap and rebuilt from the units every time.
A method that raises or produces NaN is recorded as failed and the others go on. Folder layout and
rules: docs/run-format.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from safetensors.torch import load_file

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.contracts.instrument import require_supported
from latent_edit_bench.contracts.artifacts import fit_or_load, module_fingerprint
from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.errors import BenchError, short_reason
from latent_edit_bench.fs import atomic, quarantine, save_tensors, writable_dir
from latent_edit_bench.pipeline.config import (DEFAULT_INSTRUMENTS, DEFAULT_LEVELS, DEFAULT_METRICS,  # noqa: F401
                                               EMOTION_BACKENDS, FIT_MODES, SAMPLE_SEED_OFFSET, RunConfig,
                                               config_from_dict, make_config, make_metrics, parse_levels, validate)
from latent_edit_bench.pipeline.manifest import build_manifest, check_folder, failed_methods, write_json
from latent_edit_bench.pipeline.protocol import ladder_edit
from latent_edit_bench.pipeline.session import PRECISION_NOTES, Session
from latent_edit_bench.pipeline.summary import VALIDITY_RECORD, summarise, table_hashes, unit_path, unprefix

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
        self.metrics = make_metrics(cfg, self.plugins)
        writable_dir(self.out)
        writable_dir(self.cache_dir)
        check_folder(self.out, cfg)

    def editor(self, method: str):
        """A fresh, unfitted editor of ``method`` with the preset's config and the run's overrides."""
        return self.plugins.methods.create(method, **{**self.plugins.methods.preset_config(method, self.cfg.preset),
                                                      **self.cfg.overrides.get(method, {})})

    # -- folder ----------------------------------------------------------------------------------
    def unit_path(self, method: str | None, attr: str | None = None, seed: int = 0) -> Path:
        return unit_path(self.out, method, attr, seed)

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
        for m in self.cfg.methods:   # what only the loaded backbone can tell (layer counts), before any fit
            try:
                self.editor(m).check_backbone(self.backbone)
            except BenchError as e:
                raise BenchError(f"method {m!r} on backbone {self.cfg.backbone!r}: {e}") from None
        R = self.instruments[self.roles["attributes"]]
        require_supported(R, self.cfg.attrs, self.roles["attributes"])
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
                self.log(f"emotion: using {name}; " + "; ".join(short_reason(n, e) for n, e in skipped.items()))
            return name, inst
        raise BenchError("no emotion instrument could be loaded: "
                         + "; ".join(short_reason(n, e) for n, e in skipped.items()))

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
            m = unprefix(load_file(path), "orig.")
        else:
            self.log(f"originals: rendering and measuring {self.cfg.n} samples")
            m = {k: v.cpu() for k, v in self.measure(self.latents()).items()}
            save_tensors(path, {f"orig.{k}": v for k, v in m.items()})
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
            x = lat.to(self.session.device)
            edited = editor.edit(x, attr, float(s))
            if not isinstance(edited, torch.Tensor) or edited.shape != lat.shape or edited.device != x.device:
                got = (f"{tuple(edited.shape)} on {edited.device}" if isinstance(edited, torch.Tensor)
                       else type(edited).__name__)
                raise TypeError(f"{name}.edit() returned {got} for latents of shape {tuple(lat.shape)} on {x.device}; "
                                f"the method contract wants edited latents of the same shape [N, layers, dim] on "
                                f"the same device (docs/writing-a-method.md)")
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
            # the tables and the manifest are the driver's alone: what a killed driver left half-written goes
            # (unit files are left to the executor: a reattached job may be writing one)
            for stale in self.out.glob("*.tmp*"):
                stale.unlink(missing_ok=True)
            return self._execute()

    @property
    def failed(self) -> list[str]:
        """This run's methods the folder's manifest records as failed (after :meth:`execute`: its failures)."""
        failed = set(failed_methods(self.out))
        return [m for m in self.cfg.methods if m in failed]

    def _execute(self) -> Path:
        from tqdm.auto import tqdm

        from latent_edit_bench.pipeline.units import Ledger

        t0 = time.perf_counter()
        if self.session.dtype_name in PRECISION_NOTES:
            self.log(PRECISION_NOTES[self.session.dtype_name])
        self._load_models()
        manifest = self._manifest()
        write_json(self.out / "manifest.json", manifest)
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
                write_json(self.out / "manifest.json", manifest)

        try:
            self.executor.execute(self, todo, on_event)
        finally:   # an error's line then starts on a line of its own
            bar.close()
        write_json(self.out / "manifest.json", manifest)
        self.summarise(self.originals(), manifest)
        # the time all invocations took: a rerun that resumes (or only re-summarises) adds to it
        manifest["seconds"] = round(float(manifest.get("seconds") or 0) + time.perf_counter() - t0, 1)
        write_json(self.out / "manifest.json", manifest)
        return self.out

    # -- units: the seam between the run and its executor ------------------------------------------
    def todo(self) -> list:
        """The units still to do, in order: the originals if missing, each missing edit unit (method, fit
        seed, attribute) and the fit it needs (a joint fit once, if any of its edit units is missing). A unit
        file whose sha256 differs from the one recorded when it was written is moved aside
        (``<name>.corrupt-<time>``) and redone."""
        from latent_edit_bench.pipeline.units import all_units

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
            save_tensors(path, self.edit_unit(unit.method, editor, unit.attr, unit.seed, self.originals()))
        return {"sha256": sha256_file(path)}

    def cached_fit(self, unit) -> dict | None:
        """The record of fit ``unit`` if the cache already holds its artifact intact (then no job is needed:
        a rerun with more attributes or fit seeds submits only the new fits), else None."""
        from latent_edit_bench.assets import sha256_file
        from latent_edit_bench.contracts.artifacts import artifact_path, load_artifact

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
        figures = summarise(self.out, self.cfg, orig, ok, self.metrics, self.roles, self.kinds, self.validity())
        manifest["figures"] = {"trajectories": figures}
        manifest["tables"] = table_hashes(self.out)   # the report checks what it reads against these

    def validity(self) -> pd.DataFrame:
        """validity.csv: how well the trainer and the judge see each target on this backbone, against the
        built-in human labels of its weights if any (64 renders, once; a rerun reads the file back)."""
        from latent_edit_bench.pipeline.validate import run_validity

        from latent_edit_bench.assets import sha256_file

        path = self.out / "validity.csv"
        if path.exists():
            if self.ledger.intact(VALIDITY_RECORD, path):
                return pd.read_csv(path, keep_default_na=False, na_values=[""])
            quarantine(path, "not the file units.json recorded (sha256)")
        frame = run_validity(self.session, self.backbone, self.roles, self.cfg.attrs, module_fingerprint(self.backbone))
        with atomic(path) as tmp:
            frame.to_csv(tmp, index=False)
        self.ledger.update(VALIDITY_RECORD, state="done", sha256=sha256_file(path))
        return frame

    # -- provenance --------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        return build_manifest(self)

