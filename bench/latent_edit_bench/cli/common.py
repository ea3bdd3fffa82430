"""What every command module of the CLI shares: error handling, the plugin registries, output checks and
the parsers of repeated options."""

from __future__ import annotations

from pathlib import Path

import click

from latent_edit_bench.errors import BenchError, environment_fault


class BenchGroup(click.Group):
    """A command group whose user errors (BenchError) and the machine's faults (disk full, read-only,
    no permission) exit with their code and one line, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except Exception as e:
            fault = environment_fault(e)
            if fault is None:
                raise
            click.echo(f"Error: {fault}", err=True)
            ctx.exit(fault.exit_code)


def load_plugins():
    # imported on use: `bench --help` and usage errors need no plugin manager
    from latent_edit_bench.plugins import get_plugins

    plugins = get_plugins()
    for line in plugins.broken.values():   # once per command: the rest works without it
        click.echo(f"Warning: {line}; skipped", err=True)
    return plugins


DTYPE_OPTION = click.option(
    "--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
    help="precision of rendering and measuring (autocast; stored numbers stay float32). "
         "fp16/bf16 need --device cuda (on a CPU they are refused: emulated on most CPUs, 20-280x slower); "
         "bf16 moves scores more than fp16 (bench perf --precision)")


# the default is images.MAX_PIXELS (a test holds them equal): images imports torch, which `bench --help` need not
MAX_PIXELS_OPTION = click.option(
    "--max-pixels", type=click.IntRange(min=1), default=100_000_000, show_default=True,
    help="refuse images larger than this (width x height), read from the header before decoding: a guard "
         "against decompression bombs")


def writable_output(path: Path) -> Path:
    """Create the parent folder now, so a bad -o fails before any work is done."""
    from latent_edit_bench.fs import file_in_the_way, writable_dir

    blocker = file_in_the_way(path.parent)
    if blocker is not None:   # e.g. -o /dev/null/x.png: name the parent, not mkdir's "File exists"
        raise BenchError(f"cannot write {str(path)!r}: its parent {str(blocker)!r} is not a directory")
    if path.exists() and not path.is_file():   # a folder, or a device such as /dev/full: never replaced
        raise BenchError(f"cannot write {str(path)!r}: it exists and is not a regular file; name a file to write")
    writable_dir(path.parent)
    return path


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
