"""FER+ labels: the paper's vote preparation, the four training modes, and a refused misaligned pair."""
import numpy as np
import pytest

from tests.conftest import SHARED_DATA, shared_sample

from fer_sweep.data import DataError, load_splits, read_fer2013
from fer_sweep.data.ferplus import CLASSES, prepare_votes, training_targets, with_ferplus_labels

# neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
ROWS = np.array([
    [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],   # 0: lone votes dropped -> 6 of 8 neutral: majority neutral
    [4, 4, 0, 0, 0, 0, 0, 0, 2, 0],   # 1: a tie, 4 of 10 each: kept (first of the tied), no majority
    [2, 0, 0, 0, 0, 0, 0, 0, 8, 0],   # 2: unknown has the most votes: removed
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # 3: not a face: removed
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],   # 4: only lone votes: nothing left, removed
    [3, 0, 0, 3, 0, 0, 0, 0, 3, 1],   # 5: emotions tie with unknown (3 each) of 9: kept, no majority
    [0, 0, 7, 0, 0, 0, 3, 0, 0, 0],   # 6: surprise 7 of 10: majority; fear 3 of 10 also >= 30%
], dtype=np.float32)


def test_the_papers_vote_rules_on_hand_checked_rows():
    kept, labels, votes = prepare_votes(ROWS)
    assert kept.tolist() == [True, True, False, False, False, True, True]
    assert labels[kept].tolist() == [0, -1, -1, 2]  # neutral, none, none, surprise
    assert votes[0].tolist() == [6, 0, 0, 0, 0, 0, 0, 0, 2, 0]
    shares = training_targets(votes[kept], "crossentropy")
    assert shares[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and shares[1][:2].tolist() == [0.5, 0.5]
    assert np.allclose(shares[3], [0, 0, 0.7, 0, 0, 0, 0.3, 0])
    assert np.array_equal(training_targets(votes[kept], "probability"), shares)
    mask = training_targets(votes[kept], "multi_target")
    assert mask.tolist() == [[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0],
                             [1, 0, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 1, 0]]
    assert training_targets(votes[kept], "majority") is None
    with pytest.raises(DataError, match="unknown data.ferplus_mode 'vote'"):
        training_targets(votes, "vote")


@pytest.fixture
def mini_pair(mini_csv):
    return mini_csv, shared_sample(SHARED_DATA / "ferplus" / "fer2013new_mini.csv")


@pytest.mark.parametrize("mode, train", [("majority", 2492), ("probability", 2828), ("crossentropy", 2828),
                                         ("multi_target", 2824)])
def test_the_mini_pair_loads_with_the_expected_counts(mini_pair, mode, train):
    csv, votes = mini_pair
    splits = load_splits({"path": str(csv), "labels": "ferplus", "ferplus_path": str(votes),
                          "ferplus_mode": mode, "split": "official", "cache_dir": None}, seed=0)
    assert splits.sizes() == {"train": train, "val": 326, "test": 313}  # val/test: faces with a majority
    assert splits.train.class_names == CLASSES and len(CLASSES) == 8
    assert (splits.test.labels >= 0).all() and (splits.val.labels >= 0).all()
    assert (splits.train.targets is None) == (mode == "majority")


def test_a_misaligned_pair_is_refused(mini_pair, tmp_path):
    csv, votes = mini_pair
    data = read_fer2013(csv)
    lines = votes.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="has 3592 rows but .* has 3593: the FER\\+ file must line up"):
        with_ferplus_labels(data, tmp_path / "short.csv", "majority")
    swapped = lines[:]
    i = next(k for k, line in enumerate(swapped) if k and not line.startswith("Training"))
    swapped[1], swapped[i] = swapped[i], swapped[1]
    (tmp_path / "swapped.csv").write_text("\n".join(swapped) + "\n")
    with pytest.raises(DataError, match="row 2 is (PublicTest|PrivateTest) but row 2 of .* is Training"):
        with_ferplus_labels(data, tmp_path / "swapped.csv", "majority")


def test_the_vote_file_defaults_to_beside_the_fer2013_file(mini_csv, tmp_path):
    with pytest.raises(DataError, match="fer2013new.csv: no FER\\+ vote file .* set data.ferplus_path"):
        load_splits({"path": str(mini_csv), "labels": "ferplus", "cache_dir": None}, seed=0)


def test_training_targets_of_each_mode_reach_the_loss():
    import torch

    from fer_sweep.engine.targets import batch_targets, correct, per_sample_loss

    shares = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])
    draws = torch.stack([batch_targets(shares, "probability", torch.Generator().manual_seed(s)) for s in range(400)])
    assert (draws[:, 1] == 2).all() and set(draws[:, 0].tolist()) == {0, 1}
    assert abs((draws[:, 0] == 0).float().mean().item() - 0.7) < 0.07   # drawn in proportion to the votes
    assert torch.equal(batch_targets(shares, "crossentropy"), shares)

    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    log_p = torch.log_softmax(logits, 1)
    soft = per_sample_loss(logits, shares, "crossentropy")
    assert torch.allclose(soft, -(shares * log_p).sum(1))
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    assert torch.allclose(per_sample_loss(logits, mask, "multi_target"), -torch.stack([log_p[0, 1], log_p[1, 2]]))
    assert correct(logits, mask, "multi_target").tolist() == [False, False]
    assert correct(logits, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), "multi_target").tolist() == [True, True]


def test_a_ferplus_run_writes_eight_classes_and_predict_names_them(mini_pair, tmp_path):
    import json

    import torch

    from tests.conftest import NARROW_RESNET9, run_cli

    from fer_sweep import predict

    csv, votes = mini_pair
    out = tmp_path / "run"
    done = run_cli(["data.labels=ferplus", f"data.path={csv}", f"data.ferplus_path={votes}",
                    "data.ferplus_mode=crossentropy", "data.split=official", "trainer.epochs=1", *NARROW_RESNET9,
                    "trainer.threads=1", "trainer.plots=false", f"hydra.run.dir={out}"])
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["labels"] == "ferplus/crossentropy" and list(result["per_class_test_acc"]) == list(CLASSES)
    assert result["split_sizes"] == {"train": 2828, "val": 326, "test": 313}
    assert len(result["confusion_matrix"]) == 8 and sum(map(sum, result["confusion_matrix"])) == 313
    assert torch.load(out / "checkpoints/best.pt", weights_only=True)["class_names"] == list(CLASSES)
    face = next((SHARED_DATA / "fer2013_folder_sample" / "test" / "happy").iterdir())
    predictor = predict.Predictor.from_paths([out / "checkpoints/best.pt"], device="cpu", precision="fp32")
    rows = [r for file_rows in predict.predict_files(predictor, predict.expand_inputs([face]),
                                                     predict.Options(detect=False)) for r in file_rows]
    row = rows[0]
    assert row["emotion"] in CLASSES and {f"prob_{c}" for c in CLASSES} <= set(row)


def test_multi_target_refuses_techniques_it_cannot_take(mini_pair, make_cfg, tmp_path):
    from fer_sweep.app import train

    csv, votes = mini_pair
    cfg = make_cfg("data.labels=ferplus", f"data.path={csv}", f"data.ferplus_path={votes}",
                   "data.ferplus_mode=multi_target", "trainer.mixup_alpha=0.2", "trainer.epochs=1")
    with pytest.raises(ValueError, match="multi_target trains on sets of acceptable classes"):
        train(cfg, tmp_path / "m")
