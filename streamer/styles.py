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

import numpy as np

from engines.base import STYLE_DIM
from engines.onnxruntime import make_session, teacher_model_dir
from streamer.errors import InputError
from streamer.media_files import IMAGE_EXTENSIONS, center_square, is_image, read_image

PREDICTOR_SIDE = 256
BUNDLED_DIR = Path(__file__).parent / "assets" / "styles"


def bundled_styles() -> dict[str, Path]:
    """Bundled public-domain paintings by name (file stem)."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.iterdir()) if is_image(p)}


def resolve_style(spec: str) -> Path:
    """A path to an image, or the name of a bundled style."""
    path = Path(spec)
    if path.suffix.lower() in IMAGE_EXTENSIONS or os.sep in spec or path.exists():
        if path.is_dir():
            raise InputError(f"{spec}: a folder, not a style image")
        if not path.is_file():
            raise InputError(f"{spec}: style image not found")
        return path
    styles = bundled_styles()
    if spec in styles:
        return styles[spec]
    raise InputError(f"{spec}: not an image file nor a bundled style (bundled: {', '.join(styles)})")


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
            self._cache[key] = self.encode_image(read_image(path))
        return self._cache[key]
