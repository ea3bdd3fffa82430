"""A job's entry point on a worker node (``bench run --executor slurm | submitit-local``): rebuild the run
from its spec, build the plugins there, do one unit. An entry point like the CLI: the only other place
besides ``cli`` and ``api`` that builds the plugin manager."""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path

from latent_edit_bench.errors import environment_fault
from latent_edit_bench.pipeline.units import Unit


def work(spec: dict, unit: Unit) -> dict:
    """A job's entry point on a worker: rebuild the run from ``spec`` (:meth:`Run.spec`), do ``unit``,
    return its record. An error in the unit is returned, not raised, so the driver tells it apart from
    a job that died (which it resubmits)."""
    import torch

    from latent_edit_bench.pipeline.run import Run, config_from_dict
    from latent_edit_bench.pipeline.session import Session, resolve_device
    from latent_edit_bench.plugins import get_plugins

    t0 = time.perf_counter()
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    try:
        session = Session(get_plugins(), device=resolve_device(spec["device"]), dtype=spec.get("dtype", "fp32"),
                          batch_size=spec["batch_size"])
        run = Run(config_from_dict(spec["config"]), Path(spec["out"]), session=session, cache_dir=spec["cache_dir"])
        record = run.run_unit(unit)
    except Exception as e:
        fault = environment_fault(e)   # the node's disk, not the method: the driver stops the run
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8),
                "environment": None if fault is None else str(fault), **where}
    return {"ok": True, **record, **where, "seconds": round(time.perf_counter() - t0, 2)}
