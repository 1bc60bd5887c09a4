"""Readers, validation, cache and splits on the real FER2013 samples in ../shared/data."""
import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_sweep.data import DataError, load_dataset, read_fer2013
from fer_sweep.data.arrays import EMOTIONS
from fer_sweep.data.cache import cached
from fer_sweep.data.splits import make_splits, merge_disgust_into_angry

MINI_PER_CLASS = [496, 56, 513, 900, 607, 401, 620]
MINI_PER_USAGE = {"Training": 2872, "PublicTest": 361, "PrivateTest": 360}


def test_mini_csv_counts(mini_csv):
    data = read_fer2013(mini_csv)
    assert data.images.shape == (3593, 48, 48) and data.images.dtype == np.uint8
    assert np.bincount(data.labels, minlength=7).tolist() == MINI_PER_CLASS
    assert {u: sum(c.values()) for u, c in data.counts().items()} == MINI_PER_USAGE
    assert data.class_names == EMOTIONS


def test_plain_csv_equals_gzip(mini_csv, tmp_path):
    plain = tmp_path / "fer2013.csv"
    plain.write_bytes(gzip.decompress(mini_csv.read_bytes()))
    a, b = read_fer2013(mini_csv), read_fer2013(plain)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_icml_variant_header(mini_csv, tmp_path):
    frame = pd.read_csv(mini_csv, nrows=20)
    path = tmp_path / "icml_face_data.csv"
    with open(path, "w") as f:
        f.write("emotion, Usage, pixels\n")
        for e, p, u in frame[["emotion", "pixels", "Usage"]].itertuples(index=False):
            f.write(f"{e}, {u}, {p}\n")
    data = read_fer2013(path)
    assert len(data) == 20
    assert np.array_equal(data.labels, frame["emotion"].to_numpy())
    assert np.array_equal(data.images[3].ravel(), np.array(frame["pixels"][3].split(), dtype=np.uint8))


def test_folder_sample_counts(folder_sample):
    data = read_fer2013(folder_sample)
    counts = data.counts()
    assert len(data) == 56
    # 4 per class in train/, and 4 per class in test/ split between PublicTest_ and PrivateTest_ names
    assert counts["Training"] == {c: 4 for c in EMOTIONS}
    assert sum(counts["PublicTest"].values()) + sum(counts["PrivateTest"].values()) == 28
    assert all(counts["PublicTest"][c] + counts["PrivateTest"][c] == 4 for c in EMOTIONS)


def test_folder_resizes_and_converts_rgb(folder_sample, tmp_path, caplog):
    root = tmp_path / "faces"
    shutil.copytree(folder_sample, root)
    victim = next((root / "train" / "happy").iterdir())
    gray = np.asarray(Image.open(victim))
    Image.fromarray(np.stack([gray] * 3, -1)).resize((96, 96)).save(victim.with_suffix(".png"))
    victim.unlink()
    data = read_fer2013(root)
    assert data.images.shape == (56, 48, 48)
    assert "resized" in caplog.text


def _write_csv(path, rows, header="emotion,pixels,Usage"):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    return path


GOOD_PIXELS = " ".join(["7"] * 2304)


def _pixels_ending(last: str) -> str:
    return " ".join(["7"] * 2303 + [last])


@pytest.mark.parametrize("row, message", [
    (f'0,"{" ".join(["7"] * 2303)}",Training', "row 3: pixels has 2303 values, expected 2304"),
    (f'0,"{_pixels_ending("x")}",Training', "row 3: pixel 2303 is 'x', expected an integer 0-255"),
    (f'0,"{_pixels_ending("256")}",Training', "row 3: pixel 2303 is '256'"),
    (f'0,"{_pixels_ending("-1")}",Training', "row 3: pixel 2303 is '-1'"),
    (f'0,"{_pixels_ending("2.5")}",Training', "row 3: pixel 2303 is '2.5'"),
    (f'9,"{GOOD_PIXELS}",Training', "row 3: emotion '9' is not an integer 0-6"),
    (f'x,"{GOOD_PIXELS}",Training', "row 3: emotion 'x'"),
    (f'0,"{GOOD_PIXELS}",Validation', "row 3: unknown Usage 'Validation'"),
    (f'0,"{_pixels_ending("1234")}",Training', "row 3: pixel 2303 is '1234'"),
], ids=["count", "text", "256", "negative", "float", "emotion9", "emotionx", "usage", "4digits"])
@pytest.mark.parametrize("quoted", [True, False], ids=["quoted", "bare"])
def test_bad_csv_rows_are_named(tmp_path, row, message, quoted):
    """Bare rows reach the byte-level parser first: it must refuse them so the named error still comes."""
    if not quoted:
        row = row.replace('"', "")
    path = _write_csv(tmp_path / "bad.csv", [f'1,"{GOOD_PIXELS}",Training', row])
    with pytest.raises(DataError) as err:
        read_fer2013(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_fer2013(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_fer2013(tmp_path / "empty.csv")
    _write_csv(tmp_path / "header_only.csv", [])
    with pytest.raises(DataError, match="no rows"):
        read_fer2013(tmp_path / "header_only.csv")
    _write_csv(tmp_path / "cols.csv", ["0,1"], header="emotion,usage")
    with pytest.raises(DataError, match=r"missing column\(s\) \['pixels', 'Usage'\]"):
        read_fer2013(tmp_path / "cols.csv")


def test_bad_folders(tmp_path, folder_sample):
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="expected sub-folders train/ and test/"):
        read_fer2013(tmp_path / "flat")
    root = tmp_path / "faces"
    shutil.copytree(folder_sample, root)
    broken = root / "test" / "sad" / "PrivateTest_broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="PrivateTest_broken.jpg: unreadable image"):
        read_fer2013(root)
    broken.unlink()
    (root / "train" / "contempt").mkdir()
    with pytest.raises(DataError, match="unknown class folder 'contempt'"):
        read_fer2013(root)


def test_cache_roundtrip_and_invalidation(mini_csv, tmp_path):
    src = tmp_path / "fer.csv.gz"
    shutil.copy(mini_csv, src)
    calls = []

    def reader(p):
        calls.append(p)
        return read_fer2013(p)

    first = cached(src, tmp_path / "cache", reader)
    second = cached(src, tmp_path / "cache", reader)
    assert len(calls) == 1 and np.array_equal(first.images, second.images)
    assert second.class_names == EMOTIONS
    src.write_bytes(gzip.compress(b"emotion,pixels,Usage\n" + f'3,"{GOOD_PIXELS}",Training\n'.encode()))
    third = cached(src, tmp_path / "cache", reader)
    assert len(calls) == 2 and len(third) == 1


def test_missing_explicit_path_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset({"name": "fer2013", "path": str(tmp_path / "missing.csv")})


def test_no_path_falls_back_to_synthetic(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FER2013_PATH", raising=False)
    data = load_dataset({"name": "fer2013", "path": None, "synthetic": {"n_train": 70, "n_public": 14,
                                                                          "n_private": 14}})
    assert data.source == "synthetic" and len(data) == 98
    assert "SYNTHETIC" in caplog.text


def test_seed_split(mini_csv):
    data = read_fer2013(mini_csv)
    s = make_splits(data, "seed", seed=0)
    assert s.sizes() == {"train": 2586, "val": 647, "test": 360}
    assert (s.test.usage == 2).all()
    again, other = make_splits(data, "seed", seed=0), make_splits(data, "seed", seed=1)
    assert np.array_equal(s.val.images, again.val.images)
    assert not np.array_equal(s.val.images, other.val.images)


def test_official_split(mini_csv):
    s = make_splits(read_fer2013(mini_csv), "official")
    assert s.sizes() == {"train": 2872, "val": 361, "test": 360}
    with pytest.raises(DataError, match="unknown data.split"):
        make_splits(read_fer2013(mini_csv), "random")


def test_full_split_trains_on_training_and_publictest(mini_csv):
    data = read_fer2013(mini_csv)
    s = make_splits(data, "full")
    assert s.sizes() == {"train": 2872 + 361, "val": 361, "test": 360}
    assert np.bincount(s.train.usage, minlength=3).tolist() == [2872, 361, 0] and (s.val.usage == 1).all()
    assert (s.test.usage == 2).all()


def test_train_fraction_keeps_each_class_share_and_whole_scoring_splits(mini_csv):
    data = read_fer2013(mini_csv)
    whole, part = make_splits(data, "official"), make_splits(data, "official", seed=3, train_fraction=0.25)
    assert (part.sizes()["val"], part.sizes()["test"]) == (361, 360)
    counts, full_counts = np.bincount(part.train.labels, minlength=7), np.bincount(whole.train.labels, minlength=7)
    assert counts.tolist() == [int(round(0.25 * n)) for n in full_counts] and counts.min() >= 1
    again = make_splits(data, "official", seed=3, train_fraction=0.25)
    assert np.array_equal(part.train.images, again.train.images)
    with pytest.raises(DataError, match=r"data.train_fraction=0.0; expected a fraction in \(0, 1\]"):
        make_splits(data, "official", train_fraction=0.0)


def test_merge_disgust(mini_csv):
    merged = merge_disgust_into_angry(read_fer2013(mini_csv))
    assert merged.class_names == ("angry", "fear", "happy", "sad", "surprise", "neutral")
    assert np.bincount(merged.labels).tolist() == [496 + 56, 513, 900, 607, 401, 620]


def test_byte_parser_equals_pandas_path(mini_csv, tmp_path, monkeypatch):
    """The canonical Kaggle file takes the byte-level path; it must give exactly what pandas gives."""
    from fer_sweep.data import fer2013
    from fer_sweep.data.kaggle_bytes import read_kaggle_bytes

    plain = tmp_path / "fer2013.csv"
    plain.write_bytes(gzip.decompress(mini_csv.read_bytes()))
    fast = read_kaggle_bytes(plain)
    assert fast is not None
    monkeypatch.setattr(fer2013, "read_kaggle_bytes", lambda path: None)
    slow = read_fer2013(plain)
    for got, want in zip(fast, (slow.images, slow.labels, slow.usage)):
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("\n", "\r\n"),                       # Windows line ends
    lambda text: text.replace(",", ',"', 2).replace(",Training", '",Training', 1),  # a quoted field
    lambda text: text.replace("emotion,pixels,Usage", "emotion,Usage,pixels"),
    lambda text: text.rstrip("\n") + "\n1,2 3,Training\n",          # a short row
    lambda text: text.replace(" ", "  ", 1),                          # a double space (pandas accepts it)
], ids=["crlf", "quoted", "other-header", "short-row", "double-space"])
def test_byte_parser_declines_what_it_cannot_verify(mini_csv, tmp_path, edit):
    from fer_sweep.data.kaggle_bytes import read_kaggle_bytes

    path = tmp_path / "variant.csv"
    lines = gzip.decompress(mini_csv.read_bytes()).decode().splitlines()[:6]
    path.write_text(edit("\n".join(lines) + "\n"), newline="")
    assert read_kaggle_bytes(path) is None


def test_shift_check_finds_no_shift_in_the_original_and_one_in_a_blurred_copy(mini_csv, tmp_path, capsys):
    """The original FER2013's splits agree; blurring and fading Training (as one public copy did) is caught."""
    from PIL import Image, ImageFilter

    from fer_sweep.data import shift

    data = read_fer2013(mini_csv)
    stats = shift.usage_stats(data)
    for usage in ("Training", "PublicTest"):
        for key in ("pixel_std", "sharpness"):
            assert stats[usage][key] == pytest.approx(stats["PrivateTest"][key], rel=0.05)
    assert shift.main([str(mini_csv)]) == 0
    out = capsys.readouterr().out
    assert "the shared 10% sample of the original Kaggle fer2013.csv" in out and "no shift" in out

    # the defect of the blurred copy, made here: Training blurred (Gaussian, radius 1.5) and its contrast halved
    blurred = data.images.copy()
    for i in np.flatnonzero(data.usage == 0):
        face = Image.fromarray(blurred[i]).filter(ImageFilter.GaussianBlur(1.5))
        blurred[i] = (np.asarray(face, dtype=np.float32) * 0.5 + 64).astype(np.uint8)
    rows = [f"{e},{' '.join(map(str, img.ravel()))},{shift.USAGES[u]}"
            for e, img, u in zip(data.labels, blurred, data.usage)]
    (tmp_path / "blurred.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    assert shift.main([str(tmp_path / "blurred.csv")]) == 1
    out = capsys.readouterr().out
    assert "not a copy we recognise" in out and "SHIFT: the training images differ from the test images" in out
    assert "Use the original Kaggle fer2013.csv" in out
    train_part, test_part = (data.subset(np.flatnonzero(data.usage == u)) for u in (0, 2))
    assert shift.shift_warning(train_part, test_part) is None


def test_fingerprint_is_the_same_for_gz_plain_and_crlf_forms(mini_csv, tmp_path):
    """The original file is recognised in any lossless form; one changed pixel makes it another copy."""
    from fer_sweep.data.fingerprint import describe, fingerprint, known_copy

    text = gzip.decompress(mini_csv.read_bytes()).decode()
    (tmp_path / "plain.csv").write_text(text, newline="")
    (tmp_path / "crlf.csv").write_text(text.replace("\n", "\r\n"), newline="")
    prints = {fingerprint(read_fer2013(p)) for p in (mini_csv, tmp_path / "plain.csv", tmp_path / "crlf.csv")}
    assert prints == {"a80f975efc0c5c54"} and known_copy("a80f975efc0c5c54")[0] == "kaggle_mini"
    data = read_fer2013(mini_csv)
    data.images[5, 10, 10] ^= 1
    assert fingerprint(data) not in prints and "not a copy we recognise" in describe(data)
