"""Which files are images and which are videos, and the one image reader every part of streamer uses.

One list of extensions decides how ``convert`` treats a path, what a batch folder picks up, what
counts as a style image and what ``distill`` trains on; one reader turns any image OpenCV decodes
(grayscale, 16-bit, alpha, WebP, TIFF) into HxWx3 uint8 RGB or a one-line error naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from streamer.errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MP4_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov"})   # the ISO base media family: its index is a box (moov)
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
                              ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".gif", ".y4m"})


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links included), so that an output never overwrites an input."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def check_readable(path: Path) -> None:
    """Missing, directory, empty or unreadable -> InputError."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any image as HxWx3 uint8 RGB, or InputError naming the file."""
    path = Path(path)
    check_readable(path)
    data = np.fromfile(str(path), np.uint8)
    # a PNG cut short: said here, because libpng would print its own line to stderr before OpenCV gives up
    if data[:8].tobytes() == PNG_SIGNATURE and b"IEND" not in data.tobytes():
        raise InputError(f"{path}: a PNG cut short (no end chunk): the file is incomplete")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: not an image, or corrupt")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def center_square(img: np.ndarray, side: int) -> np.ndarray:
    """The largest centred square, resized to side x side (area when shrinking, cubic when enlarging)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top:top + s, left:left + s]
    interp = cv2.INTER_AREA if s > side else cv2.INTER_CUBIC
    return cv2.resize(crop, (side, side), interpolation=interp)
