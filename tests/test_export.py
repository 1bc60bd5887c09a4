"""fer_sweep.export: ONNX and TorchScript copies of a checkpoint that compute the same logits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_sweep import export
from fer_sweep.checkpoint import load_checkpoint
from tests.conftest import FOLDER_SAMPLE
from tests.test_predict import train_tiny

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    return {m: train_tiny(m, tmp_path_factory.mktemp(m)) for m in ("cnn", "resnet9")}


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("model", ["cnn", "resnet9"])
def test_export_passes_the_parity_check(checkpoints, tmp_path, model, fmt):
    out = tmp_path / f"fer{export.SUFFIXES[fmt]}"
    diff = export.export(checkpoints[model], fmt, out)
    assert out.is_file() and diff <= export.TOLERANCE
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary files left behind

    loaded = load_checkpoint(checkpoints[model])
    meta = exported_metadata(fmt, out)
    assert meta["class_names"] == loaded.class_names
    assert (meta["mean"], meta["std"]) == (loaded.mean, loaded.std)
    # Any batch size runs (dynamic batch axis): 3 here, after the check's 1 and 7.
    x = np.random.default_rng(0).standard_normal((3, 1, 48, 48)).astype(np.float32)
    with torch.no_grad():
        expected = loaded.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(export.runner(fmt, out)(x), expected, atol=1e-4)


def exported_metadata(fmt: str, path: Path) -> dict:
    if fmt == "onnx":
        import onnx

        model = onnx.load(str(path))
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size
        return json.loads({p.key: p.value for p in model.metadata_props}["fer_sweep"])
    extra = {export.EXTRA_FILE: ""}
    with export._quiet_jit():
        torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra[export.EXTRA_FILE])


def test_parity_data_is_real_faces_when_the_shared_sample_is_there():
    if not FOLDER_SAMPLE.exists():
        pytest.skip(f"{FOLDER_SAMPLE} is missing (the shared FER2013 sample)")
    images, source = export.parity_images()
    assert images.shape == (56, 48, 48) and "fer2013_folder_sample" in source


def test_a_parity_failure_exits_1_and_writes_nothing(checkpoints, tmp_path, monkeypatch, capsys):
    real_runner = export.runner

    def drifting_runner(fmt, path):  # an exported model whose logits are off by 1e-3
        run = real_runner(fmt, path)
        return lambda x: run(x) + np.float32(1e-3)

    monkeypatch.setattr(export, "runner", drifting_runner)
    out = tmp_path / "fer.ts"
    assert export.main([str(checkpoints["resnet9"]), "--format", "torchscript", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "parity check failed" in err and "0.001" in err
    assert list(tmp_path.iterdir()) == []


def test_command_line(checkpoints, tmp_path, capsys):
    """In-process: a subprocess would spend most of its time importing torch (the predict tests run one)."""
    out = tmp_path / "fer.torchscript.pt"
    assert export.main([str(checkpoints["resnet9"]), "--format", "torchscript", "--output", str(out)]) == 0
    assert out.is_file() and "parity max |logit difference|" in capsys.readouterr().out
    assert export.main([str(tmp_path / "missing.pt")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def test_an_unusable_output_exits_2_before_exporting(checkpoints, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(export, "parity_images", lambda *a: pytest.fail("exported before the check"))
    for output, why in [(blocker / "fer.onnx", f"{blocker} is not a folder"), (tmp_path, "is a folder")]:
        assert export.main([str(checkpoints["cnn"]), "--output", str(output)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"error: --output {output}") and why in err
