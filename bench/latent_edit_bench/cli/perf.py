"""``bench perf``: throughput, the precision check (--precision) and run-time estimates (--estimate)."""

from __future__ import annotations

from pathlib import Path

import click

from latent_edit_bench.cli.common import DTYPE_OPTION, load_plugins, writable_output
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.session import resolve_device


PERF_MODES = {   # the options each form of `bench perf` reads; any other given on the command line is refused
    "": {"device", "batch_size", "iters", "backbones", "out", "quick", "dtype"},
    "--precision": {"precision", "device", "batch_size", "backbones", "out", "dtype", "n", "seed"},
    "--estimate": {"estimate", "backbones", "n", "methods", "attrs", "preset", "fit_seeds", "levels", "fit_mode"},
}


@click.command()
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
                      plugins=load_plugins())
    elif estimate is not None:
        run_estimate(estimate, load_plugins(), names[0] if names else None, methods=methods, attrs=attrs, preset=preset,
                     n=n, fit_seeds=fit_seeds, levels=levels, fit=fit_mode, log=click.echo)
    else:
        run_perf(resolve_device(device), names or list(BACKBONES), batch_size=batch_size, iters=iters,
                 quick=quick, out=out, log=click.echo, plugins=load_plugins(), dtype=dtype)
