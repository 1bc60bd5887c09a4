"""The DataLoader path (StreamingBatches) yields what DeviceBatches yields; the benchmark runs end to end."""
import gzip
import json

import numpy as np
import pytest
import torch

from fer_sweep.data import read_fer2013
from fer_sweep.data.batches import DeviceBatches
from fer_sweep.data.loader import StreamingBatches, write_npy

from tests.conftest import MINI_CSV, run_cli


@pytest.fixture(scope="module")
def mini_data():
    if not MINI_CSV.exists():
        pytest.skip(f"{MINI_CSV} is missing (the shared FER2013 sample)")
    return read_fer2013(MINI_CSV)


def _assert_same_batches(expected: DeviceBatches, actual: StreamingBatches, batch_size: int, shuffle: bool,
                         seed: int = 0, drop_last: bool = False) -> int:
    g_expected, g_actual = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    a = list(expected.batches(batch_size, shuffle=shuffle, generator=g_expected, drop_last=drop_last))
    b = list(actual.batches(batch_size, shuffle=shuffle, generator=g_actual, drop_last=drop_last))
    assert len(a) == len(b) == expected.num_batches(batch_size, drop_last) == actual.num_batches(batch_size, drop_last)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xb.dtype == torch.uint8 and xb.shape == xa.shape and xb.shape[1:] == (1, 48, 48)
        assert yb.dtype == torch.int64 and torch.equal(xa, xb) and torch.equal(ya, yb)
    # The generator is left in the same state, so what draws from it next (augmentation) matches too.
    assert torch.equal(g_expected.get_state(), g_actual.get_state())
    return len(a)


@pytest.mark.parametrize("shuffle", [False, True])
def test_streaming_in_memory_matches_device_batches(mini_data, shuffle):
    expected = DeviceBatches(mini_data)
    actual = StreamingBatches.from_arrays(mini_data)
    assert len(actual) == len(expected) == 3593
    assert torch.equal(actual.labels, expected.labels)  # evaluate() compares predictions with .labels
    assert _assert_same_batches(expected, actual, 256, shuffle) == 15  # 14 full batches and one of 9


@pytest.mark.parametrize("shuffle", [False, True])
def test_streaming_memmap_with_workers_matches_device_batches(mini_data, tmp_path, shuffle):
    write_npy(mini_data, tmp_path / "npy")
    actual = StreamingBatches.from_npy(tmp_path / "npy", num_workers=2)
    assert isinstance(actual.dataset.images, np.memmap)
    _assert_same_batches(DeviceBatches(mini_data), actual, 500, shuffle, seed=3)
    _assert_same_batches(DeviceBatches(mini_data), actual, 500, shuffle, seed=3, drop_last=True)


def test_streaming_epochs_draw_new_orders(mini_data):
    """Two epochs from one generator: different orders, each the same as DeviceBatches'."""
    expected, actual = DeviceBatches(mini_data), StreamingBatches.from_arrays(mini_data)
    g_expected, g_actual = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    firsts = []
    for _ in range(2):
        (xa, ya), (xb, yb) = (next(iter(expected.batches(64, True, g_expected))),
                              next(iter(actual.batches(64, True, g_actual))))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        firsts.append(xb)
    assert not torch.equal(firsts[0], firsts[1])


def test_streaming_rejects_bad_arrays():
    with pytest.raises(ValueError, match="uint8"):
        StreamingBatches(np.zeros((2, 48, 48), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="labels"):
        StreamingBatches(np.zeros((2, 48, 48), np.uint8), np.zeros(3, np.int64))


def test_fit_trains_the_same_on_either_path(mini_data):
    """fit() accepts StreamingBatches; same seed, same batches, same augmentation draws -> same weights."""
    from fer_sweep.augment import build_augmentation
    from fer_sweep.engine.loop import fit
    from fer_sweep.engine.precision import resolve_precision
    from fer_sweep.models import build_model
    from fer_sweep.optim import Schedule

    small = mini_data.subset(np.arange(64))
    weights = []
    for batches in (DeviceBatches(small), StreamingBatches.from_arrays(small)):
        torch.manual_seed(0)
        model = build_model("cnn")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        fit(model, batches, batches, optimizer, Schedule(), resolve_precision("fp32", torch.device("cpu")),
            epochs=1, batch_size=32, augment=build_augmentation("seed"), generator=torch.Generator().manual_seed(1))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


# ----------------------------------------------------------------------------------------------- bench
@pytest.fixture
def bench_csv(mini_csv, tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(gzip.decompress(mini_csv.read_bytes()))
    return path


def test_bench_smoke(bench_csv, tmp_path, capsys):
    from fer_sweep import bench

    out = tmp_path / "bench.json"
    res = bench.main(["--csv", str(bench_csv), "--rows", "300", "--steps", "2", "--warmup", "1", "--models", "cnn",
                      "--batch-size", "32", "--threads", "1", "--skip-memory-probe", "--output", str(out)])
    report = capsys.readouterr().out
    for text in ("1. Parse", "torchvision.datasets.FER2013", "2. Training throughput", "ours/ceiling", "3. Memory",
                 "Machine"):
        assert text in report
    saved = json.loads(out.read_text())
    assert saved["parse"]["rows"] == 300 and saved["parse"]["images_agree"] is True
    assert saved["parse"]["article_pixels_dtype"] == "float64"
    for key in ("classic", "ceiling", "ours", "ours_vs_classic", "ours_vs_ceiling"):
        assert saved["train"]["cnn"][key] > 0
    assert saved["memory"]["images_uint8_bytes"] == 300 * 48 * 48
    assert saved["memory"]["article_float64_bytes"] == 8 * 300 * 48 * 48
    assert saved["memory"]["full_fer2013_uint8_bytes"] == 82_683_648  # 35,887 x 48 x 48: "about 83 MB"
    assert res["machine"]["torch"] == torch.__version__


def test_bench_from_image_folder_writes_a_csv(folder_sample, capsys):
    from fer_sweep import bench

    res = bench.main(["--folder", str(folder_sample), "--skip-train", "--skip-memory-probe"])
    assert "from the image folder" in res["data_note"]
    assert res["parse"]["rows"] == 56 and res["parse"]["images_agree"] is True
    assert "2. Training throughput: skipped" in capsys.readouterr().out


def test_bench_times_crops_side_by_side_with_whole_faces(bench_csv, tmp_path, capsys):
    from fer_sweep import bench

    out = tmp_path / "bench.json"
    bench.main(["--csv", str(bench_csv), "--rows", "200", "--steps", "2", "--warmup", "1", "--models", "resnet9",
                "--batch-size", "16", "--threads", "1", "--skip-parse", "--skip-memory-probe", "--input-crop", "40",
                "--output", str(out)])
    report = capsys.readouterr().out
    assert "40x40" in report and "crop/whole" in report
    row = json.loads(out.read_text())["train"]["resnet9"]
    assert row["ours_crop"] > 0 and row["crop_vs_whole"] == pytest.approx(row["ours_crop"] / row["ours"])


def test_bench_sets_each_models_pace_beside_the_first(bench_csv, tmp_path, capsys):
    from fer_sweep import bench

    out = tmp_path / "bench.json"
    bench.main(["--csv", str(bench_csv), "--rows", "200", "--steps", "2", "--warmup", "1", "--models",
                "resnet9,resnet9_lean", "--batch-size", "16", "--threads", "1", "--skip-parse", "--skip-memory-probe",
                "--output", str(out)])
    report = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in report.splitlines() if line.startswith("  resnet9")}
    train = json.loads(out.read_text())["train"]
    assert rows["resnet9"][-1] == "1.00x"
    assert rows["resnet9_lean"][-1] == f"{train['resnet9_lean']['ours'] / train['resnet9']['ours']:.2f}x"


def test_bench_refuses_a_crop_before_timing_a_model_that_cannot_take_it(bench_csv, capsys):
    from fer_sweep import bench

    with pytest.raises(SystemExit, match=r"--input-crop 40: model 'cnn'.*--models"):
        bench.main(["--csv", str(bench_csv), "--models", "cnn,resnet9", "--input-crop", "40", "--skip-parse"])
    assert "2. Training throughput" not in capsys.readouterr().out


@pytest.mark.slow
def test_bench_cli_with_memory_probe(bench_csv, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli(["--csv", str(bench_csv), "--rows", "300", "--steps", "2", "--warmup", "1", "--models", "cnn",
                    "--batch-size", "64", "--output", str(out)], module="fer_sweep.bench")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "peak RSS, fresh process training cnn" in proc.stdout
    probe = json.loads(out.read_text())["memory"]["training_run"]["cnn"]
    assert 0 < probe["peak_rss_bytes"] < json.loads(out.read_text())["memory"]["bench_process_peak_rss_bytes"] * 4
