"""``bench validate`` and a run's validity.csv: render the labelled faces, score them with every instrument
that offers the attribute (the trainer R and the judge), and read the scores against the human calls.

The statistics (AUC, its interval, the status) and the label-file format live in
:mod:`latent_edit_bench.pipeline.validity` (no torch); this module does the rendering and measuring,
through the session's batched loop and instrument pool, so a run scores its labelled faces with the
very instruments it measures with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.contracts.instrument import supported_attributes
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline import validity as V


def measure_labelled(session, labels: V.Labels, roles: dict[str, str], backbone=None) -> dict[str, torch.Tensor]:
    """{role: [faces of ``labels``, ...]} on the CPU: the labelled samples rendered by ``backbone`` (its
    weights must be the ones the file names), or the labelled image files, measured by each role's instrument."""
    if labels.key == "sample":
        from latent_edit_bench.contracts.artifacts import module_fingerprint

        if backbone is None:
            raise BenchError(f"{labels.path}: faces given by sample index need a backbone (--backbone)")
        want, have = labels.meta["weights_sha256"], module_fingerprint(backbone)
        if want != have:
            raise BenchError(f"{labels.path} labels samples of backbone {labels.meta['backbone']} with weights "
                             f"sha256 {want[:12]}…; this backbone ({backbone.name}) has {have[:12]}…: the indices "
                             f"would be other faces (give the backbone and --weights the file names)")
        with torch.no_grad():
            latents = backbone.to_edit(backbone.sample_z(int(labels.meta["n"]), int(labels.meta["seed"])))
        latents = latents[torch.as_tensor(labels.faces, device=latents.device)]
        return {k: v.cpu() for k, v in session.measure(backbone, latents, roles).items()}
    from latent_edit_bench.images import load_images, to_tensor

    names = list(dict.fromkeys(roles.values()))

    def measure(x):
        outs = {name: session.instrument(name)(x) for name in names}
        return {role: outs[name][role].float() for role, name in roles.items()}

    images = [rgb for _, rgb in load_images(labels.faces)]
    by_size: dict = {}
    for i, rgb in enumerate(images):   # photos may differ in size: one batched pass per size
        by_size.setdefault(rgb.shape, []).append(i)
    out: dict = {}
    for idx in by_size.values():
        m = session.map(measure, torch.cat([to_tensor(images[i]) for i in idx]), out="cpu")
        for role, v in m.items():
            out.setdefault(role, torch.full((len(images), *v.shape[1:]), float("nan")))[idx] = v
    return out


def validity_table(labels: V.Labels | None, measured: dict | None, attrs, trainer: str, trainer_attrs,
                   judges: dict) -> pd.DataFrame:
    """validity.csv: per attribute a trainer row (where the trainer scores it) and a judge row (where a judge is
    configured), each against ``labels``; "no labels" rows where there are none for the attribute."""
    rows = []
    for attr in attrs:
        k = CELEBA_ATTRIBUTES.index(attr)
        for role, name, out, offered in (("trainer", trainer, "attributes", attr in trainer_attrs),
                                         ("judge", judges.get(attr), "judge", bool(judges.get(attr)))):
            if not offered:
                continue
            if labels is None or attr not in labels.values or measured is None or out not in measured:
                rows.append(V.no_label_row(attr, role, name))
            else:
                rows.append(V.score_row(attr, role, name, measured[out][:, k].double().numpy(), labels))
    return V.frame(rows)


def run_validity(session, backbone, roles: dict[str, str], attrs, fingerprint: str) -> pd.DataFrame:
    """A run's validity.csv: its trainer and judge on the built-in labels of its backbone, if any (64 renders)."""
    trainer_name = roles["attributes"]
    trainer = session.instrument(trainer_name)
    judge = session.instrument("judge") if roles.get("judge") == "judge" else None
    judges = {a: judge.judge_of(a) for a in attrs} if judge is not None else {}
    labels = V.builtin_labels(fingerprint)
    measured = None
    if labels is not None and labels.key == "sample" and set(attrs) & set(labels.attrs):
        measured = measure_labelled(session, labels, {r: n for r, n in roles.items()
                                                      if r == "attributes" or (r == "judge" and judge is not None)},
                                    backbone)
    supported = supported_attributes(trainer)
    return validity_table(labels, measured, attrs, trainer_name, supported, judges)


def validate(session, labels_path: Path | None, backbone_name: str | None, weights: str | None, trainer: str,
             judges: dict) -> pd.DataFrame:
    """``bench validate``: every attribute of the label file (the built-in file of the backbone without
    ``labels_path``), scored by the trainer and each judge."""
    from latent_edit_bench.contracts.artifacts import module_fingerprint
    from latent_edit_bench.instruments.judge import DEFAULT_JUDGES, check_judges

    plugins = session.plugins
    plugins.instruments.get(trainer)
    check_judges(judges, plugins.instruments)
    labels = V.read_labels(labels_path) if labels_path is not None else None
    backbone = None
    if labels is None or labels.key == "sample":
        name = backbone_name or (labels.meta["backbone"] if labels is not None else "dcgan")
        backbone = session.backbone(name, **({"weights": weights} if weights else {}))
        if labels is None:
            labels = V.builtin_labels(module_fingerprint(backbone))
            if labels is None:
                raise BenchError(f"no built-in labels for backbone {name!r} with these weights (built in: "
                                 f"{', '.join(p.name for p in V.builtin_label_files()) or 'none'}); "
                                 f"give --labels FILE (format: docs/validity.md)")
    specs = {a: s for a, s in {**DEFAULT_JUDGES, **judges}.items() if a in labels.attrs}
    roles = {"attributes": trainer}
    inst = session.instrument(trainer)
    if specs:
        session.instrument("judge", judges=specs, create=session.instrument)
        roles["judge"] = "judge"
    measured = measure_labelled(session, labels, roles, backbone)
    supported = supported_attributes(inst)
    return validity_table(labels, measured, labels.attrs, trainer, supported, specs)


def format_table(frame: pd.DataFrame) -> list[str]:
    """The table `bench validate` prints: one line per (attribute, role, instrument)."""
    head = f"{'attribute':<12} {'role':<8} {'instrument':<34} {'AUC [95% CI]':<20} {'n+':>4} {'n-':>4} " \
           f"{'unsure':>7}  status"
    lines = [head]
    for r in frame.itertuples(index=False):
        auc = f"{r.auc:.2f} [{r.lo:.2f}, {r.hi:.2f}]" if np.isfinite(r.auc) else "–"
        unsure = f"{100 * r.unsure_share:.0f}%" if np.isfinite(r.unsure_share) else "–"
        lines.append(f"{r.attr:<12} {r.role:<8} {str(r.instrument):<34} {auc:<20} {int(r.n_pos):>4} "
                     f"{int(r.n_neg):>4} {unsure:>7}  {r.status}")
    return lines
