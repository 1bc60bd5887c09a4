"""Tests for the built-in synthetic FER-like dataset (fer_sweep.data.synthetic)."""
import numpy as np
import pytest

from fer_sweep.data.arrays import EMOTIONS, USAGES, FERArrays
from fer_sweep.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data() -> FERArrays:
    """One default-size dataset shared by the tests (drawing it takes well under a second)."""
    return make_synthetic()


def test_shapes_dtypes_and_usage_counts(data):
    n = 2872 + 361 + 360
    assert data.images.shape == (n, 48, 48) and data.images.dtype == np.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert data.usage.shape == (n,) and data.usage.dtype == np.int8
    assert np.bincount(data.usage, minlength=3).tolist() == [2872, 361, 360]
    # Rows come grouped: all Training, then PublicTest, then PrivateTest.
    assert np.all(np.diff(data.usage) >= 0)
    assert data.class_names == EMOTIONS and data.source == "synthetic"
    assert data.meta == {"generator": "fer_sweep.synthetic v1", "seed": 0}


def test_custom_sizes():
    small = make_synthetic(n_train=50, n_public=20, n_private=0, seed=5)
    assert len(small) == 70
    assert np.bincount(small.usage, minlength=3).tolist() == [50, 20, 0]


def test_every_class_in_every_usage_and_stratified(data):
    for u, name in enumerate(USAGES):
        counts = np.bincount(data.labels[data.usage == u], minlength=len(EMOTIONS))
        assert len(counts) == len(EMOTIONS), name
        assert counts.min() >= 1, name
        assert counts.max() - counts.min() <= 1, name  # stratified: near-equal per class


def test_rows_are_shuffled_within_usage(data):
    train = data.labels[data.usage == 0]
    assert not np.array_equal(train, np.sort(train))
    assert not np.array_equal(train, np.arange(len(train)) % len(EMOTIONS))


def test_deterministic_per_seed():
    a = make_synthetic(70, 14, 14, seed=3)
    b = make_synthetic(70, 14, 14, seed=3)
    c = make_synthetic(70, 14, 14, seed=4)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.usage, b.usage)
    assert not np.array_equal(a.images, c.images)
    assert c.meta["seed"] == 4


def test_pixel_range_is_used(data):
    img = data.images
    assert img.min() < 30 and img.max() > 225
    assert img.std() > 30
    # Each image varies too (not a flat fill).
    assert np.all(img.reshape(len(img), -1).std(axis=1) > 3)


def test_class_changes_mouth_region(data):
    """Weak check that the class moves geometry: the mouth area differs in brightness between classes.

    Brightness is taken relative to the face area of the same image, to cancel per-image lighting.
    Surprise (open round mouth) and fear (open mouth) should be darker there than neutral (closed line).
    """
    img = data.images.astype(np.float64)
    rel = img[:, 30:40, 16:32].mean(axis=(1, 2)) - img[:, 8:40, 8:40].mean(axis=(1, 2))
    per_class = np.array([rel[data.labels == c].mean() for c in range(len(EMOTIONS))])
    assert per_class.max() - per_class.min() > 5.0
    neutral, surprise, fear = (EMOTIONS.index(k) for k in ("neutral", "surprise", "fear"))
    assert per_class[surprise] < per_class[neutral] - 3.0
    assert per_class[fear] < per_class[neutral] - 3.0
