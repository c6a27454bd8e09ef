"""What a live run measures: capture-to-sink latency, frames in and out, drops, the per-second line, the result.

Kept apart from the session loop so the loop reads as "open, run, stop" and the numbers have one home.
Latency is ``time.perf_counter()`` at the sink minus the frame's capture time.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from streamer.pipeline import Frame, Stats

LATENCY_KEEP = 200_000             # latencies kept for the exit percentiles (~2 h at 30 fps)


def percentiles(values_s: list[float]) -> dict[str, float]:
    """{p50, p95, p99, max} in milliseconds (empty -> zeros)."""
    if not values_s:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    a = np.asarray(values_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1),
            "max": round(float(a.max()), 1)}


@dataclass
class LiveResult:
    source: str
    sinks: list[str]
    width: int = 0
    height: int = 0
    source_fps: float = 0.0
    processing: list[int] | None = None
    backend: str = ""
    model: str = ""
    style: str = ""
    strength: float = 1.0
    smooth: str = "off"
    seconds: float = 0.0
    input_fps: float = 0.0
    output_fps: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    skipped: int = 0                                      # frames a file source skipped to keep its clock
    reconnects: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    stage_ms_per_frame: dict[str, float] = field(default_factory=dict)
    ended: str = ""                                       # end of source | quit | duration | interrupted | error
    adaptive: list[dict] = field(default_factory=list)    # every processing-size change: {at_s, size, smooth, reason}
    failed_sinks: list[str] = field(default_factory=list) # "LABEL: problem" for each sink dropped mid-run

    def as_dict(self) -> dict:
        return asdict(self)


class LiveStats:
    """Runner counters plus latencies; ``on_frame`` runs in the sink thread, ``line`` in the main thread."""

    def __init__(self) -> None:
        self.runner = Stats()
        self._latencies: list[float] = []
        self._recent: list[float] = []
        self._last = (time.perf_counter(), 0, 0, 0)       # (time, frames_in, frames_out, dropped) at the last line
        self.shown_fps = 0.0                              # for the window overlay
        self.shown_p50 = 0.0
        self._cost_mark: tuple[dict, dict, int] = ({}, {}, 0)   # (busy, frames, dropped) at the last window_cost

    def on_frame(self, frame: Frame) -> None:
        latency = time.perf_counter() - frame.capture_time
        if len(self._latencies) >= LATENCY_KEEP:
            del self._latencies[: LATENCY_KEEP // 2]
        self._latencies.append(latency)
        self._recent.append(latency)

    def start(self) -> None:
        self._last = (time.perf_counter(), 0, 0, 0)

    def window_cost(self, stages: tuple[str, ...]) -> tuple[float, int]:
        """Since the last call: busy ms per frame summed over ``stages``, and the frames dropped."""
        s = self.runner
        busy, frames, dropped = dict(s.busy), dict(s.frames), s.dropped
        b0, f0, d0 = self._cost_mark
        self._cost_mark = (busy, frames, dropped)
        ms = sum(1000.0 * (busy.get(k, 0.0) - b0.get(k, 0.0)) / max(frames.get(k, 0) - f0.get(k, 0), 1)
                 for k in stages)
        return ms, dropped - d0

    def line(self, now: float, style: str, strength: float, smooth: str, size: tuple[int, int]) -> str:
        """The per-second stats line (fps in and out since the last line, drops, latency of those frames)."""
        t0, fin, fout, drop = self._last
        dt = max(now - t0, 1e-6)
        recent, self._recent = self._recent, []
        s = self.runner
        lat = percentiles(recent)
        self.shown_fps, self.shown_p50 = (s.frames_out - fout) / dt, lat["p50"]
        self._last = (now, s.frames_in, s.frames_out, s.dropped)
        return (f"in {(s.frames_in - fin) / dt:5.1f} fps  out {self.shown_fps:5.1f} fps  "
                f"dropped {s.dropped - drop:3d} ({s.dropped} total)  latency p50 {lat['p50']:5.0f} ms "
                f"p95 {lat['p95']:5.0f} ms  {size[0]}x{size[1]}  style {style} x{strength:.1f}  smooth {smooth}")

    def latency_ms(self) -> dict[str, float]:
        return percentiles(self._latencies)
