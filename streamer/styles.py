"""Style images -> 100-d style vectors, with the bundled styles and a small cache.

The vector comes from the teacher's style predictor (Magenta's MobileNetV2,
256x256 NHWC), computed once per style: this is what lets one student model and
one engine serve every style and switch styles without touching the engine.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from engines.base import STYLE_DIM
from engines.onnxruntime import make_session, teacher_model_dir

PREDICTOR_SIDE = 256
BUNDLED_DIR = Path(__file__).parent / "assets" / "styles"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class StyleError(ValueError):
    """A style cannot be resolved or read; the message names the file."""


def bundled_styles() -> dict[str, Path]:
    """Bundled public-domain paintings by name (file stem)."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}


def resolve_style(spec: str) -> Path:
    """A path to an image, or the name of a bundled style."""
    path = Path(spec)
    if path.suffix.lower() in IMAGE_EXTENSIONS or os.sep in spec or path.exists():
        if not path.is_file():
            raise StyleError(f"{spec}: style image not found")
        return path
    styles = bundled_styles()
    if spec in styles:
        return styles[spec]
    raise StyleError(f"{spec}: not an image file nor a bundled style (bundled: {', '.join(styles)})")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB, or raise a one-line StyleError."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise StyleError(f"{path}: file not found")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise StyleError(f"{path}: cannot read image (not an image, or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def center_square(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top:top + s, left:left + s]
    interp = cv2.INTER_AREA if s > side else cv2.INTER_CUBIC
    return cv2.resize(crop, (side, side), interpolation=interp)


class StyleEncoder:
    """Image -> style vector through the teacher's predictor; thread-safe, cached by file content."""

    def __init__(self, threads: int | None = None) -> None:
        self._session = make_session(teacher_model_dir() / "arbitrary_predict.onnx", threads)
        self._input = self._session.get_inputs()[0].name
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode_image(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> [1,100] float32 (center square crop at 256x256, as the predictor was trained)."""
        x = center_square(rgb, PREDICTOR_SIDE).astype(np.float32)[None] / 255.0
        with self._lock:
            out = self._session.run(None, {self._input: x})[0]
        return out.reshape(1, STYLE_DIM).astype(np.float32)

    def encode(self, spec: str) -> np.ndarray:
        """A style name or image path -> [1,100] float32."""
        path = resolve_style(spec)
        key = hashlib.sha1(path.read_bytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.encode_image(read_rgb(path))
        return self._cache[key]
