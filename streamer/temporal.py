"""Temporal smoothing between consecutive stylized frames (stub: 'off' and 'ema'; flow-guided lands with the temporal issue).

Interface the pipeline relies on:
    smoother = make_smoother(mode)            # "off" | "ema" | "flow"
    out = smoother(frame_rgb, stylized_rgb)   # HxWx3 uint8 RGB, same size; returns HxWx3 uint8
    smoother.reset()                          # forget the previous frame (seek, scene cut, style switch)
Causal, one frame of memory, so it serves live sources and files alike.
"""
from __future__ import annotations

import numpy as np

SMOOTH_MODES = ("off", "ema", "flow")


class NoSmoothing:
    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        return stylized

    def reset(self) -> None:
        pass


class EmaSmoothing:
    """out_t = a*y_t + (1-a)*out_{t-1}: cheap, but leaves ghost trails on motion."""

    def __init__(self, alpha: float = 0.7) -> None:
        self.alpha = alpha
        self._prev: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        cur = stylized.astype(np.float32)
        if self._prev is not None and self._prev.shape == cur.shape:
            cur = self.alpha * cur + (1.0 - self.alpha) * self._prev
        self._prev = cur
        return np.clip(cur + 0.5, 0, 255).astype(np.uint8)

    def reset(self) -> None:
        self._prev = None


def make_smoother(mode: str):
    if mode == "off":
        return NoSmoothing()
    if mode in ("ema", "flow"):
        return EmaSmoothing()
    raise ValueError(f"unknown smoothing mode {mode!r}; use one of {', '.join(SMOOTH_MODES)}")
