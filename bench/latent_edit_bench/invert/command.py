"""`bench invert`: align, project and score every photo into an output folder, resumably per photo."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.invert.align import align_faces, alignment_template
from latent_edit_bench.invert.folder import latents_file, output_names, write_inverted, write_quality_table
from latent_edit_bench.invert.projection import InvertConfig, project
from latent_edit_bench.invert.quality import INVERT_ROLES, emotion_instrument, quality


def invert_photos(paths, out: Path, session, backbone, cfg: InvertConfig, box=None, emotion: str = "auto",
                  log=print, max_pixels: int | None = None) -> Path:
    """Align, project and score every photo; resumable per photo. Returns the quality table's path."""
    from latent_edit_bench.fs import HashIndex, writable_dir
    from latent_edit_bench.images import MAX_PIXELS, load_images, to_tensor, to_uint8

    cfg.check()
    paths = [Path(p) for p in paths]
    if box is not None and len(paths) != 1:
        raise BenchError(f"--box locates the face in one photo; {len(paths)} photos were given")
    writable_dir(out)
    photos = load_images(paths, max_pixels or MAX_PIXELS)                          # unreadable / missing: exit 2 before any work
    names = output_names(paths)
    roles = dict(INVERT_ROLES, emotion=emotion_instrument(session, emotion))
    lm_inst = session.instrument("faceapi-landmarks")
    detector = session.instrument("mediapipe-blazeface")
    template = alignment_template(backbone, lm_inst, batch_size=session.batch_size)
    # align everything first: a photo that cannot be aligned stops the command before the long part
    todo, done = [], 0
    index = HashIndex(out / "latents" / "index.json")   # a latents file counts as done only if it is the one written
    for (path, rgb), name in zip(photos, names):
        if index.check(latents_file(out, name)):
            done += 1
            continue
        crops = align_faces(rgb, template, lm_inst, boxes=[box] if box else None, name=str(path), detector=detector)
        for k, crop in enumerate(crops):
            todo.append((path, f"{name}" if len(crops) == 1 else f"{name}_{k}", crop))
    if done:
        log(f"invert: {done} photo(s) already inverted in {out}, skipped")
    vgg = session.instrument("vgg16-stlpips")
    for i in range(0, len(todo), session.batch_size):
        chunk = todo[i:i + session.batch_size]
        target = torch.cat([to_tensor(c) for _, _, c in chunk])
        log(f"invert: projecting {len(chunk)} photo(s) into {backbone.name}'s {backbone.edit_space} "
            f"({cfg.steps} steps)")
        proj = project(backbone, vgg, target, cfg, progress=session.progress)
        q = quality(session, roles, vgg, target, proj.recon)
        recon = to_uint8(proj.recon)
        for j, (path, name, crop) in enumerate(chunk):
            tensors = {"latent": proj.latents[j:j + 1].contiguous()}
            if proj.noises is not None:
                tensors.update({f"noise_{k}": n[j:j + 1].contiguous() for k, n in enumerate(proj.noises)})
            meta = {"source": str(path), "name": name, "backbone": backbone.name, "edit_space": backbone.edit_space,
                    "config": json.dumps(asdict(cfg)), "instruments": json.dumps(roles), "loss": f"{float(proj.loss[j]):.6g}",
                    **{k: f"{float(v[j]):.6g}" for k, v in q.items()}}
            write_inverted(out, name, crop, recon[j], tensors, meta)
            index.record(latents_file(out, name))
    return write_quality_table(out)
