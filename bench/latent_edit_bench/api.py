"""The public Python API of latent-edit-bench: what a plugin author and a notebook user need.

The CLI is a thin layer over these functions (``bench run`` is :func:`run`, ``bench report`` is
:func:`render_report`, ...). Names resolve on first use, so a plugin module that imports this one
to get ``Entry`` and ``hookimpl`` loads no torch, pandas or pipeline code. docs/api.md has a worked
example (executed by the test suite).

Plugin authors::

    from latent_edit_bench import api

    @api.hookimpl
    def register_methods():
        return [api.Entry("my-method", "my_package.method:MyEditor", "one line for `bench list`")]

Notebook users::

    cfg = api.make_config("baseline,ganspace", "Male", n=16, fit_seeds=2)
    folder = api.run(cfg, "runs/mine")
    tables = api.load_run(folder)          # {"summary": DataFrame, "ranking": ..., "samples": ...}
    api.render_report([folder], folder / "report.html")
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from latent_edit_bench.version import __version__

# public name -> module it lives in (the one definition; this module only re-exports)
_WHERE = {
    # writing plugins
    "hookimpl": "latent_edit_bench.hookspecs",
    "Entry": "latent_edit_bench.registry",
    "BenchError": "latent_edit_bench.errors",
    "Backbone": "latent_edit_bench.contracts.backbone",
    "Instrument": "latent_edit_bench.contracts.instrument",
    "Output": "latent_edit_bench.contracts.instrument",
    "supported_attributes": "latent_edit_bench.contracts.instrument",
    "Editor": "latent_edit_bench.contracts.method",
    "TrainableEditor": "latent_edit_bench.contracts.method",
    "PerAttributeEditor": "latent_edit_bench.contracts.method",
    "DirectionEditor": "latent_edit_bench.contracts.method",
    "FitContext": "latent_edit_bench.contracts.method",
    "add_direction": "latent_edit_bench.contracts.method",
    "layer_mask": "latent_edit_bench.contracts.method",
    "finite_difference": "latent_edit_bench.contracts.method",
    "fit_or_load": "latent_edit_bench.contracts.artifacts",
    "Metric": "latent_edit_bench.contracts.metric",
    "Quantity": "latent_edit_bench.contracts.metric",
    "EditSet": "latent_edit_bench.contracts.metric",
    "mean_of": "latent_edit_bench.contracts.metric",
    "CELEBA_ATTRIBUTES": "latent_edit_bench.attributes",
    # using the bench from Python
    "get_plugins": "latent_edit_bench.plugins",
    "RunConfig": "latent_edit_bench.pipeline.config",
    "make_config": "latent_edit_bench.pipeline.config",
    "Session": "latent_edit_bench.pipeline.session",
    "load_run": "latent_edit_bench.pipeline.tables",
    "render_report": "latent_edit_bench.reports.html",
    "failed_methods": "latent_edit_bench.pipeline.manifest",
}

__all__ = ["__version__", "run", "rescore", "augment", *_WHERE]


def run(cfg, out=None, *, cache_dir="cache", session=None, executor=None, report: bool = True, log=print) -> Path:
    """Do (or resume) the run of ``cfg`` (:func:`make_config`) in ``out`` (default ``runs/<run id>``) and
    return the folder; ``report``: also write its report.html, from the folder's files alone. This is
    ``bench run``. ``session``: device, precision, batch size and plugins (default: CPU, fp32, progress
    bars); ``executor``: where units run (default: this process)."""
    from latent_edit_bench.pipeline.run import Run
    from latent_edit_bench.pipeline.session import Session
    from latent_edit_bench.plugins import get_plugins

    out = Path(out) if out is not None else Path("runs") / cfg.run_id
    Run(cfg, out, session=session or Session(get_plugins(), progress=True), cache_dir=cache_dir, log=log, executor=executor).execute()
    if report:
        from latent_edit_bench.reports.html import render_report

        log(f"report: {render_report([out], out / 'report.html')}")
    return out


def rescore(folder, metrics, *, report: bool = True, log=print) -> Path:
    """Add or recompute ``metrics`` (names, or "a,b") on finished run ``folder`` from its stored measurements,
    rendering and measuring nothing again; ``report``: re-render its report.html. This is
    ``bench report RUN --metrics ...``."""
    from latent_edit_bench.pipeline.summary import rescore as rescore_folder
    from latent_edit_bench.plugins import get_plugins

    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    folder = rescore_folder(folder, names, get_plugins(), log=log)
    if report:
        from latent_edit_bench.reports.html import render_report

        log(f"report: {render_report([folder], folder / 'report.html')}")
    return folder


def augment(cfg, out, session, **options):
    """``bench augment``: edit the sources along ``cfg``'s attributes, keep the edits whose expression stayed
    put (``latent_edit_bench.augment.augment``: ``from_dir``, ``labels``, ``cache_dir``, ``log``), then render
    the contact sheet (html + png) from the manifest. Returns the result with ``sheet`` set."""
    import dataclasses

    import pandas as pd

    from latent_edit_bench.augment import augment as edit_and_keep
    from latent_edit_bench.reports.contact_sheet import render_contact_png, render_contact_sheet

    result = edit_and_keep(cfg, Path(out), session, **options)
    manifest = pd.read_parquet(result.manifest)
    sheet = render_contact_sheet(Path(out), manifest, title=f"{cfg.method}: {', '.join(cfg.attrs)}")
    render_contact_png(Path(out), manifest)
    return dataclasses.replace(result, sheet=sheet)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value   # resolved once
        return value
    raise AttributeError(f"module 'latent_edit_bench.api' has no attribute {name!r}; public names: {', '.join(__all__)}")


def __dir__():
    return sorted(__all__)


if TYPE_CHECKING:   # the same names, for IDEs and type checkers (re-exports: unused here by design)
    # ruff: noqa: F401
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.contracts.backbone import Backbone
    from latent_edit_bench.contracts.instrument import Instrument, Output, supported_attributes
    from latent_edit_bench.contracts.artifacts import fit_or_load
    from latent_edit_bench.contracts.method import (DirectionEditor, Editor, FitContext, PerAttributeEditor,
                                                    TrainableEditor, add_direction, finite_difference, layer_mask)
    from latent_edit_bench.contracts.metric import EditSet, Metric, Quantity, mean_of
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.hookspecs import hookimpl
    from latent_edit_bench.pipeline.config import RunConfig, make_config
    from latent_edit_bench.pipeline.manifest import failed_methods
    from latent_edit_bench.pipeline.session import Session
    from latent_edit_bench.pipeline.tables import load_run
    from latent_edit_bench.plugins import get_plugins
    from latent_edit_bench.registry import Entry
    from latent_edit_bench.reports.html import render_report
