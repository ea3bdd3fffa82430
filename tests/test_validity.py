"""Instrument validity: the AUC and its interval, the label-file format, `bench validate` on the built-in
labels of the embedded DCGAN, and the ranking that gives no rank where the trainer is not shown to see
the attribute (docs/validity.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from latent_edit_bench.cli import cli
from latent_edit_bench.pipeline import validity as V

Z = V.Z95


# ---------------------------------------------------------------- statistics

def test_auc_counts_every_pair_and_ties_as_half():
    # pairs (pos, neg): 0.9 beats 0.1, 0.4, 0.6 (3); 0.4 beats 0.1 (1), ties 0.4 (1/2), loses to 0.6: 4.5 of 6
    assert V.auc([0.9, 0.4], [0.1, 0.4, 0.6]) == 0.75
    assert V.auc([1, 2], [3, 4]) == 0.0 and V.auc([5], [5]) == 0.5
    assert math.isnan(V.auc([], [1.0]))


def test_interval_ends_solve_newcombes_score_equation():
    # a = 1 on m = 3 positives, n = 44 negatives (Bald's counts): the upper end is 1 and the lower end solves,
    # after dividing (1 - t)^2 = z^2 var(t) by (1 - t):
    #     1 - t = z^2 t / (m n) [(2N* - 1) - (3N* - 3) / ((2 - t)(1 + t))]
    m, n = 3, 44
    lo, hi = V.auc_interval(1.0, m, n)
    ns = (m + n) / 2
    assert hi == 1.0
    assert (1 - lo) == pytest.approx(Z * Z * lo / (m * n) * ((2 * ns - 1) - (3 * ns - 3) / ((2 - lo) * (1 + lo))),
                                     abs=1e-9)
    assert 0.5 < lo < 0.8        # three perfectly ordered positives: suggestive, far from proof
    # a = 0.75 on 2 and 3: the interval is the set of t with (t - a)^2 <= z^2 var(t), found on a fine grid
    a, m, n = 0.75, 2, 3
    t = np.linspace(0, 1, 200001)
    ns = (m + n) / 2
    var = t * (1 - t) / (m * n) * ((2 * ns - 1) - (3 * ns - 3) / ((2 - t) * (1 + t)))
    inside = t[(t - a) ** 2 <= Z * Z * var]
    lo, hi = V.auc_interval(a, m, n)
    assert lo == pytest.approx(inside.min(), abs=1e-5) and hi == pytest.approx(inside.max(), abs=1e-5)
    # symmetric in t <-> 1 - t, and narrower with more faces
    assert V.auc_interval(0.25, 2, 3) == pytest.approx((1 - hi, 1 - lo))
    assert np.diff(V.auc_interval(0.75, 20, 30)) < np.diff(V.auc_interval(0.75, 2, 3))


def test_status():
    assert V.status(0.51, 3, 4) == V.SEES
    assert V.status(0.5, 3, 4) == V.NOT_SHOWN and V.status(0.2, 3, 4) == V.NOT_SHOWN
    assert V.status(float("nan"), 0, 40) == V.NO_LABELS and V.status(0.9, 5, 0) == V.NO_LABELS


# ---------------------------------------------------------------- label files

HEADER = ("# backbone: dcgan\n# weights_sha256: 00\n# seed: 2000\n# n: 4\n")


@pytest.mark.parametrize("body, line, words", [
    ("sample,Male,Beard\n0,1,0\n", 5, "unknown column 'Beard'"),
    ("sample,Male\n0,1\n4,0\n", 7, "sample 4 is out of range"),
    ("sample,Male\n0,1\n1,M\n", 7, "Male = 'm': values are 1, 0, unsure"),
    ("sample,Male\n0,1\n0,0\n", 7, "labelled twice"),
    ("sample,Male\n0,1,0\n", 6, "3 cells, the header has 2"),
])
def test_bad_label_file_exits_2_naming_the_line(tmp_path, body, line, words):
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + body)
    res = CliRunner().invoke(cli, ["validate", "--labels", str(path), "--device", "cpu"])
    assert res.exit_code == 2, res.output
    out = res.output.strip()
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    assert f"{path}:{line}:" in out and words in out


def test_label_file_header_is_checked(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("# backbone: dcgan\n# seed: 2000\nsample,Male\n0,1\n")
    with pytest.raises(V.BenchError, match=r":1: .*'# weights_sha256: \.\.\.', '# n: \.\.\.'"):
        V.read_labels(path)
    path.write_text("# backbone: dcgan\n# colour: blue\nsample,Male\n0,1\n")
    with pytest.raises(V.BenchError, match=r":2: unknown header key 'colour'"):
        V.read_labels(path)
    # free-text comments, blank cells (not labelled) and 'unsure' are fine; unsure is counted, blank is not
    path.write_text(HEADER + "# one person labelled these: by eye\nsample,Male,Bald\n0,1,\n1,0,unsure\n2,unsure,1\n")
    labels = V.read_labels(path)
    assert labels.faces == [0, 1, 2] and labels.meta["n"] == 4
    row = V.score_row("Bald", "trainer", "probe", [0.1, 0.2, 0.9], labels)
    assert (row["n_pos"], row["n_neg"], row["n_unsure"], row["status"]) == (1, 0, 1, V.NO_LABELS)
    assert row["unsure_share"] == 0.5


# ---------------------------------------------------------------- bench validate, for real

@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    """`bench validate` on the built-in labels, run once: (its CSV, its printed output)."""
    out = tmp_path_factory.mktemp("validate") / "validity.csv"
    res = CliRunner().invoke(cli, ["validate", "--device", "cpu", "-o", str(out)])
    assert res.exit_code == 0, res.output
    return pd.read_csv(out, keep_default_na=False, na_values=[""]), res.output


def test_bench_validate_on_the_builtin_labels(builtin):
    from latent_edit_bench.assets import asset_path

    assert asset_path("labels-dcgan-seed2000-human") == V.builtin_label_files()[0]   # registered, sha256 checked
    v, printed = builtin
    assert list(v.columns) == V.VALIDITY_COLUMNS
    assert list(zip(v.attr, v.role)) == [("Male", "trainer"), ("Male", "judge"), ("Smiling", "trainer"),
                                         ("Smiling", "judge"), ("Bald", "trainer")]
    male = v[(v.attr == "Male") & (v.role == "trainer")].iloc[0]
    assert male.instrument == "probe" and male.n_pos + male.n_neg == 25      # the 25 clear gender calls
    assert male.n_unsure == 39 and male.unsure_share == pytest.approx(39 / 64)
    assert (v.lo <= v.auc).all() and (v.auc <= v.hi).all()
    assert set(v.status) <= {V.SEES, V.NOT_SHOWN}
    assert (v.status == V.SEES).eq(v.lo > 0.5).all()
    assert v.labels.eq("dcgan_seed2000_human.csv").all()
    judge = v[(v.attr == "Male") & (v.role == "judge")].iloc[0]
    assert judge.instrument == "oarriaga-gender.male"
    for word in ("Male", "Bald", "status", "not shown"):
        assert word in printed


@pytest.mark.slow
def test_faces_given_as_image_files_read_like_the_samples(tmp_path, builtin):
    """The clear Male faces of the built-in labels, saved as PNGs and labelled by file: the same AUC as by
    sample index, up to the PNG's 8-bit rounding (a pair or two of 154 may swap)."""
    from PIL import Image

    from latent_edit_bench.images import to_uint8
    from latent_edit_bench.plugins import get_plugins

    labels = V.read_labels(V.builtin_label_files()[0])
    clear = [i for i in labels.faces if np.isfinite(labels.values["Male"][i])]
    images = to_uint8(get_plugins().backbones.create("dcgan").sample(64, 2000))
    lines = ["image,Male"]
    for i in clear:
        Image.fromarray(images[i]).save(tmp_path / f"face{i}.png")
        lines.append(f"face{i}.png,{int(labels.values['Male'][i])}")
    (tmp_path / "files.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "v.csv"
    res = CliRunner().invoke(cli, ["validate", "--labels", str(tmp_path / "files.csv"), "--device", "cpu",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    v = pd.read_csv(out).set_index("role")
    assert v.loc["trainer", "n_pos"] + v.loc["trainer", "n_neg"] == len(clear) == 25
    by_sample = builtin[0].set_index(["attr", "role"]).loc[("Male", "trainer"), "auc"]
    assert abs(v.loc["trainer", "auc"] - by_sample) <= 3 / 154


def test_labels_of_other_weights_are_refused(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(HEADER + "sample,Male\n0,1\n1,0\n")
    res = CliRunner().invoke(cli, ["validate", "--labels", str(path), "--device", "cpu"])
    assert res.exit_code == 2 and "the indices would be other faces" in res.output


# ---------------------------------------------------------------- the ranking and the report

def test_an_unvalidated_attribute_is_listed_without_a_rank():
    from latent_edit_bench.reports.first_screen import ranking_table
    from test_analysis import run   # the synthetic per-sample frames of tests/test_analysis.py

    spec = {"ref": (0.5, 0.3, 1.0), "strong": (0.25, 0.3, 1.0), "weak": (0.3, 0.1, 1.0)}
    seen = run(spec, validity={"Male": V.SEES})["ranking"]
    blind = run(spec, validity={"Male": V.NOT_SHOWN})["ranking"]
    unknown = run(spec, validity={})["ranking"]                       # no labels for Male: not validated either
    compared = seen.status.isin(["ranked", "reference"])
    assert seen[compared]["rank"].notna().all() and seen.trainer_validity.eq(V.SEES).all()
    assert blind[compared]["rank"].isna().all() and blind.trainer_validity.eq(V.NOT_SHOWN).all()
    assert unknown[compared]["rank"].isna().all() and unknown.trainer_validity.eq(V.NO_LABELS).all()
    # the numbers themselves are unchanged: only the rank goes
    pd.testing.assert_series_equal(seen.value, blind.value)
    rows = blind[blind.direction == "+"].assign(p_holm=np.nan)
    table = ranking_table("t", "Male", rows, list(spec))
    ranks = [r[0].text for r in table.body[:int(compared[blind.direction == "+"].sum())]]
    assert ranks and all(t == "not validated" for t in ranks)


def test_an_unvalidated_judge_gives_no_verdict():
    from latent_edit_bench.reports.caveats import no_verdict

    frame = pd.DataFrame({"metric": ["judge", "judge", "emotion"], "quantity": ["fooled", "trainer.change", "fooled"],
                          "label": ["fooled the trainer", "achieved change", "x"], "better": ["lower", "", "lower"]})
    out = no_verdict(frame, "not validated: the judge (j) is not shown to see Male on this backbone")
    assert out.label[0].endswith("(not validated: the judge is not shown to see it)") and out.better[0] == ""
    assert out.label[1:].tolist() == ["achieved change", "x"] and out.better[2] == "lower"
    assert no_verdict(frame, "") is frame
