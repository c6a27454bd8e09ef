"""Live quality that adapts to the machine: the processing size moves along a ladder to hold the camera's rate.

Video-call software does this; a live stylizer that drops a quarter of its frames on a slower CPU instead is
broken there. Once a second the live session hands :meth:`AdaptiveSize.update` what the last second cost:

* **down, quickly**: when the work per frame (infer + smooth busy time, the stages that scale with the pixels)
  passes ``high`` x the frame interval, or frames were dropped, one step down the ladder at once;
* **up, slowly**: only after ``calm_s`` seconds in a row below ``low`` x the interval, *and* only when the
  cost predicted for the next size up (scaled by its pixel count) stays under ``high`` x the interval, so a
  step up is not followed by a step back down (hysteresis);
* never more than one step per ``min_gap_s``;
* last resort: at the bottom of the ladder and still too slow, flow smoothing gives way to EMA.

The size is read by the stages through :class:`ProcessingSize` (an attribute swap, no lock, no engine restart);
the smoother resets itself on the size change, so no ghost of the old size is blended in.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

LADDER = (720, 640, 540, 480, 400, 320)     # longer side, px


class ProcessingSize:
    """The (w, h) the network sees, changeable while the pipeline runs; stages read ``.value`` once per frame."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.value = size

    def set(self, size: tuple[int, int]) -> None:
        self.value = size


def scaled(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The input scaled (never up) so its longer side is ``long_side``."""
    s = min(1.0, long_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


@dataclass
class Change:
    at_s: float                 # seconds since the start
    size: list[int]             # the new (w, h)
    smooth: str                 # the smoothing mode from then on
    reason: str

    def as_dict(self) -> dict:
        return {"at_s": round(self.at_s, 1), "size": self.size, "smooth": self.smooth, "reason": self.reason}


@dataclass
class AdaptiveSize:
    """Picks the processing size for a ``width`` x ``height`` source delivering ``fps`` frames a second."""

    width: int
    height: int
    fps: float
    start_long_side: int = LADDER[0]
    high: float = 0.85            # above this share of the frame interval: step down
    low: float = 0.55             # below this for calm_s: consider a step up
    calm_s: float = 3.0
    min_gap_s: float = 1.0
    smooth: str = "flow"
    min_side: int = 32
    start: float | None = None    # perf_counter() of the run's start (default: now); change times count from it
    control: ProcessingSize | None = None   # the size the stages read; moved by this controller (default: a new one)
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        native = max(self.width, self.height)
        sides = sorted({min(s, native) for s in LADDER if s <= max(self.start_long_side, LADDER[-1])}, reverse=True)
        self.ladder = [s for s in sides if min(scaled(self.width, self.height, s)) >= self.min_side] or [sides[-1]]
        self.index = 0
        self.size = self.control or ProcessingSize((0, 0))
        self.size.set(scaled(self.width, self.height, self.ladder[0]))
        self._last_change = -1e9
        self._calm_since: float | None = None
        self._t0 = time.perf_counter() if self.start is None else self.start
        self._lock = threading.Lock()

    @property
    def interval_ms(self) -> float:
        return 1000.0 / max(self.fps, 1e-6)

    def update(self, work_ms_per_frame: float, dropped: int, now: float | None = None) -> Change | None:
        """One second's cost of the size-dependent stages per frame, and the frames dropped in that second."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            load = work_ms_per_frame / self.interval_ms
            if load > self.high or dropped > 0:
                self._calm_since = None
                if now - self._last_change < self.min_gap_s:
                    return None
                if self.index + 1 < len(self.ladder):
                    return self._move(+1, now, f"{work_ms_per_frame:.0f} ms/frame of {self.interval_ms:.0f}"
                                                f"{f', {dropped} dropped' if dropped else ''}")
                if self.smooth == "flow":
                    self.smooth = "ema"
                    return self._record(now, "smallest size still too slow: flow smoothing -> ema")
                return None
            if load < self.low and self.index > 0:
                self._calm_since = self._calm_since if self._calm_since is not None else now
                bigger = scaled(self.width, self.height, self.ladder[self.index - 1])
                w, h = self.size.value
                predicted = load * (bigger[0] * bigger[1]) / (w * h)
                if now - self._calm_since >= self.calm_s and now - self._last_change >= self.min_gap_s \
                        and predicted < self.high:
                    self._calm_since = None
                    return self._move(-1, now, f"{work_ms_per_frame:.0f} ms/frame of {self.interval_ms:.0f}, "
                                               f"headroom for {bigger[0]}x{bigger[1]}")
            else:
                self._calm_since = None
            return None

    def _move(self, step: int, now: float, reason: str) -> Change:
        self.index += step
        self.size.set(scaled(self.width, self.height, self.ladder[self.index]))
        return self._record(now, ("down: " if step > 0 else "up: ") + reason)

    def _record(self, now: float, reason: str) -> Change:
        self._last_change = now
        change = Change(now - self._t0, list(self.size.value), self.smooth, reason)
        self.changes.append(change)
        return change
