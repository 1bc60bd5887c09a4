"""fer_sweep.data.carry: FER2013 packed for a machine that cannot fetch it, unpacked byte for byte, and refused
(nothing written) when the bytes are not the expected file's."""
import gzip
import hashlib

from fer_sweep.data import carry
from tests.conftest import run_cli


def test_pack_unpack_round_trip_and_md5_check(tmp_path, mini_csv):
    csv = tmp_path / "mini.csv"
    lines = gzip.decompress(mini_csv.read_bytes()).splitlines(keepends=True)
    csv.write_bytes(b"".join(lines[:301]))  # the header and 300 faces: LZMA is slow
    carry.pack(csv, tmp_path / "packed")
    assert (tmp_path / "packed" / "pixels.xz").stat().st_size < csv.stat().st_size / 3

    out = tmp_path / "out.csv"
    assert carry.unpack(tmp_path / "packed", out) == 1 and not out.exists()  # not Kaggle's file
    assert not list(tmp_path.glob("out.csv*"))
    assert carry.unpack(tmp_path / "packed", out, hashlib.md5(csv.read_bytes()).hexdigest()) == 0
    assert out.read_bytes() == csv.read_bytes()


def test_cli_names_a_missing_folder(tmp_path):
    proc = run_cli(["unpack", str(tmp_path / "nowhere"), str(tmp_path / "out.csv")], module="fer_sweep.data.carry",
                   timeout=120)
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr
