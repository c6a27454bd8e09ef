"""Pixels in and out of the network: processing size, HWC uint8 <-> NCHW float32, the pipeline stages.

These functions are shared by the video pipeline and by single images, so both stylize alike.
"""
from __future__ import annotations

import cv2
import numpy as np

from engines.base import Engine, EngineInfo
from streamer.adaptive import ProcessingSize
from streamer.errors import InputError
from streamer.pipeline import Frame, Stage
from streamer.style_sources import StyleSource
from streamer.temporal import SwitchableSmoother

DEFAULT_MAX_SIZE = 720   # longer side on the CPU: 640x360 (and 1280x720 -> 720x405) run at or near native size
GPU_DEFAULT_MAX_SIZE = 3840   # on a GPU engine a 4K frame costs a few ms: native resolution up to 4K


def processing_size(width: int, height: int, max_size: int | None, info: EngineInfo, *, name: str = "input") -> tuple[int, int]:
    """(w, h) the network sees: the input scaled (never up) so its longer side is min(max_size, engine max).

    ``max_size`` None means DEFAULT_MAX_SIZE (GPU_DEFAULT_MAX_SIZE on a GPU engine); 0 means the input's own size."""
    default = GPU_DEFAULT_MAX_SIZE if info.device.startswith("cuda") else DEFAULT_MAX_SIZE
    wanted = default if max_size is None else (max_size or 1 << 30)
    limit = min(wanted, info.max_side or 1 << 30)
    if min(width, height) < info.min_side:
        raise InputError(f"{name}: {width}x{height} is smaller than the network needs "
                         f"({info.min_side} px on the shorter side)")
    scale = min(1.0, limit / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if min(w, h) < info.min_side:          # very elongated: keep the short side at the minimum if possible
        scale = info.min_side / min(width, height)
        w, h = max(info.min_side, round(width * scale)), max(info.min_side, round(height * scale))
        if max(w, h) > limit:
            if max_size and max(w, h) <= (info.max_side or 1 << 30):   # the user's limit, not the network's
                raise InputError(f"--max-size {max_size}: too small for {name} ({width}x{height}); its shorter side "
                                 f"needs {info.min_side} px, so use at least {max(w, h)}")
            raise InputError(f"{name}: aspect ratio {width}x{height} cannot fit the network "
                             f"({info.min_side}..{limit} px per side)")
    return w, h


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> size (w, h): area when shrinking, bilinear when enlarging; no copy when already that size."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    interp = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interp)


def to_nchw(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 RGB -> [3,h,w] float32 0..1 at size (w, h)."""
    chw = np.ascontiguousarray(resize_rgb(rgb, size).transpose(2, 0, 1), dtype=np.float32)
    chw *= np.float32(1 / 255)       # in place: one float frame per call, not two
    return chw


def to_rgb(chw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[3,h,w] float32 0..1 -> HxWx3 uint8 RGB at size (w, h)."""
    # OpenCV (SIMD, releases the GIL): ~9x faster than the numpy clip/round/astype chain at 640x360
    hwc = cv2.merge([np.asarray(c, np.float32) for c in chw])
    img = cv2.convertScaleAbs(cv2.max(hwc, 0.0), alpha=255.0)      # saturating, rounded
    if (img.shape[1], img.shape[0]) != size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    return img


def stylize_stages(engine: Engine, style: StyleSource, size: tuple[int, int] | ProcessingSize, *, batch: int = 1,
                   smoother: SwitchableSmoother | None = None) -> list[Stage]:
    """preprocess -> infer (batched) -> postprocess [-> smooth] for frames whose pixels are HxWx3 uint8 RGB.

    ``size`` is fixed for files; live passes a :class:`~streamer.adaptive.ProcessingSize` that its controller
    changes while frames flow (each frame keeps the size it was preprocessed at). Smoothing runs at the processing
    size, before the upscale to the frame's size: at 1280x720 processed at 720x405 that is a third of the pixels to
    warp and blend, and the result is the same picture.
    """
    current = size if isinstance(size, ProcessingSize) else ProcessingSize(size)

    def preprocess(frame: Frame) -> Frame:
        now = current.value
        small = resize_rgb(frame.pixels, now)
        if smoother is not None:
            frame.small = small
        frame.network_in = to_nchw(small, now)
        return frame

    def infer(frames: list[Frame]) -> list[Frame]:
        vec = style.for_frame(frames[0].pixels)
        start = 0
        while start < len(frames):        # frames of one batch can differ in size right after a size change
            end = start + 1
            while end < len(frames) and frames[end].network_in.shape == frames[start].network_in.shape:
                end += 1
            inputs = [f.network_in for f in frames[start:end]]
            batch = inputs[0][None] if len(inputs) == 1 else np.stack(inputs)   # batch 1: a view, no copy
            for f, y in zip(frames[start:end], engine.infer(batch, vec)):
                f.network_in, f.network_out = None, y
            start = end
        return frames

    def postprocess(frame: Frame) -> Frame:
        h, w = frame.pixels.shape[:2]
        out = frame.network_out
        frame.stylized = to_rgb(out, (out.shape[2], out.shape[1]) if smoother is not None else (w, h))
        frame.network_out = None
        return frame

    stages = [Stage.map("preprocess", preprocess),
              Stage("infer", infer, batch=max(1, min(batch, engine.info.max_batch))),
              Stage.map("postprocess", postprocess)]
    if smoother is not None:
        def smooth(frame: Frame) -> Frame:
            h, w = frame.pixels.shape[:2]
            out = smoother(frame.small, frame.stylized)
            frame.small = None
            frame.stylized = out if out.shape[:2] == (h, w) else cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
            return frame

        stages.append(Stage.map("smooth", smooth))
    return stages


def stylize_image(engine: Engine, style: StyleSource, rgb: np.ndarray, max_size: int | None, *, name: str = "image") -> np.ndarray:
    """One HxWx3 uint8 RGB image through the same pre/infer/post steps as video frames."""
    h, w = rgb.shape[:2]
    size = processing_size(w, h, max_size, engine.info, name=name)
    out = engine.infer(to_nchw(rgb, size)[None], style.for_frame(rgb))[0]
    return to_rgb(out, (w, h))
