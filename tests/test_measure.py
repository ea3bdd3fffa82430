"""`bench measure`: prints emotions/age/attributes, writes landmark overlays, exits 2 on bad paths."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from latent_edit_bench.measure import landmark_error, to_pixels
from conftest import run_bench

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
GRACE_FACE = (143, 107, 387, 351)   # a tight face crop, as face-api's landmark net wants


def test_measure_grace_hopper_prints_emotions_and_writes_an_overlay(tmp_path):
    face = tmp_path / "grace_hopper.png"
    Image.open(GRACE).convert("RGB").crop(GRACE_FACE).save(face)
    res = run_bench("measure", str(face), "-o", str(tmp_path), "--device", "cpu", "--no-detect")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for needle in ("fer-emotion", "faceapi-expression", "happy", "neutral", "age", "male",
                   "attributes (probe)", "Smiling", "Blond_Hair"):
        assert needle in out, needle
    assert "Eyeglasses" not in out   # unsupported attributes are not printed
    overlay = np.asarray(Image.open(tmp_path / "grace_hopper_landmarks.png"))
    src = np.asarray(Image.open(face))
    assert overlay.shape[0] >= 512 and overlay.shape[0] % src.shape[0] == 0
    k = overlay.shape[0] // src.shape[0]
    # the dots are drawn: the overlay differs from the upscaled photo in some pixels, not most
    diff = (overlay != src.repeat(k, 0).repeat(k, 1)).any(-1).mean()
    assert 0.001 < diff < 0.1

    # every printed number is in measurements.csv too, landmarks included (68 points in pixels)
    import re

    import pandas as pd

    table = pd.read_csv(tmp_path / "measurements.csv")
    assert len(table) == 1 and table.path[0] == str(face)
    age, male = (float(v) for v in re.search(r"age ([\d.]+) years, male ([\d.]+)", out).groups())
    assert abs(table.age[0] - age) <= 0.05 + 1e-9 and abs(table.male[0] - male) <= 5e-4 + 1e-12
    fer = [float(v) for v in re.search(r"fer-emotion +([\d. ]+)", out).group(1).split()]
    assert np.allclose(table.filter(like="emotion.fer-emotion.").to_numpy()[0], fer, atol=5e-4)
    assert table.filter(regex=r"^landmark\.\d+\.[xy]$").shape[1] == 136


def test_missing_file_exits_2_and_names_it(tmp_path, bench_cli):
    res = bench_cli("measure", GRACE, tmp_path / "nope.jpg", "-o", tmp_path)
    assert res.exit_code == 2
    assert "nope.jpg" in res.stderr and "not found" in res.stderr and "Traceback" not in res.stderr
    assert not list(tmp_path.glob("*.png"))   # checked before any work


def test_unknown_instrument_set_exits_2(tmp_path, bench_cli):
    res = bench_cli("measure", GRACE, "--instrument-set", "nope", "-o", tmp_path)
    assert res.exit_code == 2 and "valid: default" in res.stderr


def test_landmarks_map_back_from_the_padded_square():
    # a 100x60 image sits 20 px down in its 100x100 square
    lm = torch.tensor([[0.5, 0.5], [0.0, 0.2]])
    assert np.allclose(to_pixels(lm, 100, 60), [[50, 30], [0, 0]], atol=1e-4)
    lm = torch.tensor([[0.5, 0.5]])
    assert np.allclose(to_pixels(lm, 60, 100), [[30, 50]], atol=1e-4)


def test_landmarks_agree_with_dlib_on_grace_hopper():
    pytest.importorskip("dlib")
    from latent_edit_bench.measure import DlibReference, Instruments

    rgb = np.asarray(Image.open(GRACE).convert("RGB").crop(GRACE_FACE))
    ours = Instruments("default").measure(Path("g"), rgb).landmarks
    ref, how = DlibReference().landmarks(rgb)
    assert how == "dlib detector"
    assert landmark_error(ours, ref) < 8   # % of inter-ocular distance (4.8 measured)
    assert landmark_error(ours, ref[::-1]) > 30   # and the check can fail


def test_measure_uncropped_photo_finds_the_face(tmp_path, bench_cli):
    res = bench_cli("measure", GRACE, "-o", tmp_path, "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    assert "face 1: crop" in res.stdout and "face 2" not in res.stdout
    overlay = Image.open(tmp_path / "grace_hopper_faces.png")
    assert overlay.size[0] >= 512
    # the crop holds the face, not the uniform: its centre is in the photo's upper half
    box = [int(v) for v in res.stdout.split("crop (")[1].split(")")[0].split(",")]
    assert (box[1] + box[3]) / 2 < Image.open(GRACE).size[1] / 2


def test_measure_photo_without_a_face_exits_2(tmp_path, bench_cli):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 150), (120, 130, 140)).save(blank)
    res = bench_cli("measure", blank, "-o", tmp_path, "--device", "cpu")
    assert res.exit_code == 2
    assert "no face found" in res.stderr + res.stdout and "--no-detect" in res.stderr + res.stdout


def test_rotate_points_follows_pil_and_levels_the_eyes():
    from latent_edit_bench.measure import roll_degrees, rotate_points

    img = np.zeros((100, 120, 3), np.uint8)
    img[28:33, 78:83] = 255                                   # a bright 5 x 5 blob centred on (80, 30)
    centre = np.array([60.0, 50.0])
    rotated = np.asarray(Image.fromarray(img).rotate(30, resample=Image.NEAREST, center=tuple(centre)))
    y, x = np.argwhere(rotated[..., 0] > 0).mean(0)
    assert np.allclose(rotate_points(np.array([[80.0, 30.0]]), 30, centre)[0], [x, y], atol=1)
    eyes = np.array([[40.0, 40.0], [80.0, 60.0]])             # image-right eye lower: rolled clockwise
    level = rotate_points(eyes, roll_degrees(eyes), eyes.mean(0))
    assert abs(level[0, 1] - level[1, 1]) < 1e-9
    assert np.allclose(rotate_points(level, -roll_degrees(eyes), eyes.mean(0)), eyes)
