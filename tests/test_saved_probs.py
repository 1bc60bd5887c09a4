"""fer_sweep/saved_probs.py: a run's test probabilities, kept so runs ensemble without their checkpoints."""
from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import NARROW_RESNET9
from fer_sweep.app import train
from fer_sweep.data import load_splits
from fer_sweep.saved_probs import (SavedProbs, SavedProbsError, check_same_faces, ensemble_acc, load_probs, save_probs,
                                  write_probs)


def test_a_run_saves_its_test_probabilities_as_it_scored_them(make_cfg, mini_csv, tmp_path):
    cfg = make_cfg("data=fer2013", f"data.path={mini_csv}", *NARROW_RESNET9, "trainer.epochs=1",
                   "trainer.plots=false", "trainer.threads=1", "trainer.tta=flip")
    result = train(cfg)
    saved = load_probs(tmp_path / "run" / "test_probs.npz")
    assert (saved.split, saved.tta, len(saved.probs), saved.labels) == ("PrivateTest", "flip", 360, None)
    test = load_splits({"path": str(mini_csv), "split": "official"}, seed=0).test  # the labels, read again
    saved = saved.with_labels(test.labels, {"data_fingerprint": result["data_fingerprint"]})
    assert saved.acc == pytest.approx(result["test_acc"], abs=1e-6)
    assert saved.identity == {"data_fingerprint": result["data_fingerprint"]}
    with pytest.raises(SavedProbsError, match="other faces"):
        saved.with_labels(test.labels[::-1], saved.identity)
    assert saved.class_names == result["class_names"]
    assert np.allclose(saved.probs.sum(1), 1, atol=1e-5)


def member(labels, probs, tta="none", fingerprint="abc"):
    return SavedProbs(np.array(probs, dtype=np.float32), np.array(labels), ["a", "b"], "PrivateTest", tta,
                      {"data_fingerprint": fingerprint}, "src")


def test_round_trip_and_the_ensemble_averages_probabilities(tmp_path):
    a = member([0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    b = member([0, 1, 1], [[0.4, 0.6], [0.1, 0.9], [0.3, 0.7]])
    save_probs(tmp_path / "a.npz", a.probs, a.labels, a.class_names, a.split, a.tta, a.identity, a.source,
               {"name": "fer2013", "path": "fer2013.csv", "cache_dir": "/tmp"})
    back = load_probs(tmp_path / "a.npz")
    assert np.array_equal(back.probs, a.probs) and back.labels is None and back.faces == a.faces
    assert (back.tta, back.identity, back.source) == (a.tta, a.identity, a.source)
    assert back.data == {"name": "fer2013", "path": "fer2013.csv"}  # what reads the labels again
    back = back.with_labels(a.labels, a.identity)
    assert (a.acc, b.acc) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert ensemble_acc([back, b]) == 1.0  # face 1: (0.6 + 0.1) / 2 < (0.4 + 0.9) / 2; face 0: 0.65 > 0.35


@pytest.mark.parametrize("other, what", [
    (member([1, 0, 1], [[0.5, 0.5]] * 3), "faces"),
    (member([0, 1, 1], [[0.5, 0.5]] * 3, tta="flip"), "tta"),
    (member([0, 1, 1], [[0.5, 0.5]] * 3, fingerprint="xyz"), "data"),
])
def test_members_of_other_faces_or_views_do_not_ensemble(other, what):
    with pytest.raises(SavedProbsError, match=f"differ in {what}"):
        check_same_faces([member([0, 1, 1], [[0.5, 0.5]] * 3), other])


def test_the_text_form_keeps_what_scores_them(tmp_path):
    """.csv: the metadata as the first line, the classes, 4 decimals a face; it reads back as the same member."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=500).astype(np.float32)
    labels = rng.integers(0, 7, size=500)
    a = SavedProbs(probs, labels, list("ABCDEFG"), "PrivateTest", "tenshift", {"data_fingerprint": "abc"}, "s/0",
                   data={"name": "fer2013", "path": "fer2013.csv"})
    write_probs(tmp_path / "a.csv", a)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0].startswith("# {") and lines[1] == "A,B,C,D,E,F,G" and len(lines) == 502
    back = load_probs(tmp_path / "a.csv")
    assert np.abs(back.probs - probs).max() <= 5e-5 and back.labels is None
    assert (back.faces, back.tta, back.split, back.identity, back.data, back.source) == (
        a.faces, a.tta, a.split, a.identity, a.data, a.source)
    back = back.with_labels(labels, a.identity)
    b = replace(a, probs=rng.dirichlet(np.ones(7), size=500).astype(np.float32))
    assert back.acc == pytest.approx(a.acc, abs=1 / 500) and ensemble_acc([back, b]) == pytest.approx(
        ensemble_acc([a, b]), abs=1 / 500)
    (tmp_path / "bad.csv").write_text("emotion,pixels\n0,1 2 3\n")  # a data file given by mistake
    with pytest.raises(SavedProbsError, match="bad.csv: not a probabilities file of fer_sweep"):
        load_probs(tmp_path / "bad.csv")
