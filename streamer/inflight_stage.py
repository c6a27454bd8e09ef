"""The GPU path's one stage: uint8 frames in and out of an engine that keeps batches in flight.

Used by :func:`streamer.assembly.assemble` instead of the CPU float stages (preprocess -> infer -> postprocess
-> smooth) when the engine says ``info.uint8_io`` and has ``submit_uint8``/``collect`` (the contract of
``engines.inflight``): TensorRT and PyTorch on CUDA, and ``engines.reference`` on the CPU, which runs the same
contract with the CUDA kernels' NumPy twins so this wiring is tested without a GPU.

    frame.pixels ──► shrink to the processing size ──► engine.submit_uint8 ──► ... several batches in flight
    frame.stylized ◄── back to the frame's size ◄───── engine.collect, in submission order ◄──┘

* **On the CPU, per frame**: the shrink to the processing size (``cv2`` area, the same call as the float path:
  the kernel's bilinear resize is not anti-aliased, and the smaller frame is also fewer bytes to upload), the
  flow estimate for flow smoothing (``FlowSmoothing.estimate``, from the inputs alone), and the enlargement back
  to the frame's size (cubic, as the float path) when the two differ.
* **On the device**: uint8 -> float NCHW, the network, rounding back to uint8, and the temporal blend: the EMA
  (``ema_alpha``; ``reset_smoothing()`` where a frame starts afresh) or, for engines whose ``device_smoothing``
  lists "flow", the flow-guided warp + blend (``flow=``, one ``FlowStep`` or None per frame). An engine without
  it (TensorRT, for now) gets its flow smoothing on the CPU here, on the collected frames, in order.
* **In flight**: ``in_flight`` batches stay in the engine between calls (the engine needs one slot more, for the
  batch being submitted); each call submits, then collects the oldest batches beyond that and returns their
  frames. ``flush`` returns the rest after the last frame. A run that stops or fails leaves its batches in the
  engine; the next stage on the same engine drops them (``discard_in_flight``) before its first submit.
* The smoother is the run's :class:`~streamer.temporal.SwitchableSmoother` (live toggles it, switches its mode,
  and a style switch restarts it): each frame asks it for its mode and whether it starts afresh. A new
  processing size (live's adaptive size) starts the blend afresh too, as the CPU smoothers do.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from engines.base import Engine
from streamer.adaptive import ProcessingSize
from streamer.pipeline import Frame, Stage
from streamer.processing import resize_rgb
from streamer.style_sources import StyleSource
from streamer.temporal import SwitchableSmoother

# Batches kept in the engine between calls. The GPU engines have 3 slots by default (engines/torch.py and
# engines/tensorrt.py, ``in_flight=3``): 2 kept + the one being submitted.
MAX_IN_FLIGHT = 2
# What an engine that does not say (``device_smoothing``) blends on the device: the EMA every uint8 engine has.
DEFAULT_DEVICE_SMOOTHING = ("ema",)


def runs_in_flight(engine: Engine) -> bool:
    """Whether ``engine`` takes uint8 batches in flight (``submit_uint8``/``collect``), so this stage can drive it."""
    return (bool(getattr(engine.info, "uint8_io", False)) and callable(getattr(engine, "submit_uint8", None))
            and callable(getattr(engine, "collect", None)) and callable(getattr(engine, "discard_in_flight", None)))


@dataclass
class _Held:
    """A batch in flight: its ticket, its frames, and per frame the CPU smoothing to apply once it is back
    (None, or (smoother, starts afresh)) for modes the engine does not blend itself."""

    ticket: int
    frames: list[Frame]
    cpu_smoothing: list[tuple[object, bool] | None] = field(default_factory=list)


class InFlightStage:
    """Callable stage function with ``flush``; :meth:`stage` wraps it as the run's "infer" :class:`Stage`."""

    def __init__(self, engine: Engine, style: StyleSource, size: tuple[int, int] | ProcessingSize, *,
                 batch: int = 1, smoother: SwitchableSmoother | None = None, in_flight: int = MAX_IN_FLIGHT) -> None:
        if not 0 <= in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"in_flight must be between 0 and {MAX_IN_FLIGHT}, not {in_flight}")
        self.engine, self.style, self.smoother = engine, style, smoother
        self.size = size if isinstance(size, ProcessingSize) else ProcessingSize(size)
        self.batch = max(1, min(batch, engine.info.max_batch))
        self.in_flight = in_flight
        self.device_smoothing = tuple(getattr(engine, "device_smoothing", DEFAULT_DEVICE_SMOOTHING))
        self._held: deque[_Held] = deque()
        self._started = False
        self._last_size: tuple[int, int] | None = None

    def stage(self) -> Stage:
        return Stage("infer", self, batch=self.batch, flush=self.flush)

    @property
    def held(self) -> int:
        """Batches submitted and not yet returned."""
        return len(self._held)

    # --- the stage ---------------------------------------------------------------------------------
    def __call__(self, frames: list[Frame]) -> list[Frame]:
        if not self._started:
            self._started = True
            self.engine.discard_in_flight()         # what a stopped or failed run on this engine left in flight
        vec = self.style.for_frame(frames[0].pixels)
        size = self.size.value                      # one size per call: live may change it between calls
        # the device keeps its blend state per size: a new size (and a new run) starts it afresh, as on the CPU
        resized, self._last_size = size != self._last_size, size
        plans = []
        for i, f in enumerate(frames):
            f.small = resize_rgb(f.pixels, size)
            mode, fresh = self.smoother.next_frame() if self.smoother is not None else ("off", False)
            plans.append((mode, fresh or (resized and i == 0)))
        done: list[Frame] = []
        for start, end in self._groups(plans):
            self._submit(frames[start:end], plans[start:end], vec)
            while len(self._held) > self.in_flight:
                done += self._collect_oldest()
        return done

    def flush(self) -> list[Frame]:
        """Every batch still in flight, in order (the Runner calls this after the last frame)."""
        done: list[Frame] = []
        while self._held:
            done += self._collect_oldest()
        return done

    # --- steps ---------------------------------------------------------------------------------------
    def _groups(self, plans: list[tuple[str, bool]]) -> list[tuple[int, int]]:
        """[start, end) runs of frames submitted together: one smoothing mode each, and the device EMA restarts
        only at a batch's first frame, so a frame that starts the EMA afresh starts a new batch."""
        bounds: list[tuple[int, int]] = []
        for i, (mode, fresh) in enumerate(plans):
            restarts_ema = fresh and mode == "ema" and "ema" in self.device_smoothing
            new = not bounds or mode != plans[bounds[-1][0]][0] or restarts_ema
            if new:
                bounds.append((i, i + 1))
            else:
                bounds[-1] = (bounds[-1][0], i + 1)
        return bounds

    def _submit(self, frames: list[Frame], plans: list[tuple[str, bool]], vec: np.ndarray) -> None:
        mode = plans[0][0]
        on_device = mode != "off" and mode in self.device_smoothing
        kw: dict = {}
        cpu: list[tuple[object, bool] | None] = [None] * len(frames)
        if on_device and mode == "ema":
            if plans[0][1]:
                self.engine.reset_smoothing()
            kw["ema_alpha"] = self.smoother.impl.alpha
        elif on_device and mode == "flow":
            impl, steps = self.smoother.impl, []
            for f, (_, fresh) in zip(frames, plans):
                if fresh:
                    impl.reset()
                steps.append(impl.estimate(f.small))
            kw["flow"] = steps
        elif mode != "off":                         # the engine cannot blend this mode: the CPU does, once back
            cpu = [(self.smoother.impl, fresh) for _, fresh in plans]
        batch = frames[0].small[None] if len(frames) == 1 else np.stack([f.small for f in frames])
        for f, c in zip(frames, cpu):
            if c is None:
                f.small = None
        self._held.append(_Held(self.engine.submit_uint8(batch, vec, **kw), frames, cpu))

    def _collect_oldest(self) -> list[Frame]:
        held = self._held.popleft()
        result = self.engine.collect(held.ticket)
        for f, img, cpu in zip(held.frames, result, held.cpu_smoothing):
            if cpu is not None:
                impl, fresh = cpu
                if fresh:
                    impl.reset()
                img = impl(f.small, img)
            f.small = None
            h, w = f.pixels.shape[:2]
            f.stylized = img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
        return held.frames


def inflight_stage(engine: Engine, style: StyleSource, size: tuple[int, int] | ProcessingSize, *, batch: int = 1,
                   smoother: SwitchableSmoother | None = None, in_flight: int = MAX_IN_FLIGHT) -> Stage:
    """The one "infer" stage of the GPU path (see the module docstring)."""
    return InFlightStage(engine, style, size, batch=batch, smoother=smoother, in_flight=in_flight).stage()
