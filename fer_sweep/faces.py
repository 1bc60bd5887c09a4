"""Faces in photos -> FER2013-style 48x48 grayscale crops.

Detection uses OpenCV's Haar cascade `haarcascade_frontalface_default.xml`, which opencv-python(-headless)
4.x ships under `cv2.data.haarcascades` (no download). OpenCV 5 dropped both the cascade classifier and the
XML files: there detection reports itself unavailable (`detector_problem()`), and images that are face crops
already, or `detect=False`, still work.

Rules: an image no larger than FACE_CROP_MAX on both sides is a face crop already (FER2013 images are 48x48)
and is used whole; a larger image is searched for faces, each cropped square with a small margin.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from fer_sweep.data.arrays import IMAGE_SIZE

Box = Tuple[int, int, int, int]  # x, y, w, h in the image's pixels

CASCADE_FILE = "haarcascade_frontalface_default.xml"
FACE_CROP_MAX = 64     # images at most this size on both sides are taken as face crops, whole
DETECT_MAX_SIDE = 1280  # larger photos are searched at this size (speed); boxes are mapped back
#: Extra border around the detector's box, as a fraction of its side. FER2013 crops are ~1.04x the Haar box
#: (median over the shared folder sample pasted into photos), so 0.02 per side reproduces their framing.
MARGIN = 0.02


class NoFaceFound(Exception):
    """A photo in which the detector found no face."""


class DetectorUnavailable(Exception):
    """This OpenCV build has no Haar cascade (OpenCV 5 removed it) or its XML file is missing."""


@dataclass
class Face:
    box: Box
    pixels: np.ndarray  # uint8 (48, 48)


def read_gray(path: str | Path) -> np.ndarray:
    """Decode any image PIL reads as uint8 grayscale (H, W), upright as its EXIF orientation says."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("L"), dtype=np.uint8)


def resize_face(gray: np.ndarray) -> np.ndarray:
    """Any grayscale image -> 48x48, resized exactly as the FER2013 folder reader does (PIL bilinear)."""
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return np.ascontiguousarray(gray)
    from PIL import Image

    return np.asarray(Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.uint8)


def is_face_crop(gray: np.ndarray) -> bool:
    return max(gray.shape) <= FACE_CROP_MAX


def faces_in(gray: np.ndarray, detect: bool = True, whole_if_no_face: bool = False,
             margin: float = MARGIN) -> List[Face]:
    """The 48x48 faces of one image by the module's rules; raises NoFaceFound or DetectorUnavailable."""
    whole = Face((0, 0, gray.shape[1], gray.shape[0]), resize_face(gray))
    if not detect or is_face_crop(gray):
        return [whole]
    boxes = find_faces(gray)
    if boxes:
        return [Face(box, crop_face(gray, box, margin)) for box in boxes]
    if whole_if_no_face:
        return [whole]
    raise NoFaceFound("no face found")


# ------------------------------------------------------------------------------------------ detection
_lock = threading.RLock()   # guards importing cv2 and building classifiers (see _cv2)
_local = threading.local()  # one classifier per thread: OpenCV does not promise that sharing one is safe


def detector_problem() -> Optional[str]:
    """None when face detection works here, else why not (for one clear message instead of a traceback)."""
    try:
        _cascade()
    except DetectorUnavailable as exc:
        return str(exc)
    return None


def _cv2():
    """cv2, imported under the lock: its first import puts a half-built module in sys.modules, so a decoding
    thread importing it meanwhile got a cv2 without `cv2.data` and reported the cascade missing (#16)."""
    from fer_sweep.extras import require

    with _lock:
        return require("cv2", "predict (face detection)")


def _cascade():
    """This thread's classifier, built under the lock on first use (once per thread, so detection runs in
    parallel without sharing one object)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        with _lock:
            cascade = _local.cascade = _load_cascade()
    return cascade


def _load_cascade():
    cv2 = _cv2()
    hint = "install opencv-python-headless<5, or pass --no-detect for images that are face crops"
    if not hasattr(cv2, "CascadeClassifier"):
        raise DetectorUnavailable(f"face detection unavailable: OpenCV {cv2.__version__} has no Haar cascade "
                                  f"classifier ({hint})")
    path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / CASCADE_FILE
    cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
    if cascade is None or cascade.empty():
        raise DetectorUnavailable(f"face detection unavailable: {path} is missing or unreadable ({hint})")
    return cascade


def find_faces(gray: np.ndarray) -> List[Box]:
    """Frontal faces in a grayscale image as (x, y, w, h), left to right; large photos are searched shrunk."""
    cv2 = _cv2()
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
    boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes)


def crop_face(gray: np.ndarray, box: Box, margin: float = MARGIN) -> np.ndarray:
    """The square around `box`, grown by `margin` per side, as 48x48; edges are repeated past the border."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    pad = max(0, -x0, -y0, x0 + side - gray.shape[1], y0 + side - gray.shape[0])
    if pad:
        gray = np.pad(gray, pad, mode="edge")
    crop = gray[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    return resize_face(np.ascontiguousarray(crop))
