"""multirun/reference/gpu_h200/carry_data.py: FER2013 packed for a machine that cannot fetch it, unpacked
byte for byte, and refused (nothing written) when the bytes are not the expected file's."""
import gzip
import hashlib
import importlib.util

from tests.conftest import ROOT

SCRIPT = ROOT / "multirun" / "reference" / "gpu_h200" / "carry_data.py"


def _carry():
    spec = importlib.util.spec_from_file_location("carry_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_unpack_round_trip_and_md5_check(tmp_path, mini_csv):
    carry = _carry()
    csv = tmp_path / "mini.csv"
    lines = gzip.decompress(mini_csv.read_bytes()).splitlines(keepends=True)
    csv.write_bytes(b"".join(lines[:301]))  # the header and 300 faces: LZMA is slow
    carry.pack(csv, tmp_path / "packed")
    assert (tmp_path / "packed" / "pixels.xz").stat().st_size < csv.stat().st_size / 3

    out = tmp_path / "out.csv"
    assert carry.unpack(tmp_path / "packed", out) == 1 and not out.exists()  # not Kaggle's file
    assert carry.unpack(tmp_path / "packed", out, hashlib.md5(csv.read_bytes()).hexdigest()) == 0
    assert out.read_bytes() == csv.read_bytes()
