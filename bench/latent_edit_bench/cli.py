"""The ``bench`` command line. User errors exit with code 2 and a message, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.session import resolve_device


class BenchGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)


def _plugins():
    from latent_edit_bench.plugins import get_plugins

    return get_plugins()


DTYPE_OPTION = click.option(
    "--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
    help="precision of rendering and measuring (autocast; stored numbers stay float32). "
         "fp16/bf16 need --device cuda (on a CPU they are refused: emulated on most CPUs, 20-280x slower); "
         "bf16 moves scores more than fp16 (bench perf --precision)")


def writable_output(path: Path) -> Path:
    """Create the parent folder now, so a bad -o fails before any work is done."""
    from latent_edit_bench.fs import file_in_the_way, writable_dir

    blocker = file_in_the_way(path.parent)
    if blocker is not None:   # e.g. -o /dev/null/x.png: name the parent, not mkdir's "File exists"
        raise BenchError(f"cannot write {str(path)!r}: its parent {str(blocker)!r} is not a directory")
    writable_dir(path.parent)
    return path


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="latent-edit-bench")
def cli():
    """Compare latent-space face editors by how much they disturb expression."""


@cli.command("list")
def list_cmd():
    """List backbones, instruments, methods, metrics and known attribute names."""
    plugins = _plugins()
    for title, reg in [("backbones", plugins.backbones), ("instruments", plugins.instruments),
                       ("methods", plugins.methods), ("regularisers (--methods <method>+<name>)", plugins.regularisers),
                       ("metrics", plugins.metrics)]:
        click.echo(f"{title}:")
        if not reg.names():
            click.echo("  (none)")
        for entry in reg:
            click.echo(f"  {entry.name:<28} {entry.summary}  [{reg.origin(entry.name)}]")
    attrs = plugins.attributes()
    click.echo(f"attributes ({len(attrs)}):")
    click.echo("  " + ", ".join(attrs))
    for line in _attribute_kind_lines(plugins):
        click.echo(line)


def _attribute_kind_lines(plugins) -> list[str]:
    """The default attribute instrument's attributes, each marked as a trained network's score or a
    heuristic's, so nobody reads a colour heuristic's score with a classifier's confidence."""
    from latent_edit_bench.contracts.instrument import supported_attributes
    from latent_edit_bench.instruments.probe import attribute_kind
    from latent_edit_bench.pipeline.run import DEFAULT_INSTRUMENTS

    name = DEFAULT_INSTRUMENTS["attributes"]
    try:
        inst = plugins.instruments.create(name)
    except BenchError as e:   # e.g. weights not fetched: the listing itself must still work
        return [f"attribute instrument {name!r}: not loadable ({e})"]
    supported = list(supported_attributes(inst, plugins.attributes()))
    kinds = [attribute_kind(inst, a) for a in supported]
    lines = [f"attribute instrument {name!r} ({len(supported)} attributes):"]
    for kind, label in (("network", "trained network"), ("heuristic", "heuristic")):
        names = [a for a, k in zip(supported, kinds) if k == kind]
        if names:
            lines.append(f"  {label + ':':<17}{', '.join(names)}")
    return lines


@cli.command()
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
    backbone = _plugins().backbones.create(backbone_name, **options).to(resolve_device(device))
    images = backbone.sample(n, seed, progress=n > 64)
    save_png(make_grid(images, ncol=ncol), output, scale=scale)
    click.echo(f"wrote {output} ({n} samples of {backbone_name}, seed {seed}, "
               f"{backbone.resolution}px, edit space {backbone.edit_space} "
               f"[{backbone.n_layers}x{backbone.latent_dim}])")


@cli.group(cls=BenchGroup)
def zoo():
    """Pretrained weights you fetch yourself (URLs, checksums, cache)."""


@zoo.command("list")
def zoo_list():
    """Show zoo entries and whether each is in the cache."""
    from latent_edit_bench import zoo as zoo_mod

    click.echo(f"cache: {zoo_mod.cache_dir()}")
    for e in zoo_mod.ZOO.values():
        state = "present" if e.path.exists() else "missing"
        click.echo(f"{e.name:<30} {state:<8} {e.format:<16} {e.filename}")
        click.echo(f"    url: {e.url}")
        click.echo(f"    licence: {e.licence}; sha256: {e.sha256 or 'not published'}")
        if e.notes:
            click.echo(f"    {e.notes}")


@zoo.command("fetch")
@click.argument("name")
def zoo_fetch(name):
    """Download a zoo entry into the cache and verify its checksum."""
    from latent_edit_bench import zoo as zoo_mod

    click.echo(f"saved {zoo_mod.fetch(name)}")


@zoo.command("train-regressor")
@click.option("--celeba", "celeba_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="CelebA-layout folder (img_align_celeba/, list_attr_celeba.txt)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("celeba_r50.model"), show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=128, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="stop this call early; rerun resumes")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def zoo_train_regressor(celeba_dir, output, epochs, batch_size, lr, image_size, max_steps, seed, device):
    """Train the 40-attribute ResNet-50 regressor R on CelebA (resumes after a kill)."""
    from latent_edit_bench.trainers.regressor import train_regressor

    writable_output(output)
    result = train_regressor(celeba_dir, output, epochs=epochs, batch_size=batch_size, lr=lr,
                             image_size=image_size, device=str(resolve_device(device)), seed=seed,
                             max_steps=max_steps)
    state = "finished" if result.finished else "stopped early (rerun to resume)"
    click.echo(f"{state} at epoch {result.epoch}, step {result.step}: {result.out_path}")


@cli.command()
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
def measure(images, instrument_set, output_dir, use_dlib, device, no_detect, min_score):
    """Find every face in IMAGES (photos), crop and measure each: emotions, age/gender, attributes, landmarks.

    Writes <image>_faces.png (numbered boxes and landmarks); exit 2 if an image has no face."""
    from latent_edit_bench.measure import measure_files
    from latent_edit_bench.pipeline.session import Session

    session = Session(_plugins(), device=resolve_device(device))
    measure_files(images, instrument_set, output_dir, session.device, use_dlib, echo=click.echo,
                  detect=not no_detect, min_score=min_score, session=session)


@zoo.command("train-stylegan2")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="run folder: checkpoint.pt, log.csv, samples_*.png, quality.csv, stylegan2.safetensors")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="total steps (a rerun resumes up to this)")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--size", type=click.Choice(["16", "32", "64"]), default="64", show_default=True)
@click.option("--max-channels", type=click.IntRange(min=8), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.002, show_default=True)
@click.option("--r1-gamma", type=click.FloatRange(min=0), default=None, help="default: 0.0002 * size^2 / batch")
@click.option("--pl-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="path-length regularisation weight (0 = off)")
@click.option("--mixed-precision", type=click.Choice(["bf16", "fp16"]), default=None, help="CUDA only")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="KID/FID against the DCGAN every N steps (needs faceapi-descriptor)")
@click.option("--snapshot-every", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--no-resume", is_flag=True, help="start over, discarding the folder's checkpoint and logs")
def zoo_train_stylegan2(output_dir, steps, batch_size, size, max_channels, lr, r1_gamma, pl_weight,
                        mixed_precision, eval_every, snapshot_every, seed, device, no_resume):
    """Distil a StyleGAN2 from the embedded DCGAN (a GPU job; resumes after a kill) and export it."""
    from latent_edit_bench.trainers.stylegan2 import export_stylegan2, train_stylegan2

    writable_output(output_dir / "checkpoint.pt")
    result = train_stylegan2(output_dir, steps=steps, batch_size=batch_size, size=int(size),
                             max_channels=max_channels, lr=lr, r1_gamma=r1_gamma, pl_weight=pl_weight,
                             mixed_precision=mixed_precision, eval_every=eval_every,
                             snapshot_every=snapshot_every, seed=seed, device=str(resolve_device(device)),
                             resume=not no_resume)
    out = export_stylegan2(result.checkpoint, output_dir / "stylegan2.safetensors")
    click.echo(f"step {result.step}: {result.checkpoint}; exported G_ema + D to {out}")


@cli.command()
@click.option("--methods", "methods", required=True, help="comma-separated method names (see `bench list`)")
@click.option("--attrs", "attrs", default="Male", show_default=True, help="comma-separated CelebA attributes")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True)
@click.option("--backbone", "backbone_name", default="dcgan", show_default=True)
@click.option("--weights", default=None, help="checkpoint path or zoo name, for backbones that take one")
@click.option("--instrument", default="probe", show_default=True, help="the attribute instrument R")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache"),
              show_default=True, help="artifact store")
@click.option("--fit-seeds", type=int, default=None,
              help="fit seeds seed..seed+K-1, as `bench run --fit-seeds K` does (default: the preset's)")
@click.option("--fit", "fit_mode", type=click.Choice(["joint", "per-attribute"]), default="joint", show_default=True,
              help="as `bench run --fit`: methods that fit jointly (EYE, hfld, baseline+hfld) fit one artifact "
                   "for all --attrs per fit seed, or one per attribute")
@click.option("--refit", is_flag=True, help="ignore cached artifacts")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
def fit(methods, attrs, preset, backbone_name, weights, instrument, seed, fit_seeds, fit_mode, cache_dir, refit,
        device):
    """Fit editing methods per fit seed, exactly as `bench run` does (or load them from the cache): jointly for
    all attributes where the method fits jointly and --fit is joint, else per attribute."""
    import dataclasses
    import time

    from latent_edit_bench.contracts.instrument import supported_attributes
    from latent_edit_bench.contracts.method import FitContext, fit_or_load
    from latent_edit_bench.errors import did_you_mean
    from latent_edit_bench.presets import method_config, preset as get_preset
    from latent_edit_bench.pipeline.session import Session

    plugins = _plugins()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    attr_names = [a.strip() for a in attrs.split(",") if a.strip()]
    if not names or not attr_names:
        raise BenchError("--methods and --attrs need at least one name each")
    for m in names:
        plugins.methods.get(m)                  # unknown -> BenchError listing the valid ones
    known = plugins.attributes()
    for a in attr_names:
        if a not in known:
            raise BenchError(f"unknown attribute {a!r}{did_you_mean(a, known)}; valid: {', '.join(known)}")
    plugins.instruments.get(instrument)
    for m in names:                              # bad config: before any work
        plugins.methods.create(m, **method_config(preset, m))
    k = get_preset(preset)["fit_seeds"] if fit_seeds is None else fit_seeds
    if k < 1:
        raise BenchError(f"--fit-seeds must be at least 1, got {k}")
    session = Session(plugins, device=resolve_device(device), progress=True)
    R = session.instrument(instrument)
    supported = supported_attributes(R, known)
    bad = [a for a in attr_names if a not in supported]
    if bad:
        raise BenchError(f"instrument {instrument!r} does not support {', '.join(bad)}; "
                         f"supported: {', '.join(supported)}")
    writable_output(cache_dir / "x")
    options = {"weights": weights} if weights else {}
    backbone = session.backbone(backbone_name, **options)
    ctx = FitContext(backbone, session.pool, attributes=tuple(attr_names), seed=seed, device=session.device,
                     cache_dir=cache_dir, progress=True, attribute_instrument=instrument,
                     load_instrument=session.instrument, batch_size=session.batch_size)
    for name in names:
        joint = fit_mode == "joint" and plugins.methods.create(name, **method_config(preset, name)).joint_fit
        # the artifacts `bench run` loads: one per seed for the attribute set (sorted, as the run), or per attribute
        groups = [tuple(sorted(attr_names))] if joint else [(a,) for a in attr_names]
        for s in range(seed, seed + k):
            for group in groups:
                ed = plugins.methods.create(name, **method_config(preset, name))
                click.echo(f"{name}: fitting {','.join(group)}, fit seed {s} ({preset} preset) ...")
                t0 = time.perf_counter()
                fit_or_load(ed, dataclasses.replace(ctx, attributes=group, seed=s), refit=refit)
                how = "cache hit, loaded" if ed.cache_hit else "fitted, stored"
                click.echo(f"{name}: {how} {ed.artifact_path} in {time.perf_counter() - t0:.1f} s")


@cli.command()
@click.option("--methods", "methods", required=True, help="comma-separated method names (see `bench list`)")
@click.option("--attrs", "attrs", default="Male", show_default=True, help="comma-separated target attributes")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True,
              help="fit settings and default N (quick: CPU minutes; paper: SPEC section 2, a GPU job)")
@click.option("-n", "n", type=int, default=None, help="number of shared samples (default: the preset's)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fit-seeds", type=int, default=None,
              help="fit every method K times with seeds seed..seed+K-1; intervals cover fit variance (default: the preset's)")
@click.option("--fit", "fit_mode", type=click.Choice(["joint", "per-attribute"]), default="joint", show_default=True,
              help="joint: methods that fit jointly (EYE: baseline, hfld, baseline+hfld) fit one T per fit seed for "
                   "all --attrs, as the paper; per-attribute: one fit per attribute (docs/methods.md)")
@click.option("--levels", default=None, metavar="L1,L2,...",
              help="achieved changes of R_k to compare at, each towards presence and absence (default: 0.1,0.2,0.3)")
@click.option("--tol", type=float, default=None, help="a level is reached within ±tol (default: 0.03)")
@click.option("--min-reach", type=float, default=None,
              help="a method reaches a level when this fraction of samples does under every fit seed (default: 0.5)")
@click.option("--backbone", "backbone_name", default="dcgan", show_default=True)
@click.option("--weights", default=None, help="checkpoint path or zoo name, for backbones that take one")
@click.option("--instrument", default="probe", show_default=True, help="the attribute instrument R")
@click.option("--emotion", default="auto", show_default=True,
              help="emotion instrument; auto = deepface-emotion if its weights are installed, else fer-emotion")
@click.option("--metrics", "metric_names", default=None,
              help="comma-separated metric names (default: all built-in: edit,topk,gesture,emotion,landmarks,identity,judge)")
@click.option("--reference", default=None,
              help="method the others are compared with (default: baseline if it is in --methods, else the first)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="run folder (default: runs/<id>, the id hashing the config, so a rerun resumes)")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache"),
              show_default=True, help="fitted-artifact store shared by runs")
@click.option("--set", "sets", multiple=True, metavar="METHOD.OPTION=VALUE",
              help="override a method option over the preset (repeatable; VALUE is JSON or text)")
@click.option("--judge", "judge_specs", multiple=True, metavar="ATTR=INSTRUMENT[.OUTPUT[LABEL]]",
              help="score ATTR with this independent judge too (repeatable), e.g. --judge Male=oarriaga-gender.male; "
                   "built-in: Male, Smiling")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="images per batch when rendering and measuring (and scoring during the ladder) "
                   "[default: 16 on a CPU, where larger batches fall out of cache; 64 on a GPU]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@DTYPE_OPTION
@click.option("--no-report", is_flag=True, help="skip report.html (render it later with `bench report`)")
@click.option("--executor", "executor_name", type=click.Choice(["local", "slurm", "submitit-local"]), default="local",
              show_default=True, help="where fits and edit units run: this process, one Slurm job each "
              "(submitit), or one local subprocess each (submitit); docs/cluster.md")
@click.option("--slurm-partition", default=None, help="Slurm partition of the jobs (default: the cluster's)")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=None,
              help="GPUs per job [slurm: 1, or 0 with --device cpu]")
@click.option("--cpus-per-job", type=click.IntRange(min=1), default=None,
              help="CPUs per job, also its torch threads [default: 1]")
@click.option("--mem-per-job", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GB",
              help="memory per job in GB (default: the cluster's)")
@click.option("--time-per-job", type=click.IntRange(min=1), default=None, metavar="MINUTES",
              help="time limit per job [default: 240]; a job past it is resubmitted and its fit resumes")
@click.option("--slurm-param", "slurm_params", multiple=True, metavar="KEY=VALUE",
              help="extra sbatch option, e.g. account=proj or qos=normal (repeatable)")
@click.option("--slurm-setup", "slurm_setup", multiple=True, metavar="LINE",
              help="shell line each job runs before python, e.g. 'module load cuda' (repeatable)")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None,
              help="submissions per unit before a job that keeps dying counts as failed [default: 3]")
def run(methods, attrs, preset, n, seed, fit_seeds, fit_mode, levels, tol, min_reach, backbone_name, weights, instrument,
        emotion, metric_names, reference, out, cache_dir, sets, judge_specs, batch_size, device, dtype, no_report,
        executor_name, slurm_partition, gpus_per_job, cpus_per_job, mem_per_job, time_per_job, slurm_params, slurm_setup, max_attempts):
    """Fit, edit along the ladder of equal achieved changes, measure, compare, report: runs/<id>/ (resumes)."""
    import torch

    from latent_edit_bench import api
    from latent_edit_bench.pipeline.run import DEFAULT_INSTRUMENTS, DEFAULT_METRICS, make_config, parse_levels
    from latent_edit_bench.pipeline.session import Session

    executor = make_executor_from_options(executor_name, device, slurm_partition=slurm_partition,
                                          gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job,
                                          mem_per_job=mem_per_job, time_per_job=time_per_job,
                                          slurm_params=slurm_params, slurm_setup=slurm_setup,
                                          max_attempts=max_attempts, dtype=dtype)

    instruments = {**DEFAULT_INSTRUMENTS, "attributes": instrument, "emotion": emotion}
    metrics = DEFAULT_METRICS if metric_names is None else tuple(m.strip() for m in metric_names.split(",")
                                                                 if m.strip())
    extra = {k: v for k, v in dict(tol=tol, min_reach=min_reach).items() if v is not None}
    if levels is not None:
        levels = parse_levels(levels)
    cfg = make_config(methods, attrs, preset=preset, n=n, seed=seed, fit_seeds=fit_seeds, fit=fit_mode,
                      levels=levels, backbone=backbone_name, weights=weights, instruments=instruments,
                      reference=reference, metrics=metrics, overrides=parse_sets(sets), judges=parse_judges(judge_specs), **extra)
    out = out or Path("runs") / cfg.run_id
    # with jobs elsewhere, "auto" is resolved on each job's node, not here (a login node has no GPU); the
    # driver only renders the originals' check and the report, in fp32 when it is on a CPU
    here = resolve_device(device) if executor.name == "local" or device != "auto" else torch.device("cpu")
    session = Session(_plugins(), device=here, dtype=dtype if here.type != "cpu" or executor.name == "local" else "fp32",
                      batch_size=batch_size, progress=True)
    # the report reads only the run folder, as `bench report` does
    api.run(cfg, out, cache_dir=cache_dir, session=session, executor=executor, report=not no_report, log=click.echo)
    click.echo(f"done: {out}")
    failed = api.failed_methods(out)
    if failed:   # exit 1, not 0 (success) nor 2 (usage error): scripts and CI must see a method failed
        click.echo(failed_line(failed, out, report=not no_report), err=True)
        click.get_current_context().exit(1)


def make_executor_from_options(name: str, device: str, slurm_partition=None, gpus_per_job=None, cpus_per_job=None,
                               mem_per_job=None, time_per_job=None, slurm_params=(), slurm_setup=(),
                               max_attempts=None, dtype: str = "fp32"):
    """The executor of `bench run --executor NAME ...`; options the executor does not take are refused."""
    from latent_edit_bench.pipeline.executors import make_executor
    from latent_edit_bench.worker import work

    given = {"--slurm-partition": slurm_partition, "--gpus-per-job": gpus_per_job, "--cpus-per-job": cpus_per_job,
             "--mem-per-job": mem_per_job, "--time-per-job": time_per_job,
             "--slurm-param": slurm_params or None, "--slurm-setup": slurm_setup or None,
             "--max-attempts": max_attempts}
    allowed_for = {"local": (), "slurm": tuple(given),
                   "submitit-local": ("--gpus-per-job", "--cpus-per-job", "--time-per-job", "--max-attempts")}
    allowed = allowed_for[name]
    bad = [k for k, v in given.items() if v is not None and k not in allowed]
    if bad:
        where = "--executor slurm" if name != "local" or any(b not in allowed_for["submitit-local"] for b in bad) \
            else "--executor slurm or submitit-local"
        raise BenchError(f"{', '.join(bad)} only apply to {where}; this run uses --executor {name}")
    if name == "local":
        return make_executor("local")
    params = {}
    for item in slurm_params or ():
        key, eq, value = item.partition("=")
        if not (eq and key.strip() and value.strip()):
            raise BenchError(f"--slurm-param {item!r}: expected KEY=VALUE, e.g. --slurm-param account=myproject")
        params[key.strip().replace("-", "_")] = value.strip()
    on_cpu = device == "cpu"
    if on_cpu and gpus_per_job:
        raise BenchError(f"--gpus-per-job {gpus_per_job} with --device cpu: the jobs would not use their GPUs")
    gpus = (0 if on_cpu or name == "submitit-local" else 1) if gpus_per_job is None else gpus_per_job
    return make_executor(name, partition=slurm_partition, gpus_per_job=gpus, cpus_per_job=cpus_per_job or 1,
                         mem_gb=mem_per_job, time_min=time_per_job or 240, params=params,
                         max_attempts=max_attempts or 3, device=device, setup=slurm_setup or (), dtype=dtype,
                         work=work)


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per unit instead of the table")
def status(run_dir, as_json):
    """Per-unit state of run folder RUN (pending, running, done, failed with its error), also while it runs."""
    import json

    from latent_edit_bench.pipeline.units import driver_running, unit_states

    rows = unit_states(run_dir)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "running", "pending", "failed", "skipped")}
    driving = driver_running(run_dir)
    unfinished = counts["running"] + counts["pending"]
    click.echo(f"{run_dir}: " + ("a bench run is driving it" if driving else "no bench run is driving it"
                                 + ("; rerun the same `bench run` command to resume" if unfinished else "")))
    width = max(len(r["unit"]) for r in rows)
    for r in rows:
        job = f"{r['engine']} {r['job_id']}" if r.get("job_id") else (r.get("engine") or "")
        note = r.get("error") or (f"(resubmitted: {r['lost']})" if r.get("lost") and r["state"] != "done" else "")
        if r["state"] == "failed" and r.get("log"):
            note += f" (log: {r['log']})"
        tries = f"x{r['attempts']}" if (r.get("attempts") or 0) > 1 else ""
        click.echo(f"  {r['unit']:<{width}}  {r['state']:<8} {tries:<3} {job:<22} {note}".rstrip())
    click.echo(f"{len(rows)} units: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "skipped"))


def failed_line(failed, out: Path, report: bool = True) -> str:
    """The last line of a run where methods failed: which, and where their errors are."""
    where = [str(out / "report.html")] if report else []
    where.append(f"{out / 'manifest.json'} (methods.<name>.error)")
    return f"FAILED: {', '.join(failed)}; see {' and '.join(where)}"


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file (default: RUN/report.html for one run, ./comparison.html for several)")
def report(runs, output):
    """Render the self-contained HTML report of run folder(s) RUN; several runs side by side."""
    from latent_edit_bench.reports.html import load_run, render_report

    for r in runs:      # a bad folder fails before anything is written
        load_run(r)
    output = output or (runs[0] / "report.html" if len(runs) == 1 else Path("comparison.html"))
    click.echo(f"wrote {render_report(list(runs), writable_output(output))}")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--effect", default="10%", show_default=True,
              help="a relative difference in emotion disturbance to plan for, in (0, 100%): 10% or 0.1")
def plan(run_dir, effect):
    """What finished run RUN resolves on its first screen, its power, and the N and K (with the time they
    would take here) that would resolve the observed differences and one of --effect."""
    from latent_edit_bench.pipeline.power import describe_plan, parse_effect, plan_run, unit_costs

    eff = parse_effect(effect)
    rows = plan_run(run_dir, eff)
    if not rows:
        click.echo(f"{run_dir}: no comparisons on the first screen (nothing reached a common level)")
        return
    where = unit_costs(run_dir).where or "this machine"
    click.echo(f"{run_dir}: {len(rows)} comparison(s) of emotion disturbance on the first screen; power 80%, "
               f"two-sided alpha = 0.05 / {len(rows)} (Holm's family); times from this run's units on {where}; "
               f"GPU: no `bench perf` GPU rates recorded yet (docs/perf.md)")
    for r in rows:
        head = (f"{r['attr']} {r['direction']}{abs(r['level']):g}  {r['method']} vs {r['reference']}: "
                f"observed {100 * r['rel']:+.1f}% at N = {r['n']}, K = {r['k']}")
        click.echo(head)
        click.echo(f"    detectable at this N, K: {100 * r['mde_rel']:.1f}% (power to detect the observed "
                   f"difference: {100 * r['power_observed']:.0f}%)")
        click.echo(f"    to resolve the observed {100 * abs(r['rel']):.1f}%: {describe_plan(r['observed'])}")
        click.echo(f"    to resolve {100 * eff:g}%: {describe_plan(r['effect'])}")


def parse_judges(specs) -> dict:
    """["Male=oarriaga-gender.male", ...] -> {"Male": "oarriaga-gender.male"}."""
    out = {}
    for item in specs:
        attr, eq, spec = item.partition("=")
        if not (eq and attr.strip() and spec.strip()):
            raise BenchError(f"--judge {item!r}: expected ATTR=INSTRUMENT[.OUTPUT[LABEL]], e.g. --judge Male=oarriaga-gender.male")
        out[attr.strip()] = spec.strip()
    return out


def parse_sets(sets) -> dict:
    """["sefa.top_k=3", ...] -> {"sefa": {"top_k": 3}}; values are JSON where they parse, else text."""
    import json

    out: dict = {}
    for item in sets:
        key, eq, value = item.partition("=")
        method, dot, option = key.partition(".")
        if not (eq and dot and method and option):
            raise BenchError(f"--set {item!r}: expected METHOD.OPTION=VALUE, e.g. --set sefa.top_k=3")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out.setdefault(method.strip(), {})[option.strip()] = value
    return out


@cli.command()
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="label file (docs/validity.md) [default: the built-in labels of --backbone, where there are some]")
@click.option("--backbone", "backbone_name", default=None,
              help="the backbone whose samples the labels name [default: the label file's, else dcgan]")
@click.option("--weights", default=None, help="checkpoint path or zoo name, for backbones that take one")
@click.option("--instrument", default="probe", show_default=True, help="the attribute instrument R (the trainer)")
@click.option("--judge", "judge_specs", multiple=True, metavar="ATTR=INSTRUMENT[.OUTPUT[LABEL]]",
              help="score ATTR's judge with this instrument (as bench run; built-in: Male, Smiling)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="images per batch [default: 16 on a CPU, 64 on a GPU]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the table as CSV (validity.csv's columns)")
def validate(labels, backbone_name, weights, instrument, judge_specs, batch_size, device, output):
    """How well the trainer and each judge see each labelled attribute: AUC [95% CI] against human labels."""
    from latent_edit_bench.fs import atomic
    from latent_edit_bench.pipeline.session import Session
    from latent_edit_bench.pipeline.validate import format_table, validate as run_validate

    if output is not None:
        writable_output(output)
    session = Session(_plugins(), device=resolve_device(device), batch_size=batch_size)
    frame = run_validate(session, labels, backbone_name, weights, instrument, parse_judges(judge_specs))
    for line in format_table(frame):
        click.echo(line)
    name = frame.labels[frame.labels.astype(bool)].iloc[0] if frame.labels.astype(bool).any() else "no labels"
    click.echo(f"labels: {name}; AUC of each instrument's score on the faces a person called 1 against those "
               f"called 0, with Newcombe's 95% score interval; sees = the interval's lower end above 0.5; "
               f"unsure = share of the labelled faces a person could not call (docs/validity.md)")
    if output is not None:
        with atomic(output) as tmp:
            frame.to_csv(tmp, index=False)
        click.echo(f"wrote {output}")


PERF_MODES = {   # the options each form of `bench perf` reads; any other given on the command line is refused
    "": {"device", "batch_size", "iters", "backbones", "out", "quick", "dtype"},
    "--precision": {"precision", "device", "batch_size", "backbones", "out", "dtype", "n", "seed"},
    "--estimate": {"estimate", "backbones", "n", "methods", "attrs", "preset", "fit_seeds", "levels", "fit_mode"},
}


@cli.command()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="images per batch for (a) and (b) [default: as bench run, 16 on a CPU, 64 on a GPU; 8 with --quick; "
                   "32 with --precision]")
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help="timed batches / steps per measurement, after a warm-up [default: 10; 2 with --quick]")
@click.option("--backbones", default=None,
              help="comma-separated: dcgan, stylegan2-256 (random weights, the paper's size) [default: both; "
                   "--precision: one, dcgan, or any backbone of `bench list`; --estimate: the one whose rates to "
                   "read, stylegan2-256]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the table as CSV")
@click.option("--quick", is_flag=True, help="few iterations, small batches (a smoke test, not a measurement)")
@DTYPE_OPTION
@click.option("--precision", is_flag=True,
              help="instead of timing: how far fp16 and bf16 autocast (only --dtype's, where it is one) move every "
                   "output of the evaluation path from fp32, on -n seeded samples (docs/perf.md)")
@click.option("--estimate", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="PERF_CSV",
              help="instead of timing: the device-hours of the `bench run` that --methods, --attrs, --preset, -n, "
                   "--fit-seeds, --levels and --fit describe, from the rates of a `bench perf --out PERF_CSV` "
                   "(docs/cluster.md)")
@click.option("-n", "n", type=click.IntRange(min=1), default=None,
              help="--precision: samples [default: 256]; --estimate: the run's N [default: the preset's]")
@click.option("--seed", type=int, default=None, help="--precision: the samples' seed [default: 5]")
@click.option("--methods", default=None, help="--estimate: as bench run [default: baseline,hfld,sefa,ganspace,interfacegan]")
@click.option("--attrs", default=None, help="--estimate: as bench run [default: Male,Bald,Black_Hair]")
@click.option("--preset", type=click.Choice(["quick", "paper"]), default=None, help="--estimate: as bench run [default: paper]")
@click.option("--fit-seeds", type=int, default=None, help="--estimate: as bench run [default: the preset's]")
@click.option("--levels", default=None, metavar="L1,L2,...", help="--estimate: as bench run [default: 0.1,0.2,0.3]")
@click.option("--fit", "fit_mode", type=click.Choice(["joint", "per-attribute"]), default="joint", show_default=True,
              help="--estimate: as bench run")
@click.pass_context
def perf(ctx, device, batch_size, iters, backbones, out, quick, dtype, precision, estimate, n, seed, methods, attrs,
         preset, fit_seeds, levels, fit_mode):
    """Images/s of G alone and of render + instruments, and steps/s of an HFLD step vs the official loop.

    With --precision: how far half precision moves each measured number. With --estimate PERF_CSV: the
    device-hours of a bench run, from rates this command measured."""
    from click.core import ParameterSource

    from latent_edit_bench.perf import BACKBONES, run_estimate, run_perf, run_precision

    if precision and estimate is not None:
        raise BenchError("bench perf: --precision and --estimate are two different jobs; give one")
    mode = "--precision" if precision else "--estimate" if estimate is not None else ""
    for p in ctx.command.params:   # an option the chosen form does not read is an error, not ignored
        if ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE and p.name not in PERF_MODES[mode]:
            forms = [m for m, names in PERF_MODES.items() if p.name in names]
            where = " or ".join(f or "timing (without --precision and --estimate)" for f in forms)
            raise BenchError(f"bench perf{' ' + mode if mode else ''}: {max(p.opts, key=len)} is only for {where}")
    names = [b.strip() for b in backbones.split(",") if b.strip()] if backbones else None
    if mode and names and len(names) != 1:
        raise BenchError(f"bench perf {mode} takes one backbone; got --backbones {backbones}")
    if out is not None:
        writable_output(out)
    if precision:
        run_precision(resolve_device(device), names[0] if names else None, n=n, batch=batch_size,
                      dtypes=None if dtype == "fp32" else (dtype,), seed=seed, out=out, log=click.echo,
                      plugins=_plugins())
    elif estimate is not None:
        run_estimate(estimate, _plugins(), names[0] if names else None, methods=methods, attrs=attrs, preset=preset,
                     n=n, fit_seeds=fit_seeds, levels=levels, fit=fit_mode, log=click.echo)
    else:
        run_perf(resolve_device(device), names or list(BACKBONES), batch_size=batch_size, iters=iters,
                 quick=quick, out=out, log=click.echo, plugins=_plugins(), dtype=dtype)


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


@cli.command()
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
def invert(photos, out, backbone_name, weights, box, steps, starts, noise, emotion, seed, batch_size, device):
    """Align face PHOTOS as the backbone expects and project them into its edit space (resumes)."""
    from latent_edit_bench.invert import InvertConfig, invert_photos
    from latent_edit_bench.pipeline.session import Session

    box = _parse_box(box)
    cfg = InvertConfig(steps=steps, starts=starts, noise=noise, seed=seed)
    cfg.check()
    session = Session(_plugins(), device=resolve_device(device), batch_size=batch_size, progress=True)
    options = {"weights": weights} if weights else {}
    backbone = session.backbone(backbone_name, **options)
    path = invert_photos(photos, out, session, backbone, cfg, box=box, emotion=emotion, log=click.echo)
    click.echo(f"wrote {path}")


@cli.command()
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
    from latent_edit_bench.pipeline.run import parse_levels
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
    session = Session(_plugins(), device=resolve_device(device), batch_size=batch_size, progress=True)
    result = api.augment(cfg, out, session, from_dir=from_dir, labels=labels, cache_dir=cache_dir, log=click.echo)
    click.echo(f"kept {result.kept} of {result.total} edits; manifest {result.manifest}; contact sheet {result.sheet}")


def main():  # console-script entry point
    sys.exit(cli.main(standalone_mode=True))


if __name__ == "__main__":
    main()
