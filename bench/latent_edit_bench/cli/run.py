"""``bench run`` and the commands around a run: ``fit`` its methods ahead, its ``status``, ``report`` and
``plan``."""

from __future__ import annotations

from pathlib import Path

import click

from latent_edit_bench.cli.common import DTYPE_OPTION, load_plugins, parse_judges, parse_sets, writable_output
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.session import resolve_device


@click.command()
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
    from latent_edit_bench.pipeline.config import DEFAULT_INSTRUMENTS, DEFAULT_METRICS, make_config, parse_levels
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
    session = Session(load_plugins(), device=here, dtype=dtype if here.type != "cpu" or executor.name == "local" else "fp32",
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


@click.command()
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
    import tempfile
    import time

    from latent_edit_bench.contracts.artifacts import fit_or_load
    from latent_edit_bench.pipeline.config import make_config
    from latent_edit_bench.pipeline.run import Run
    from latent_edit_bench.pipeline.session import Session
    from latent_edit_bench.pipeline.units import all_units

    # a run's config with R as its only instrument and no metrics: the run's checks, and only R and the
    # backbone loaded
    cfg = make_config(methods, attrs, preset=preset, seed=seed, fit_seeds=fit_seeds, fit=fit_mode,
                      backbone=backbone_name, weights=weights, instruments={"attributes": instrument}, metrics=())
    session = Session(load_plugins(), device=resolve_device(device), progress=True)
    with tempfile.TemporaryDirectory() as scratch:   # a Run needs a folder; bench fit writes only to the cache
        r = Run(cfg, Path(scratch), session=session, cache_dir=cache_dir, log=click.echo)
        r._load_models()
        # the fit units `bench run` would do, so each artifact is the one it loads
        for unit in all_units(cfg.methods, cfg.attrs, cfg.fit_seed_list, joint=r.joint):
            if unit.kind != "fit":
                continue
            click.echo(f"{unit.method}: fitting {unit.attrs_label}, fit seed {unit.seed} ({preset} preset) ...")
            t0 = time.perf_counter()
            # Run.fit, plus --refit
            ctx = dataclasses.replace(r.ctx, attributes=r.fit_attributes(unit.method, unit.attr), seed=unit.seed)
            ed = fit_or_load(r.editor(unit.method), ctx, refit=refit)
            how = "cache hit, loaded" if ed.cache_hit else "fitted, stored"
            click.echo(f"{unit.method}: {how} {ed.artifact_path} in {time.perf_counter() - t0:.1f} s")


@click.command()
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


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file (default: RUN/report.html for one run, ./comparison.html for several)")
@click.option("--metrics", default=None, metavar="M1,M2,...",
              help="first score each RUN with these metrics (bench list), from its stored measurements: adds or "
                   "recomputes them without rendering or measuring anything again; the run's tables then hold these")
def report(runs, output, metrics):
    """Render the self-contained HTML report of run folder(s) RUN; several runs side by side."""
    from latent_edit_bench import api
    from latent_edit_bench.reports.html import load_run, render_report

    if metrics is not None:
        for r in runs:
            api.rescore(r, metrics, report=False, log=click.echo)
    for r in runs:      # a bad folder fails before anything is written
        load_run(r)
    output = output or (runs[0] / "report.html" if len(runs) == 1 else Path("comparison.html"))
    click.echo(f"wrote {render_report(list(runs), writable_output(output))}")


@click.command()
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
