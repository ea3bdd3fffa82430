"""``bench list`` and ``bench validate``: what is installed, and how well its instruments see human-labelled
attributes."""

from __future__ import annotations

from pathlib import Path

import click

from latent_edit_bench.cli.common import load_plugins, parse_judges, writable_output
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.session import resolve_device


@click.command("list")
def list_cmd():
    """List backbones, instruments, methods, metrics and known attribute names."""
    plugins = load_plugins()
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
    from latent_edit_bench.pipeline.config import DEFAULT_INSTRUMENTS

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


@click.command()
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
    session = Session(load_plugins(), device=resolve_device(device), batch_size=batch_size)
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
