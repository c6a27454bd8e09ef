"""The one interface every inference backend implements.

The pipeline only ever talks to an :class:`Engine`; ONNX Runtime (CPU), PyTorch
(CPU/CUDA) and TensorRT are interchangeable behind it.  The contract is the
student ONNX contract: ``frames`` [N,3,H,W] float32 RGB in 0..1 and ``style``
[N,100] float32 in, [N,3,H,W] float32 in 0..1 out.  Engines that can do better
(uint8 in and out on a GPU, so no float frame crosses PCIe) say so through
``EngineInfo.uint8_io`` and implement :meth:`Engine.infer_uint8` as well.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

STYLE_DIM = 100


class EngineError(RuntimeError):
    """A backend cannot be created or cannot run; the message is for the user."""


def one_line(exc: BaseException) -> str:
    """First line of an exception's text, or its type name when it has none: every user-facing error is one line.

    Defined here, in the bottom layer, so engines and everything above them share one definition."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ModelSpec:
    """Which network to run and where its files are; `streamer.model_registry` turns `--model` into one."""

    name: str                     # "student", "teacher", "identity", or the file's stem
    kind: str                     # "student" (student contract), "teacher", "identity"
    onnx: Path | None = None      # ONNX graph (onnxruntime, tensorrt)
    weights: Path | None = None   # torch weights (torch backend)


@dataclass(frozen=True)
class EngineInfo:
    backend: str                  # "onnxruntime", "torch", "tensorrt", "identity"
    model: str                    # model name (e.g. "student", "teacher") or path
    device: str                   # "cpu", "cuda:0 NVIDIA H100 80GB HBM3", ...
    precision: str = "fp32"       # "fp32" or "fp16"
    min_side: int = 32            # smallest H or W the network accepts
    max_side: int | None = None   # largest H or W (the teacher is fixed at 384), None = any
    max_batch: int = 1 << 16      # largest N in one call
    uint8_io: bool = False        # implements infer_uint8 (NHWC uint8 RGB in and out)


@runtime_checkable
class Engine(Protocol):
    info: EngineInfo

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        """frames [N,3,H,W] float32 0..1, style [N,100] or [1,100] float32 -> [N,3,H,W] float32 0..1."""

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        """Run once at this shape so the first real frame is not slow (allocations, autotuning)."""

    def close(self) -> None:
        """Release sessions, device memory and streams."""


def check_inputs(info: EngineInfo, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Validate the contract once, in one place, and broadcast a single style to the batch."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise EngineError(f"{info.backend}: frames must be [N,3,H,W], got {list(frames.shape)}")
    n, _, h, w = frames.shape
    if min(h, w) < info.min_side:
        raise EngineError(f"{info.backend}: frame {w}x{h} is smaller than the network's minimum side {info.min_side}px")
    if info.max_side is not None and max(h, w) > info.max_side:
        raise EngineError(f"{info.backend}: frame {w}x{h} exceeds the network's maximum side {info.max_side}px")
    style = np.asarray(style, dtype=np.float32).reshape(-1, STYLE_DIM)
    if style.shape[0] == 1 and n > 1:
        style = np.broadcast_to(style, (n, STYLE_DIM))
    if style.shape[0] != n:
        raise EngineError(f"{info.backend}: {n} frames but {style.shape[0]} style vectors")
    return np.ascontiguousarray(style)


def pad_to_multiple(frames: np.ndarray, multiple: int) -> tuple[np.ndarray, int, int]:
    """Reflect-pad H and W up to a multiple (strided networks need it); returns the padded batch and the original H, W."""
    h, w = frames.shape[2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    return frames, h, w


class IdentityEngine:
    """Returns its input: measures pipeline overhead and drives tests that need a trivially checkable engine."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.info = EngineInfo(backend="identity", model="identity", device="cpu")
        self._delay_s = delay_s

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        check_inputs(self.info, frames, style)
        if self._delay_s:
            time.sleep(self._delay_s)
        return frames

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
