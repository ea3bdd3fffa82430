"""``bench augment``: same expression, different appearance — an augmented face data set with a manifest.

Sources are a ``bench invert`` folder (real photos projected into the edit space) or N seeded samples.
Each source is edited along each attribute with a fitted method (from the cache, fitted as ``bench run``
fits it: per method, attribute and fit seed) and driven by the ladder (bench/latent_edit_bench/pipeline/protocol.py) to
R_k(source) ± level for every level, so every method's edits are of equal achieved size. Every edit
is then judged against its source:

- **reached**: |R_k(edit) − R_k(source) − level| ≤ tol (the ladder's rule: an edit that did not get
  there is not an edit of that size);
- **emotion change**: total variation distance between the emotion instrument's 7-class
  distributions of source and edit, ½ Σ |p − q| ∈ [0, 1] (the share of probability that moved);
- **landmark shift**: mean displacement of the 68 face-api landmarks, in inter-ocular distances of
  the source (as the ``landmarks`` metric);
- **identity**, read as the ``identity`` metric reads it: the descriptor distance of source and edit
  against the distances between different faces of the backbone (all pairs of ``REFERENCE_FACES`` seeded
  samples, measured once per folder): kept identity = closer than their ``identity_percentile``-th
  percentile (default 1, a 1% false-match rate), and the rank = the share of different-face pairs closer.

An edit is kept when it reached its level and both expression numbers are under the thresholds (defaults
and why: docs/augment.md); identity joins the keep rule only with ``require_identity`` (an appearance edit
may change who it looks like: the data set is about keeping the expression).
Folder layout: ``sources/``, ``edits/<attr>/`` (every edit), ``kept/<attr>/``
(the data set: kept edits only), ``units/<attr>.safetensors`` (the measured ladder; done = present),
``units/reference.safetensors`` (descriptors of the different-face reference samples),
``manifest.parquet`` + ``manifest.csv``, ``yield.csv``, ``contact_sheet.html`` (+ a ``.png`` of its first
rows), ``config.json``.
Thresholds are not part of a unit: rerunning with other thresholds re-judges without re-editing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, check_attributes
from latent_edit_bench.contracts.instrument import require_supported
from latent_edit_bench.faces import inter_ocular_68
from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import copy_file, save_csv, save_image, save_tensors

DEFAULT_MAX_EMOTION_CHANGE = 0.22   # 90th percentile of the 1-px-shift null (docs/augment.md)
DEFAULT_MAX_LANDMARK_SHIFT = 0.10   # same null, rounded
SAMPLE_SEED_OFFSET = 1000          # as bench run: samples are held out from every fit's own samples
REFERENCE_SEED_OFFSET = 2000       # the identity reference: held out from the fits and from --sample sources
REFERENCE_FACES = 128              # 8,128 different-face pairs: P1 within +-0.007 (docs/metrics.md, identity)
ROLES = {"landmarks": "faceapi-landmarks", "descriptor": "faceapi-descriptor"}


@dataclass
class AugmentConfig:
    method: str
    attrs: tuple
    levels: tuple = (0.1, 0.2, 0.3)
    n_sample: int | None = None
    preset: str = "quick"
    backbone: str = "dcgan"
    weights: str | None = None
    instrument: str = "probe"
    emotion: str = "auto"
    seed: int = 0
    tol: float = 0.03
    max_emotion_change: float = DEFAULT_MAX_EMOTION_CHANGE
    max_landmark_shift: float = DEFAULT_MAX_LANDMARK_SHIFT
    identity_percentile: float = 1.0   # the threshold: this percentile of different-face descriptor distances
    require_identity: bool = False     # reject edits that are not closer to their source than the threshold
    overrides: dict = dataclasses.field(default_factory=dict)   # method options over the preset's (--set)

    def editor(self, plugins):
        return plugins.methods.create(self.method, **{**plugins.methods.preset_config(self.method, self.preset), **self.overrides})

    @classmethod
    def make(cls, attrs, levels=(0.1, 0.2, 0.3), max_emotion_change=None, max_landmark_shift=None,
             identity_percentile=None, **kw):
        if isinstance(attrs, str):
            attrs = [a.strip() for a in attrs.split(",") if a.strip()]
        cfg = cls(attrs=tuple(attrs), levels=tuple(float(v) for v in levels), **kw)
        if max_emotion_change is not None:
            cfg.max_emotion_change = float(max_emotion_change)
        if max_landmark_shift is not None:
            cfg.max_landmark_shift = float(max_landmark_shift)
        if identity_percentile is not None:
            cfg.identity_percentile = float(identity_percentile)
        return cfg

    @property
    def signed_levels(self) -> list[float]:
        return sorted([-v for v in self.levels] + list(self.levels))

    def unit_key(self) -> dict:
        """What the measured edits depend on (thresholds only judge them, so they are left out)."""
        d = dataclasses.asdict(self)
        for k in ("max_emotion_change", "max_landmark_shift", "identity_percentile", "require_identity", "attrs"):
            d.pop(k)
        return d

    def validate(self, plugins) -> None:
        plugins.methods.get(self.method)
        if not self.attrs:
            raise BenchError("--attrs needs at least one attribute")
        check_attributes(self.attrs, plugins.attributes())
        if not self.levels or any(not 0 < v < 1 for v in self.levels) or len(set(self.levels)) != len(self.levels):
            raise BenchError(f"--levels must be distinct numbers in (0, 1), got {', '.join(map(str, self.levels))}")
        if not 0 < self.identity_percentile < 50:
            raise BenchError(f"--identity-percentile must be in (0, 50) (a percentile of different-face "
                             f"distances; default 1), got {self.identity_percentile:g}")
        plugins.backbones.get(self.backbone)
        plugins.instruments.get(self.instrument)
        if self.emotion != "auto":
            plugins.instruments.get(self.emotion)


@dataclass
class Result:
    kept: int
    total: int
    manifest: Path
    sheet: Path | None = None   # contact_sheet.html, rendered from the manifest by the caller (api.augment)


def _sources(cfg: AugmentConfig, ctx, backbone, from_dir: Path | None):
    """(names, source descriptions, latents [N, L, D])."""
    if from_dir is None:
        lat = ctx.latents(cfg.n_sample, seed=cfg.seed + SAMPLE_SEED_OFFSET)
        names = [f"sample{i:04d}" for i in range(cfg.n_sample)]
        return names, [f"sample seed {cfg.seed + SAMPLE_SEED_OFFSET} #{i}" for i in range(cfg.n_sample)], lat
    from latent_edit_bench.invert import read_inverted

    rows = read_inverted(from_dir)
    wrong = [r["name"] for r in rows if r.get("backbone") != backbone.name]
    if wrong:
        raise BenchError(f"{from_dir}: {', '.join(wrong[:5])} were inverted into backbone "
                         f"{rows[0].get('backbone')!r}, not {backbone.name!r}; pass --backbone {rows[0].get('backbone')}")
    lat = torch.cat([r["latent"] for r in rows]).float()
    if tuple(lat.shape[1:]) != (backbone.n_layers, backbone.latent_dim):
        raise BenchError(f"{from_dir}: latents of shape {tuple(lat.shape[1:])} do not fit {backbone.name} "
                         f"({backbone.n_layers}x{backbone.latent_dim})")
    return [r["name"] for r in rows], [r.get("source", r["name"]) for r in rows], lat


def read_labels(path: Path, names: list[str], sources: list[str]) -> pd.DataFrame:
    """The label CSV: one row per source, matched on its 'source' column by file name or stem; the other
    columns are carried to every row of that source. Sources without a row get empty labels (and a note)."""
    try:
        labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:
        raise BenchError(f"cannot read --labels {str(path)!r} as CSV: {e}") from None
    if "source" not in labels.columns:
        raise BenchError(f"--labels {str(path)!r} needs a 'source' column (photo file name or stem); "
                         f"it has: {', '.join(labels.columns)}")
    if labels["source"].duplicated().any():
        dup = labels["source"][labels["source"].duplicated()].tolist()
        raise BenchError(f"--labels: source(s) listed twice: {', '.join(dup[:5])}")
    keys = {}
    for _, row in labels.iterrows():
        keys[row["source"]] = row
        keys[Path(row["source"]).name] = row
        keys[Path(row["source"]).stem] = row
    out = []
    for name, src in zip(names, sources):
        row = keys.get(src) if src in keys else keys.get(Path(src).name, keys.get(name))
        out.append({} if row is None else {f"label.{k}": v for k, v in row.items() if k != "source"})
    return pd.DataFrame(out, index=range(len(names)))


def augment(cfg: AugmentConfig, out: Path, session, from_dir: Path | None = None, labels: Path | None = None,
            cache_dir: Path | str = "cache", log=print) -> Result:
    from safetensors.torch import load_file

    from latent_edit_bench.fs import HashIndex, atomic, read_index, writable_dir
    from latent_edit_bench.images import to_uint8
    from latent_edit_bench.invert import emotion_instrument
    from latent_edit_bench.contracts.artifacts import fit_or_load
    from latent_edit_bench.contracts.method import FitContext
    from latent_edit_bench.pipeline.protocol import ladder_edit

    plugins = session.plugins
    cfg.validate(plugins)
    cfg.editor(plugins)                              # a bad method option fails now, before any work
    out = writable_dir(out)
    writable_dir(cache_dir)
    if labels is not None and not Path(labels).is_file():
        raise BenchError(f"--labels {str(labels)!r}: no such file")
    cfg_path = out / "config.json"
    key = cfg.unit_key()
    if from_dir is not None:
        key["from"] = str(Path(from_dir).resolve())
    key = json.loads(json.dumps(key))              # tuples -> lists, as read back from the file
    # a corrupt config.json: what made the units is unknown, so it goes with the index that vouched for them
    old = read_index(cfg_path, also=[out / "units" / "index.json"])
    if old and old.get("unit_key") != key:
        raise BenchError(f"{out} holds an augmentation with other settings; choose another -o or remove it")
    index = HashIndex(out / "units" / "index.json")   # every unit file is checked against it before use

    opts = {"weights": cfg.weights} if cfg.weights else {}
    backbone = session.backbone(cfg.backbone, **opts)
    roles = dict(ROLES, attributes=cfg.instrument, emotion=emotion_instrument(session, cfg.emotion))
    for name in roles.values():
        session.instrument(name)
    R = session.pool[cfg.instrument]
    require_supported(R, cfg.attrs, cfg.instrument)
    ctx = FitContext(backbone, session.pool, attributes=cfg.attrs, seed=cfg.seed, device=session.device,
                     cache_dir=cache_dir, progress=session.progress, attribute_instrument=cfg.instrument,
                     load_instrument=session.instrument, batch_size=session.batch_size, dtype=session.dtype)
    names, sources, lat = _sources(cfg, ctx, backbone, from_dir)
    label_frame = read_labels(Path(labels), names, sources) if labels is not None else None
    with atomic(cfg_path) as tmp:
        tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "unit_key": key}, indent=2))

    # the sources: rendered, measured and written once
    orig_path = out / "units" / "sources.safetensors"
    if not index.check(orig_path):
        log(f"augment: measuring {len(names)} source(s)")
        orig = {k: v.cpu() for k, v in session.measure(backbone, lat, roles).items()}
        imgs = to_uint8(session.render(backbone, lat))
        for name, im in zip(names, imgs):
            _png(im, out / "sources" / f"{name}.png")
            photo = Path(from_dir) / "aligned" / f"{name}.png" if from_dir is not None else None
            if photo is not None and photo.exists():      # the photo beside its reconstruction, in the sheet
                copy_file(photo, out / "sources" / f"{name}.photo.png")
        save_tensors(orig_path, {f"orig.{k}": v for k, v in orig.items()} | {"latents": lat.contiguous()})
        index.record(orig_path)
    stored = load_file(str(orig_path))
    if not torch.equal(stored["latents"], lat):
        raise BenchError(f"{out}: the sources changed since this folder was started; choose another -o")
    orig = {k[5:]: v for k, v in stored.items() if k.startswith("orig.")}
    ref_path = out / "units" / "reference.safetensors"
    if not index.check(ref_path):
        log(f"augment: measuring {REFERENCE_FACES} reference samples (different faces, for identity)")
        ref_lat = ctx.latents(REFERENCE_FACES, seed=cfg.seed + REFERENCE_SEED_OFFSET)
        ref = session.measure(backbone, ref_lat, {"descriptor": ROLES["descriptor"]})["descriptor"].cpu()
        save_tensors(ref_path, {"descriptor": ref})
        index.record(ref_path)
    reference = load_file(str(ref_path))["descriptor"]

    for attr in cfg.attrs:
        path = out / "units" / f"{attr}.safetensors"
        if index.check(path):
            continue
        editor = cfg.editor(plugins)
        log(f"augment: {cfg.method} for {attr} (fit seed {cfg.seed}; cached in {cache_dir})")
        fit_or_load(editor, dataclasses.replace(ctx, attributes=(attr,), seed=cfg.seed))
        lad = ladder_edit(editor, ctx, lat, attr, cfg.signed_levels, tol=cfg.tol, batch_size=session.batch_size)
        n_lv, n = lad.latents.shape[:2]
        flat = lad.latents.reshape(n_lv * n, *lad.latents.shape[2:])
        m = {k: v.cpu() for k, v in session.measure(backbone, flat, roles).items()}
        imgs = to_uint8(session.render(backbone, flat))
        for i, level in enumerate(cfg.signed_levels):
            for j, name in enumerate(names):
                _png(imgs[i * n + j], out / "edits" / attr / f"{name}__{attr}_{level:+.2f}.png")
        unit = {f"x.{k}": v.reshape(n_lv, n, *v.shape[1:]).contiguous() for k, v in m.items()}
        unit.update(strength=lad.strength, target=lad.target, levels=lad.levels)
        save_tensors(path, unit)                         # last: marks the attribute done
        index.record(path)

    manifest = judge(cfg, out, names, sources, orig, label_frame, reference=reference)
    kept = manifest[manifest["kept"]]
    _sync_kept(out, kept)
    with atomic(out / "manifest.parquet") as tmp:
        manifest.to_parquet(tmp, index=False)
    save_csv(manifest, out / "manifest.csv", float_format="%.5f")
    save_csv(yield_table(manifest), out / "yield.csv", float_format="%.4f")
    return Result(int(len(kept)), int(len(manifest)), out / "manifest.parquet")


def judge(cfg: AugmentConfig, out: Path, names, sources, orig: dict, label_frame=None,
          reference: torch.Tensor | None = None) -> pd.DataFrame:
    """The manifest: one row per (source, attribute, level), measured numbers and the keep decision.
    ``reference``: descriptors [M, 128] of different faces of the backbone (default: the sources')."""
    from safetensors.torch import load_file

    from latent_edit_bench.attributes import EMOTION_LABELS as DEEPFACE_EMOTIONS
    # the identity metric's own reading, so a manifest's identity numbers mean what a run's do
    from latent_edit_bench.metrics.identity import pair_distances, verify

    different = pair_distances(orig["descriptor"] if reference is None else reference)
    pct = f"P{cfg.identity_percentile:g}"

    lo = orig["landmarks"]
    iod = inter_ocular_68(lo)
    frames = []
    for attr in cfg.attrs:
        unit = load_file(str(out / "units" / f"{attr}.safetensors"))
        k = CELEBA_ATTRIBUTES.index(attr)
        for i, level in enumerate(cfg.signed_levels):
            x = {r[2:]: v[i] for r, v in unit.items() if r.startswith("x.")}
            r0, r1 = orig["attributes"][:, k].double(), x["attributes"][:, k].double()
            achieved = r1 - r0
            reached = (achieved - level).abs() <= cfg.tol
            e0, e1 = orig["emotion"].double(), x["emotion"].double()
            emo = 0.5 * (e1 - e0).abs().sum(1)
            shift = (x["landmarks"] - lo).norm(dim=-1).mean(1).double() / iod.double()
            ident = torch.nn.functional.cosine_similarity(x["descriptor"], orig["descriptor"], dim=1).double()
            dist = (x["descriptor"].double() - orig["descriptor"].double()).norm(dim=1)
            ver = verify(dist, different, cfg.identity_percentile)
            thr = float(ver["threshold"])
            reasons = []
            for j in range(len(names)):
                why = []
                if not reached[j]:
                    why.append(f"level not reached (achieved {achieved[j]:+.3f})")
                if emo[j] > cfg.max_emotion_change:
                    why.append(f"emotion change {emo[j]:.3f} > {cfg.max_emotion_change:g}")
                if shift[j] > cfg.max_landmark_shift:
                    why.append(f"landmark shift {shift[j]:.3f} > {cfg.max_landmark_shift:g}")
                if cfg.require_identity and not ver["kept"][j]:
                    why.append(f"identity lost (descriptor distance {dist[j]:.3f} >= {pct} of different faces "
                               f"{thr:.3f})")
                reasons.append("; ".join(why))
            frames.append(pd.DataFrame({
                "source": list(sources), "name": list(names), "attribute": attr, "level": level,
                "achieved_change": achieved.numpy(), "strength": unit["strength"][i].double().numpy(),
                "emotion_before": [DEEPFACE_EMOTIONS[t] for t in e0.argmax(1).tolist()],
                "emotion_after": [DEEPFACE_EMOTIONS[t] for t in e1.argmax(1).tolist()],
                "emotion_change": emo.numpy(), "landmark_shift_iod": shift.numpy(), "identity_cos": ident.numpy(),
                "identity_distance": dist.numpy(), "identity_rank": ver["rank"].numpy(),
                "identity_kept": ver["kept"].numpy().astype(bool), "identity_threshold": thr,
                "kept": [not r for r in reasons], "reason": reasons,
                "image": [f"edits/{attr}/{n}__{attr}_{level:+.2f}.png" for n in names],
                **{f"p_before.{e}": e0[:, t].numpy() for t, e in enumerate(DEEPFACE_EMOTIONS)},
                **{f"p_after.{e}": e1[:, t].numpy() for t, e in enumerate(DEEPFACE_EMOTIONS)},
            }))
            if label_frame is not None and len(label_frame.columns):
                frames[-1] = pd.concat([frames[-1], label_frame.reset_index(drop=True)], axis=1)
    return pd.concat(frames, ignore_index=True)


def yield_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per attribute and level: the fraction of edits kept, of edits that reached the level, and why not
    (``identity_kept``: the share closer to their source than the identity threshold, a keep criterion
    only with --require-identity)."""
    m = manifest.assign(reached=~manifest["reason"].str.contains("level not reached"),
                        emotion_ok=~manifest["reason"].str.contains("emotion change"),
                        landmarks_ok=~manifest["reason"].str.contains("landmark shift"))
    g = m.groupby(["attribute", "level"], sort=True)
    return pd.DataFrame({"n": g.size(), "reached": g["reached"].mean(), "emotion_ok": g["emotion_ok"].mean(),
                         "landmarks_ok": g["landmarks_ok"].mean(),
                         "identity_kept": g["identity_kept"].mean(), "kept": g["kept"].mean()}).reset_index()


def _sync_kept(out: Path, kept: pd.DataFrame) -> None:
    """``kept/`` holds exactly the kept edits (thresholds may have changed since the last call)."""
    want = {out / "kept" / Path(p).relative_to("edits") for p in kept["image"]}
    root = out / "kept"
    if root.exists():
        for f in root.rglob("*.png"):
            if f not in want:
                f.unlink()
    for p in kept["image"]:
        dst = out / "kept" / Path(p).relative_to("edits")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy_file(out / p, dst)


def _png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    save_image(Image.fromarray(arr), path)
