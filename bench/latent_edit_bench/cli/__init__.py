"""The ``bench`` command line: one module per command group, assembled here. User errors exit with code 2
and a message, never a traceback."""

from __future__ import annotations

import sys

import click

from latent_edit_bench.cli import images, listing, perf, run, zoo
from latent_edit_bench.cli.common import (DTYPE_OPTION, BenchGroup, load_plugins, parse_judges, parse_sets,
                                          writable_output)
from latent_edit_bench.cli.run import failed_line, make_executor_from_options

__all__ = ["cli", "main", "BenchGroup", "DTYPE_OPTION", "failed_line", "load_plugins", "make_executor_from_options",
           "parse_judges", "parse_sets", "writable_output"]


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="latent-edit-bench")
def cli():
    """Compare latent-space face editors by how much they disturb expression."""


for _command in (listing.list_cmd, listing.validate, images.sample, images.measure, images.invert, images.augment,
                 run.run, run.fit, run.status, run.report, run.plan, perf.perf, zoo.zoo):
    cli.add_command(_command)


def main():  # console-script entry point
    sys.exit(cli.main(standalone_mode=True))
