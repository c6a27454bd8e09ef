"""Synthetic-motion clips with EXACT optical flow, made from a still picture.

Each frame is an affine view (pan, zoom, rotation) of one picture, so for every
pixel we know where it was in the previous frame.  Sensor noise and a small
global brightness change are added after the warp, as a camera would.  Used by
benchmarks/temporal.py (real photos) and by the tests (bundled style images).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamer.warp import pixel_grid


@dataclass(frozen=True)
class Motion:
    """Per-frame camera motion: pixels of pan (dx, dy), zoom factor, rotation in degrees."""
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0
    rot_deg: float = 0.0


MOTIONS = {
    "pan": Motion(dx=2.0),
    "pan_diag": Motion(dx=1.5, dy=1.0),
    "zoom": Motion(zoom=1.01),
    "rotate": Motion(rot_deg=0.5),
    "pan_zoom_rot": Motion(dx=1.0, dy=-0.5, zoom=1.005, rot_deg=-0.3),
    "static": Motion(),
}


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]          # HxWx3 uint8 RGB
    flows_back: list[np.ndarray | None]   # [t]: flow from frame t to frame t-1 (None for t=0)
    flows_fwd: list[np.ndarray | None]    # [t]: flow from frame t-1 to frame t (None for t=0)


def _affine(t: int, m: Motion, photo_center: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """3x3 matrix mapping picture coordinates to frame-t coordinates."""
    w, h = frame_size
    cam = photo_center + t * np.array([m.dx, m.dy])            # picture point at the frame centre
    a = np.deg2rad(t * m.rot_deg)
    s = m.zoom ** t
    rs = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    mat = np.eye(3)
    mat[:2, :2] = rs
    mat[:2, 2] = np.array([(w - 1) / 2, (h - 1) / 2]) - rs @ cam
    return mat


def _flow_from(mat: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Flow x -> mat(x) - x on a pixel grid."""
    pts = grid @ mat[:2, :2].T.astype(np.float32) + mat[:2, 2].astype(np.float32)
    return np.ascontiguousarray(pts - grid, dtype=np.float32)


def make_clip(picture: np.ndarray, motion: Motion | str, n_frames: int, size: tuple[int, int] = (384, 384), *,
              noise_sigma: float = 2.0, brightness: float = 0.03, seed: int = 0, name: str | None = None) -> Clip:
    """A clip of ``n_frames`` (width, height = ``size``) moving over ``picture`` (HxWx3 uint8 RGB).

    The picture is first scaled so that it covers every frame of the clip (no border ever
    enters the view, so the flow is exact everywhere); ``brightness`` is the amplitude of a
    slow sinusoidal gain change; ``noise_sigma`` is Gaussian sensor noise in gray levels.
    """
    if isinstance(motion, str):
        name = name or motion
        motion = MOTIONS[motion]
    w, h = size
    # Worst-case extent of the view over the clip, in picture pixels at scale 1.
    travel = (n_frames - 1) * np.hypot(motion.dx, motion.dy)
    diag = np.hypot(w, h) / min(1.0, motion.zoom ** (n_frames - 1))
    need = diag + 2 * travel + 8
    scale = need / min(picture.shape[:2])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    pic = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=interp)
    center = np.array([(pic.shape[1] - 1) / 2, (pic.shape[0] - 1) / 2])

    rng = np.random.default_rng(seed)
    grid = pixel_grid(h, w)
    mats = [_affine(t, motion, center, size) for t in range(n_frames)]
    frames, back, fwd = [], [None], [None]
    for t, mat in enumerate(mats):
        img = cv2.warpAffine(pic, mat[:2], (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        img *= 1.0 + brightness * np.sin(2 * np.pi * t / 12.0)
        if noise_sigma:
            img += rng.normal(0.0, noise_sigma, img.shape).astype(np.float32)
        frames.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
        if t:
            back.append(_flow_from(mats[t - 1] @ np.linalg.inv(mat), grid))
            fwd.append(_flow_from(mat @ np.linalg.inv(mats[t - 1]), grid))
    return Clip(name or "clip", frames, back, fwd)
