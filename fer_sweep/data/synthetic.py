"""A built-in synthetic FER-like dataset, drawn procedurally so the project runs with no data downloaded.

Faces are implicit shapes (signed distances to a face ellipse, eyes, brows, mouth) evaluated on the 48x48
grid for a whole batch at once. The class only moves continuous GEOMETRY (mouth curve/opening, brow
height/angle, eye opening, lip asymmetry, nose wrinkles), jittered so classes overlap; pose, lighting,
noise, background and occlusion are independent of the class, so a model has to read the expression.
"""
from __future__ import annotations

import numpy as np

from .arrays import EMOTIONS, IMAGE_SIZE, FERArrays

# Class-conditional mean geometry, one row per EMOTIONS entry, in face units (face half-height ~1).
#   lift: mouth-corner rise (+ smile, - frown)   open: mouth half-opening   width: mouth half-width
#   brow: brow raise above rest   inner: inner-brow lowering (+ angry, - worried)   eye: eye half-height
#   asym: one-sided upper-lip raise   wrinkle: nose-wrinkle strength
PARAM_NAMES = ("lift", "open", "width", "brow", "inner", "eye", "asym", "wrinkle")
CLASS_MEANS = np.array([
    # lift   open   width  brow   inner  eye    asym   wrinkle
    [-0.04, 0.000, 0.21, -0.07, 0.60, 0.050, 0.00, 0.3],  # angry: brows down to centre, tight mouth
    [-0.05, 0.020, 0.26, -0.05, 0.30, 0.040, 0.09, 1.0],  # disgust: raised lip on one side, wrinkles
    [-0.04, 0.050, 0.31, 0.09, -0.45, 0.095, 0.00, 0.0],  # fear: raised worried brows, wide eyes/mouth
    [0.12, 0.020, 0.30, 0.01, 0.00, 0.050, 0.00, 0.0],    # happy: smile
    [-0.10, 0.000, 0.25, 0.02, -0.50, 0.050, 0.00, 0.0],  # sad: frown, inner brows raised
    [0.00, 0.110, 0.16, 0.14, 0.00, 0.105, 0.00, 0.0],    # surprise: high brows, wide eyes, round mouth
    [0.00, 0.000, 0.26, 0.00, 0.00, 0.065, 0.00, 0.0],    # neutral: flat mouth, level brows
], dtype=np.float32)
# Per-sample jitter (std) of each parameter; large enough that neighbouring classes overlap.
PARAM_STD = np.array([0.04, 0.025, 0.035, 0.045, 0.28, 0.016, 0.035, 0.35], dtype=np.float32)
# Images per vectorised batch: small enough that temporaries stay in CPU cache (fastest). Changing it
# changes the random stream, i.e. which images a seed gives.
CHUNK = 64


def _soft(d: np.ndarray, inv_px: np.ndarray) -> np.ndarray:
    """Anti-aliased 0..1 fill from a signed distance d (<0 inside), ~1 pixel wide. Reuses d's memory."""
    d *= -inv_px
    d += 0.5
    return np.clip(d, 0.0, 1.0, out=d)


def _paint(img: np.ndarray, mask: np.ndarray, level: np.ndarray) -> None:
    """Alpha-blend a grey `level` over `img` (in place) where `mask` (0..1) is on."""
    diff = level - img
    diff *= mask
    img += diff


def _smooth_noise(rng: np.random.Generator, b: int, cells: int, amp: np.ndarray) -> np.ndarray:
    """Low-frequency texture: a coarse random grid bilinearly upsampled to 48x48 via two matrix products."""
    pos = np.linspace(0, cells - 1, IMAGE_SIZE)
    interp = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(cells)[None, :])).astype(np.float32)
    coarse = rng.standard_normal((b, cells, cells)).astype(np.float32)
    return interp @ coarse @ interp.T * amp


def _draw(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Render one batch of faces for `labels`; returns float32 (B, 48, 48) roughly in 0..1."""
    b = len(labels)

    def col(x):  # per-sample values shaped (B,1,1) so they broadcast against the pixel grid
        return np.asarray(x, dtype=np.float32).reshape(b, 1, 1)

    def uni(lo, hi):
        return col(rng.uniform(lo, hi, b))

    g = (np.arange(IMAGE_SIZE, dtype=np.float32) - (IMAGE_SIZE - 1) / 2) / (IMAGE_SIZE / 2)
    y, x = g[None, :, None], g[None, None, :]                      # image coords in [-1, 1], y down
    p = CLASS_MEANS[labels] + PARAM_STD * rng.standard_normal((b, len(PARAM_NAMES))).astype(np.float32)
    lift, opn, width, brow, inner, eye, asym, wrinkle = (col(p[:, i]) for i in range(len(PARAM_NAMES)))
    opn, asym, wrinkle = (np.maximum(a, 0.0) for a in (opn, asym, wrinkle))
    width, eye = np.clip(width, 0.10, 0.38), np.maximum(eye, 0.012)  # keep shapes drawable

    # Pose (class independent): shift, in-plane rotation +-15 deg, scale +-15%. (u, v) = face frame.
    cx, cy, inv_scale = uni(-0.12, 0.12), uni(-0.10, 0.12), 1.0 / uni(0.85, 1.15)
    th = np.deg2rad(uni(-15, 15))
    cos, sin = np.cos(th) * inv_scale, np.sin(th) * inv_scale
    u = cos * (x - cx) + sin * (y - cy)
    v = cos * (y - cy) - sin * (x - cx)
    au = np.abs(u)
    inv_px = (IMAGE_SIZE / 2.0) / inv_scale                        # 1 / (one pixel in face units)

    # Background grey + texture, then the elliptical face with its own skin tone and a slight 3D shading.
    img = uni(0.1, 0.9) + _smooth_noise(rng, b, 6, uni(0.0, 0.12))
    face_r2 = np.square(u / 0.76) + np.square(v / 0.98)
    skin = uni(0.45, 0.85)
    shaded = skin * (1.0 - 0.25 * face_r2)
    _paint(img, _soft((np.sqrt(face_r2) - 1.0) * 0.76, inv_px), shaded)
    dark, mid = skin * uni(0.15, 0.35), skin * uni(0.50, 0.70)

    # Eyes: ellipses whose half-height is the class's eye opening.
    ex = au - 0.30
    eye_r = np.sqrt(np.square(ex / 0.12) + np.square((v + 0.13) / eye))
    eye_r -= 1.0
    _paint(img, _soft(eye_r * np.minimum(eye, 0.12), inv_px), dark)

    # Brows: thick bars above the eyes; `inner` tilts them (inner end down = angry, up = sad/fear).
    brow_v = (-0.32 - brow + 0.30 * inner) - inner * au
    brow_d = np.maximum(np.abs(v - brow_v) - 0.04, np.abs(ex) - 0.15)
    _paint(img, _soft(brow_d, inv_px), dark)

    # Nose: a faint vertical shadow; disgust (and some angry) add horizontal wrinkles at the bridge.
    _paint(img, 0.6 * _soft(np.maximum(au - 0.03, np.abs(v - 0.14) - 0.12), inv_px), mid)
    wr = np.maximum(au - 0.10, np.abs(np.abs(v + 0.02) - 0.05) - 0.012)
    _paint(img, np.minimum(wrinkle, 1.0) * 0.8 * _soft(wr, inv_px), mid)

    # Mouth: a lip band along a parabola (corners lifted by `lift`, one side raised by `asym`),
    # thickened in the middle by `open`, with a dark interior when open.
    side = col(rng.choice([-1.0, 1.0], b))
    t = np.clip(u / width, -1.0, 1.0)
    t2 = np.square(t)
    centre = 0.42 - lift * t2 - asym * np.maximum(side * t, 0.0)
    half = 0.03 + opn * np.sqrt(1.0 - t2)
    mouth_d = np.maximum(np.abs(v - centre) - half, au - width)
    inside = _soft(mouth_d + 0.02, inv_px) * np.minimum(opn / 0.03, 1.0)
    _paint(img, _soft(mouth_d, inv_px), mid)
    _paint(img, inside, dark)

    # Lighting (gain, offset, linear gradient), sensor noise, and a random grey occluder in ~20%.
    img = img * uni(0.7, 1.2) + uni(-0.1, 0.1) + uni(-0.15, 0.15) * x + uni(-0.15, 0.15) * y
    img += rng.standard_normal(img.shape, dtype=np.float32) * uni(0.01, 0.06)
    occ = (rng.random(b) < 0.2).reshape(b, 1, 1)
    ow, oh = uni(0.3, 0.9), uni(0.3, 0.9)
    ox, oy = uni(-1.0, 1.0) - ow / 2, uni(-1.0, 1.0) - oh / 2
    box = occ & (x >= ox) & (x < ox + ow) & (y >= oy) & (y < oy + oh)
    return np.where(box, uni(0.0, 1.0), img)


def make_synthetic(n_train: int = 2872, n_public: int = 361, n_private: int = 360,
                   seed: int = 0) -> FERArrays:
    """Draw a FER2013-shaped synthetic dataset: Training, then PublicTest, then PrivateTest rows.

    Classes are stratified (near-equal counts) and shuffled within each Usage group; the same seed always
    gives the same arrays, so runs on synthetic data are reproducible.
    """
    rng = np.random.default_rng(seed)
    labels, usage = [], []
    for u, n in enumerate((n_train, n_public, n_private)):
        labels.append(rng.permutation(np.arange(n) % len(EMOTIONS)))
        usage.append(np.full(n, u, dtype=np.int8))
    labels_all = np.concatenate(labels).astype(np.int64)
    images = np.empty((len(labels_all), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, len(labels_all), CHUNK):
        batch = _draw(rng, labels_all[start:start + CHUNK])
        images[start:start + CHUNK] = np.clip(batch * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return FERArrays(images, labels_all, np.concatenate(usage), EMOTIONS, source="synthetic",
                     meta={"generator": "fer_sweep.synthetic v1", "seed": seed})
