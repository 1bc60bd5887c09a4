"""A lighter install (issue 51): each optional package, hidden as if its extra were not installed, turns the
command that needs it into one line naming the extra, exit 2, before any work."""
import subprocess
import sys

import pytest

from tests.conftest import FAST, ROOT

HIDE = "import sys\nfor name in {hidden!r}: sys.modules[name] = None\nsys.argv = {argv!r}\n"


def run_hidden(hidden, argv, call, tmp_path):
    """`call` in a fresh Python whose sys.modules hides the packages `hidden` (import of them fails)."""
    code = HIDE.format(hidden=list(hidden), argv=list(argv)) + call
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def one_line(proc, expected):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [f"fer_sweep: error: {expected}"], proc.stderr[-3000:]


TRAIN = "from fer_sweep.__main__ import run\nrun()\n"


@pytest.mark.parametrize("logger,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_tracker_without_its_package(tmp_path, logger, module):
    proc = run_hidden([module], ["fer_sweep", *FAST, f"logger={logger}", f"hydra.run.dir={tmp_path / 'run'}"],
                      TRAIN, tmp_path)
    one_line(proc, f'logger={logger} needs {module}: pip install "fer_sweep[trackers]"')
    record = tmp_path / "run" / "result.json"
    assert not record.exists() or '"status": "failed"' in record.read_text()  # it never trained


def test_a_launcher_without_its_plugin(tmp_path):
    proc = run_hidden(["hydra_plugins.hydra_joblib_launcher"],
                      ["fer_sweep", "--multirun", *FAST, "seed=0,1", "hydra/launcher=joblib",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"], TRAIN, tmp_path)
    one_line(proc, 'hydra/launcher=joblib needs hydra-joblib-launcher: pip install "fer_sweep[distributed]"')


def test_a_postgresql_storage_without_its_driver(tmp_path):
    proc = run_hidden(["psycopg"], ["fer_sweep", "--multirun", *FAST, "hydra/sweeper=optuna",
                                    "optimizer.lr=interval(0.0001,0.01)", "hydra.sweeper.n_trials=1",
                                    "hydra.sweeper.storage=postgresql://127.0.0.1/test",
                                    f"hydra.sweep.dir={tmp_path / 'sweep'}"], TRAIN, tmp_path)
    one_line(proc, 'a postgresql:// Optuna storage needs psycopg[binary]: pip install "fer_sweep[distributed]"')
    assert not list((tmp_path / "sweep").glob("*/result.json"))


def test_predict_and_export_without_their_packages(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"")  # never read: the check comes first
    proc = run_hidden(["cv2"], ["predict", str(tmp_path / "best.pt"), str(tmp_path)],
                      "from fer_sweep.predict import main\nsys.exit(main())\n", tmp_path)
    one_line(proc, 'predict (face detection) needs opencv-python-headless: pip install "fer_sweep[predict]"')
    proc = run_hidden(["onnxscript"], ["export", str(tmp_path / "best.pt")],
                      "from fer_sweep.export import main\nsys.exit(main())\n", tmp_path)
    one_line(proc, 'export --format onnx needs onnxscript: pip install "fer_sweep[predict]"')
