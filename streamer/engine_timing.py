"""Timing engines side by side: real-pixel input batches, interleaved timed calls, medians.

Shared by ``streamer bench`` and the peers it is compared with (:mod:`streamer.peers`), so ours and
theirs are timed by the same code, in the same process, on the same pixels.
"""
from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

from engines.base import EngineInfo
from streamer.sample_media import painting


def sample_batch(width: int, height: int, batch: int) -> np.ndarray:
    """[batch,3,h,w] float32 0..1 of real pixels (a bundled painting), so no engine sees a flat test card."""
    img = cv2.resize(painting("hokusai_bridge"), (width, height), interpolation=cv2.INTER_AREA)
    chw = img.transpose(2, 0, 1).astype(np.float32) / 255.0
    return np.ascontiguousarray(np.broadcast_to(chw, (batch, 3, height, width)))


def time_engines(cases: dict[str, tuple], style: np.ndarray, warmup: int, repeats: int) -> dict[str, list[float]]:
    """{name: (engine, frames)} -> {name: [seconds per call]}: warm-up calls, then timed calls round-robin,
    so background load on a shared machine hits every case alike."""
    for _ in range(warmup):
        for engine, frames in cases.values():
            engine.infer(frames, style)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (engine, frames) in cases.items():
            t0 = time.perf_counter()
            engine.infer(frames, style)
            times[name].append(time.perf_counter() - t0)
    return times


def speed(times: list[float], batch: int) -> dict:
    med = statistics.median(times)
    return {"fps": round(batch / med, 3), "ms_per_frame": round(1000 * med / batch, 3),
            "runs_ms": [round(1000 * t, 2) for t in times]}


def fit_size(width: int, height: int, info: EngineInfo) -> tuple[int, int]:
    """The size the network runs at: as asked, or scaled down to the engine's maximum side (the teacher's 384)."""
    limit = info.max_side
    if limit is None or max(width, height) <= limit:
        return width, height
    s = limit / max(width, height)
    return max(info.min_side, round(width * s)), max(info.min_side, round(height * s))
