"""fer_sweep.checkpoint, .faces and .predict: from a checkpoint file and photos to a table of emotions."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, run_cli, train_tiny
from fer_sweep import faces, predict
from fer_sweep.checkpoint import CheckpointError, load_checkpoint
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.data.fer2013 import list_image_folder, read_fer2013
from fer_sweep.engine.loop import evaluate
from fer_sweep.engine.precision import Precision

torch.set_num_threads(1)
FP32 = Precision(torch.device("cpu"), "fp32")
# A FER face on which OpenCV's Haar cascade fires reliably once enlarged (it misses about half of the
# tightly cropped FER faces; this one was found in every trial position and background).
DETECTABLE_FACE = "test/surprise/PublicTest_42463795.jpg"
needs_detector = pytest.mark.skipif(faces.detector_problem() is not None,
                                    reason=str(faces.detector_problem()))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return train_tiny("cnn", tmp_path_factory.mktemp("cnn"))


@pytest.fixture(scope="module")
def ckpt_resnet(tmp_path_factory) -> Path:
    return train_tiny("resnet9", tmp_path_factory.mktemp("resnet9"))


@pytest.fixture
def sample(folder_sample) -> Path:
    return folder_sample


def predict_rows(ckpt_paths, files, tta=False, **options):
    predictor = predict.Predictor.from_paths(ckpt_paths, device="cpu", precision="fp32", tta=tta)
    rows = predict.predict_files(predictor, predict.expand_inputs(files), predict.Options(**options),
                                 batch_size=16)
    return [row for file_rows in rows for row in file_rows]


def probs_of(rows, class_names):
    return np.array([[row[f"prob_{c}"] for c in class_names] for row in rows])


def pasted_photo(path: Path, face_file: Path, at=(200, 80), size=150) -> tuple:
    """A FER face enlarged and pasted into a 400x300 noisy background; returns the pasted (x, y, w, h)."""
    rng = np.random.default_rng(0)
    background = Image.fromarray(np.clip(rng.normal(128, 40, (300, 400)), 0, 255).astype(np.uint8))
    background.paste(Image.open(face_file).convert("L").resize((size, size), Image.BICUBIC), at)
    background.convert("RGB").save(path, quality=95)
    return (*at, size, size)


# ------------------------------------------------------------------------------------------ predictions
@pytest.mark.parametrize("tta", [False, True])
def test_folder_sample_matches_the_models_own_evaluation(ckpt, sample, tta):
    loaded = load_checkpoint(ckpt)
    data = read_fer2013(sample)
    reference = evaluate(loaded.model, DeviceBatches(data), FP32, tta=tta)
    order = {str(file): k for k, (file, _, _) in enumerate(list_image_folder(sample))}

    rows = predict_rows([ckpt], [sample], tta=tta)
    assert len(rows) == len(data) == 56 and not any(r["error"] for r in rows)
    index = [order[r["file"]] for r in rows]
    assert [r["emotion"] for r in rows] == [loaded.class_names[int(reference.preds[k])] for k in index]
    np.testing.assert_allclose(probs_of(rows, loaded.class_names), reference.probs.numpy()[index], atol=1e-5)
    assert all((r["x"], r["y"], r["w"], r["h"], r["face"]) == (0, 0, 48, 48, 0) for r in rows)


def test_bad_files_get_error_rows_and_the_rest_succeed(ckpt, sample, tmp_path):
    good = sorted((sample / "test" / "happy").glob("*.jpg"))
    (tmp_path / "zeros.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))        # JPEG magic, then nothing
    (tmp_path / "truncated.jpg").write_bytes(good[0].read_bytes()[:400])          # a real JPEG, cut short
    (tmp_path / "notes.txt").write_text("not an image\n")
    bad = [tmp_path / name for name in ("zeros.jpg", "truncated.jpg", "notes.txt", "missing.png")]
    out = tmp_path / "predictions.json"

    proc = run_cli([str(ckpt), *map(str, good[:2]), *map(str, bad), str(good[2]), "--output", str(out)],
                   module="fer_sweep.predict", env_extra={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["file"] for r in rows] == [str(p) for p in [*good[:2], *bad, good[2]]]  # input order kept
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"zeros.jpg", "truncated.jpg", "notes.txt", "missing.png"}
    assert "not an image" in errors["notes.txt"] and "no such file" in errors["missing.png"]
    assert "truncated" in errors["truncated.jpg"]
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 3 and all(r["emotion"] in load_checkpoint(ckpt).class_names for r in ok)
    assert all(abs(sum(v for k, v in r.items() if k.startswith("prob_")) - 1) < 1e-5 for r in ok)
    assert "7 file(s), 3 face(s), 4 failed" in proc.stderr


def test_csv_and_table_outputs(ckpt, sample, tmp_path, capsys):
    files = [str(p) for p in sorted((sample / "test" / "sad").glob("*.jpg"))]
    assert predict.main([str(ckpt), *files, "--output", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == files
    assert list(rows[0]) == predict.columns(load_checkpoint(ckpt).class_names)
    assert all(r["error"] == "" and float(r["confidence"]) > 0 for r in rows)

    assert predict.main([str(ckpt), files[0], "--tta"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:8] == ["file", "face", "x", "y", "w", "h", "emotion", "confidence"]
    assert table[1].startswith(files[0])


def test_ensemble_averages_probabilities(ckpt, ckpt_resnet, sample):
    files, classes = [sample / "test" / "fear"], load_checkpoint(ckpt).class_names
    cnn, resnet = (probs_of(predict_rows([c], files), classes) for c in (ckpt, ckpt_resnet))
    both = probs_of(predict_rows([ckpt, ckpt_resnet], files), classes)
    np.testing.assert_allclose(both, (cnn + resnet) / 2, atol=1e-6)


# ------------------------------------------------------------------------------------------ photos
@needs_detector
def test_a_face_pasted_into_a_photo_is_found_and_cropped(ckpt, sample, tmp_path):
    photo = tmp_path / "photo.jpg"
    px, py, pw, ph = pasted_photo(photo, sample / DETECTABLE_FACE)
    found = faces.faces_in(faces.read_gray(photo))
    assert len(found) == 1
    x, y, w, h = found[0].box
    overlap = max(0, min(x + w, px + pw) - max(x, px)) * max(0, min(y + h, py + ph) - max(y, py))
    assert overlap / (w * h + pw * ph - overlap) > 0.8, (found[0].box, (px, py, pw, ph))  # IoU
    # The crop is the pasted face again: FER framing, 48x48.
    original = np.asarray(Image.open(sample / DETECTABLE_FACE).convert("L"), dtype=np.float64)
    assert found[0].pixels.shape == (48, 48)
    assert np.corrcoef(found[0].pixels.ravel(), original.ravel())[0, 1] > 0.9

    annotated = tmp_path / "annotated"
    assert predict.main([str(ckpt), str(photo), "--annotate", str(annotated), "--output",
                         str(tmp_path / "p.json")]) == 0
    row, = json.loads((tmp_path / "p.json").read_text())
    assert (row["x"], row["y"], row["w"], row["h"]) == found[0].box and row["face"] == 0
    with Image.open(annotated / "photo.png") as im:
        assert im.size == (400, 300) and im.mode == "RGB"


@needs_detector
def test_photo_without_a_face(ckpt, tmp_path):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400), dtype=np.uint8)).save(noise)
    row, = predict_rows([ckpt], [noise])
    assert row["error"] == "no face found" and row["emotion"] is None
    row, = predict_rows([ckpt], [noise], whole_if_no_face=True)
    assert row["error"] is None and (row["x"], row["y"], row["w"], row["h"]) == (0, 0, 400, 300)


# Scans a folder's photos with `workers` decoding threads, in a new interpreter; prints (faces, error).
SCAN_IN_A_FRESH_PYTHON = """
import json, sys
from pathlib import Path
from fer_sweep import predict
files = sorted(Path(sys.argv[1]).glob("*.jpg"))
scans = predict.scan_files(files, predict.Options(), workers=int(sys.argv[2]), chunk=len(files))
print(json.dumps([[len(scan.faces), scan.error] for scan in scans]))
"""


@needs_detector
def test_many_decoding_threads_all_get_the_detector(sample, tmp_path):
    """Issue #16: threads racing on the first `import cv2` / cascade load gave some photos 'face detection
    unavailable'. Each round is a new interpreter: cv2 initialises once per process, so only a fresh one
    exercises that first load (this test process has loaded it already)."""
    faces_files = sorted(sample.rglob("*.jpg"))[:48]
    for k, face_file in enumerate(faces_files):
        pasted_photo(tmp_path / f"photo_{k:02d}.jpg", face_file, at=(40 + 4 * k, 20 + 2 * k))
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-c", SCAN_IN_A_FRESH_PYTHON, str(tmp_path), "8"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr
        scans = json.loads(proc.stdout)
        assert len(scans) == 48
        assert not [error for _, error in scans if error and "unavailable" in error]
        assert sum(n for n, _ in scans) > 24  # the real cascade ran: it finds most of these pasted faces

def test_no_detect_takes_images_whole(ckpt, sample, tmp_path):
    photo = tmp_path / "photo.png"
    pasted_photo(photo, sample / DETECTABLE_FACE)
    row, = predict_rows([ckpt], [photo], detect=False)
    assert row["error"] is None and (row["x"], row["y"], row["w"], row["h"]) == (0, 0, 400, 300)


def test_without_a_detector_photos_get_a_clear_error(ckpt, sample, tmp_path, monkeypatch):
    def unavailable():
        raise faces.DetectorUnavailable("face detection unavailable: test")

    monkeypatch.setattr(faces, "_cascade", unavailable)
    photo = tmp_path / "photo.png"
    pasted_photo(photo, sample / DETECTABLE_FACE)
    crop = sample / DETECTABLE_FACE
    photo_row, crop_row = predict_rows([ckpt], [photo, crop])
    assert photo_row["error"] == "face detection unavailable: test"
    assert crop_row["error"] is None  # face crops need no detector


def test_image_formats_rgb_and_exif_orientation(ckpt, sample, tmp_path):
    face = Image.open(sample / DETECTABLE_FACE).convert("RGB")
    for suffix in (".png", ".bmp", ".webp"):
        face.save(tmp_path / f"face{suffix}")
    face.resize((60, 60)).save(tmp_path / "face_60.jpg")  # not 48x48, still a face crop: used whole
    rows = predict_rows([ckpt], [tmp_path])
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    assert {(r["w"], r["h"]) for r in rows} == {(48, 48), (60, 60)}

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; the image must be rotated 90 degrees to view
    Image.new("L", (60, 40)).save(tmp_path / "turned.jpg", exif=exif)
    assert faces.read_gray(tmp_path / "turned.jpg").shape == (60, 40)


def test_crop_face_pads_at_the_border():
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    assert faces.crop_face(gray, (-10, -10, 40, 40), margin=0.2).shape == (48, 48)
    assert faces.crop_face(gray, (80, 70, 30, 30)).shape == (48, 48)


# ------------------------------------------------------------------------------------------ checkpoints
def test_an_older_checkpoint_with_only_weights_and_config_loads(ckpt, sample, tmp_path):
    full = torch.load(ckpt, weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({"state_dict": full["state_dict"], "config": full["config"]}, old)
    loaded = load_checkpoint(old)
    assert loaded.name == "cnn" and loaded.class_names == list(full["class_names"])
    assert (loaded.mean, loaded.std) == (full["normalization"]["mean"], full["normalization"]["std"])
    files = [sample / "test" / "angry"]
    np.testing.assert_array_equal(probs_of(predict_rows([old], files), loaded.class_names),
                                  probs_of(predict_rows([ckpt], files), loaded.class_names))


def test_checkpoint_normalisation_is_applied(ckpt, sample, tmp_path):
    """A checkpoint with its own mean/std gets exactly that normalisation, not the project default."""
    payload = torch.load(ckpt, weights_only=True)
    payload["normalization"] = {"mean": 0.4, "std": 0.3}
    other = tmp_path / "other_norm.pt"
    torch.save(payload, other)
    loaded = load_checkpoint(other)
    images = read_fer2013(sample).images[:8]
    x = (torch.from_numpy(images).float().unsqueeze(1) / 255 - 0.4) / 0.3
    with torch.no_grad():
        expected = loaded.model(x).softmax(1).numpy()
    predictor = predict.Predictor([loaded], torch.device("cpu"), FP32)
    np.testing.assert_allclose(predictor.probabilities(images), expected, atol=1e-5)


class Payload:
    """Any class: weights_only loading must refuse to rebuild it (unpickling objects can run code)."""


def test_files_that_are_not_checkpoints_are_refused_clearly(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"state_dict": {}, "extra": Payload()}, tmp_path / "code.pt")
    torch.save({"weights": {}}, tmp_path / "no_state.pt")
    torch.save({"state_dict": {}}, tmp_path / "no_model.pt")
    expected = {"text.pt": "not a PyTorch checkpoint", "code.pt": "refused to load",
                "no_state.pt": "no 'state_dict'", "no_model.pt": "config.model.name",
                "missing.pt": "no such checkpoint file"}
    for name, message in expected.items():
        with pytest.raises(CheckpointError, match=message) as err:
            load_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(err.value)


def test_cli_usage_errors_exit_2(ckpt, tmp_path, capsys):
    assert predict.main([str(tmp_path / "missing.pt"), str(tmp_path)]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert predict.main([str(ckpt), str(tmp_path / "empty")]) == 2
    assert "no image files" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["parent_is_a_file", "output_is_a_folder", "annotate_under_a_file"])
def test_an_unusable_destination_exits_2_before_predicting(ckpt, sample, tmp_path, case):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    (tmp_path / "folder").mkdir()
    args = {"parent_is_a_file": ["--output", str(blocker / "p.csv")],
            "output_is_a_folder": ["--output", str(tmp_path / "folder")],
            "annotate_under_a_file": ["--annotate", str(blocker / "annotated")]}[case]
    proc = run_cli([str(ckpt), str(sample), "--no-detect", *args], module="fer_sweep.predict")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and args[1] in lines[0]
    assert "file(s)" not in proc.stderr and proc.stdout == ""  # nothing was predicted


def test_an_unwritable_output_folder_is_refused_before_any_image(ckpt, sample, tmp_path, monkeypatch, capsys):
    """A folder this user may not write to (simulated: the tests may run as root, who may write anywhere)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    monkeypatch.setattr(predict, "predict_files", lambda *a, **k: pytest.fail("predicted before the check"))
    assert predict.main([str(ckpt), str(sample), "--output", str(locked / "p.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --output {locked / 'p.csv'}: {locked} is not writable"
