"""Optical-flow helpers shared by the runtime smoother and the warping-error metric (streamer.metrics).

Conventions (one place, so nobody flips a sign):
- A flow is HxWx2 float32 (dx, dy) in pixels of the image it is defined on.
- ``backward_warp(img, flow)`` samples ``img`` at ``x + flow(x)``: with the flow
  from frame t to frame t-1 (``dis_flow(cur, prev)``) it brings frame t-1 onto
  frame t.
- ``occlusion_mask(flow_ref, flow_other)`` is the forward-backward check of
  Ruder et al. 2016 as used by Lai et al. 2018 (fast_blind_video_consistency,
  ``detect_occlusion``): ``flow_ref`` goes from the reference frame to the other
  frame, ``flow_other`` back.  True = occluded (excluded from the warping error).
"""
from __future__ import annotations

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def make_dis(preset: str = "fast"):
    try:
        return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    except KeyError:
        raise ValueError(f"unknown DIS preset {preset!r}; use one of {', '.join(DIS_PRESETS)}") from None


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def dis_flow(src: np.ndarray, dst: np.ndarray, dis=None, preset: str = "medium") -> np.ndarray:
    """Flow from ``src`` to ``dst`` (uint8 RGB or gray): ``src(x) ~ dst(x + flow(x))``."""
    dis = dis or make_dis(preset)
    return dis.calc(to_gray(src), to_gray(dst), None)


def pixel_grid(h: int, w: int) -> np.ndarray:
    """HxWx2 float32 of (x, y) pixel coordinates: add a flow to get a cv2.remap map."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.ascontiguousarray(np.dstack([xs, ys]))


def backward_warp(img: np.ndarray, flow: np.ndarray, *, interpolation: int = cv2.INTER_LINEAR,
                  border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """``img`` sampled at ``x + flow(x)`` (same size as ``flow``)."""
    h, w = flow.shape[:2]
    return cv2.remap(img, pixel_grid(h, w) + flow, None, interpolation, borderMode=border)


def outside_mask(flow: np.ndarray) -> np.ndarray:
    """True where ``x + flow(x)`` falls outside the frame (content that entered the view)."""
    h, w = flow.shape[:2]
    x = flow[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    y = flow[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    return (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)


def occlusion_mask(flow_ref: np.ndarray, flow_other: np.ndarray, *, outside: bool = True) -> np.ndarray:
    """Ruder et al. 2016 forward-backward check, as in Lai et al. 2018 (True = occluded).

    - inconsistent:     |w + w_o(x + w)|^2 > 0.01 (|w|^2 + |w_o(x + w)|^2) + 0.5
    - motion boundary:  |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002 (forward differences of w)
    - ``outside`` (our addition, Lai's code clamps instead): x + w leaves the frame.
    """
    w_ = flow_ref.astype(np.float32, copy=False)
    other = backward_warp(flow_other.astype(np.float32, copy=False), w_)
    mag_ref = (w_ ** 2).sum(-1)
    inconsistent = ((w_ + other) ** 2).sum(-1) > 0.01 * (mag_ref + (other ** 2).sum(-1)) + 0.5
    grad = np.zeros(w_.shape[:2], np.float32)
    dx = w_[:, :-1] - w_[:, 1:]
    dy = w_[:-1, :] - w_[1:, :]
    grad[:, :-1] += (dx ** 2).sum(-1)
    grad[:-1, :] += (dy ** 2).sum(-1)
    occluded = inconsistent | (grad > 0.01 * mag_ref + 0.002)
    if outside:
        occluded |= outside_mask(w_)
    return occluded
