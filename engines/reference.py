"""The GPU engines' in-flight uint8 contract on the CPU: the NumPy twins of the CUDA kernels around a float engine.

``ReferenceEngine(inner)`` does what ``engines.tensorrt`` and ``engines.torch`` do on a GPU, step for step,
with the kernels' NumPy twins (``engines.cuda_kernels``) and any float engine for the network (ONNX Runtime
for the student), so the product's GPU wiring (``streamer.inflight_stage``) runs, and is tested, on a machine
without a GPU:

- ``submit_uint8(frames uint8 [N,H,W,3], style, *, bgr, ema_alpha, flow)`` -> ticket, without waiting: the
  batch goes to one worker thread, the stand-in for the GPU's compute stream, so batches really are in flight
  while the caller goes on, run in submission order, and an error surfaces where a CUDA error would, at
  ``collect``.  ``in_flight`` slots, as on the GPU: a submit with every slot taken raises ``EngineError``.
- per batch: ``ref_to_nchw`` (uint8 -> float NCHW, reflect-padded to a multiple of 8), ``inner.infer``,
  ``ref_to_u8hwc`` (crop, round, and the temporal EMA with ``ema_alpha``), then with ``flow`` the flow-guided
  warp + blend (``ref_flow_blend``) against the previous output, frame after frame.
- ``collect(ticket)`` in order, ``flush()`` every result still held, ``reset_smoothing()`` ordered after the
  work already submitted, ``close()`` waits for what is in flight, then stops the worker.

It is never picked by ``auto``; ``engines.select.create_engine("reference", spec)`` or the constructor make one
(the tests do).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from engines.base import STYLE_DIM, Engine, EngineError, EngineInfo
from engines.carried_state import start_afresh
from engines.cuda_kernels import check_uint8_inputs, ref_flow_blend, ref_to_nchw, ref_to_u8hwc
from engines.inflight import InFlight

MULTIPLE = 8          # the network's padding multiple, as on the GPU engines


def _round_up(x: int) -> int:
    return -(-x // MULTIPLE) * MULTIPLE


class _DeviceState:
    """What the GPU engines keep on the device between batches, per frame size: the EMA state and whether the next
    batch starts it afresh, and the previous output that flow smoothing warps. Touched by the worker only."""

    def __init__(self) -> None:
        self.ema: dict[tuple[int, int], np.ndarray] = {}
        self.ema_first: dict[tuple[int, int], bool] = {}
        self.prev_out: dict[tuple[int, int], np.ndarray] = {}

    def reset(self) -> None:
        self.ema_first = {k: True for k in self.ema}


class ReferenceEngine:
    """``inner`` (a float-contract Engine) behind the uint8 in-flight contract of the GPU engines."""

    device_smoothing = ("ema", "flow")      # blends streamer.inflight_stage leaves to the engine

    def __init__(self, inner: Engine, *, in_flight: int = 3) -> None:
        self.inner = inner
        i = inner.info
        self.info = EngineInfo(backend="reference", model=i.model, device="cpu", precision=i.precision,
                               min_side=i.min_side, max_side=i.max_side, max_batch=i.max_batch, uint8_io=True)
        self._inflight: InFlight[int] = InFlight("reference", list(range(max(1, in_flight))))
        self._stream = ThreadPoolExecutor(1, thread_name_prefix="streamer-reference-stream")
        self._state = _DeviceState()
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- the uint8 path
    def submit_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                     ema_alpha: float | None = None,
                     flow: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None) -> int:
        """Enqueue uint8 [N,H,W,3] frames; returns a ticket for ``collect`` (the contract of ``engines.inflight``).

        ``ema_alpha``: blend each output with the previous one (``streamer.temporal.EmaSmoothing``).
        ``flow``: one entry per frame, ``(flow SHxSWx2, weight SHxSW)`` from ``FlowSmoothing.estimate``, or None
        where the frame starts afresh; the previous output is warped and blended (``ref_flow_blend``)."""
        frames, style = check_uint8_inputs(self.info, frames, style)
        if ema_alpha is not None and flow is not None:
            raise EngineError("reference: ema_alpha and flow smoothing are exclusive")
        if flow is not None and len(flow) != frames.shape[0]:
            raise EngineError(f"reference: {frames.shape[0]} frames but {len(flow)} flow entries")
        frames = frames.copy()              # the caller may reuse its buffer, as with the GPU's pinned upload
        with self._lock:
            if self._closed:
                raise EngineError("reference: the engine is closed")
            with self._inflight.submit() as sub:
                future = self._stream.submit(self._run, frames, style, bgr, ema_alpha,
                                             None if flow is None else list(flow))
                sub.finish = future.result
        return sub.ticket

    def discard_in_flight(self) -> None:
        """Drop the batches an earlier run left uncollected (see engines.inflight.InFlight.discard)."""
        self._inflight.discard()

    def collect(self, ticket: int) -> np.ndarray:
        """Wait for a submitted batch; returns uint8 [N,H,W,3] (results come back in submission order)."""
        return self._inflight.collect(ticket)

    def flush(self) -> list[np.ndarray]:
        """Wait for every batch in flight; all uncollected results, in submission order."""
        return self._inflight.flush()

    def infer_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                    ema_alpha: float | None = None, flow=None) -> np.ndarray:
        return self.collect(self.submit_uint8(frames, style, bgr=bgr, ema_alpha=ema_alpha, flow=flow))

    def reset_smoothing(self) -> None:
        """Forget the previous frame for the EMA; ordered after the work already submitted (as on a stream)."""
        with self._lock:
            if not self._closed:
                self._stream.submit(self._state.reset)
        self.reset_state()

    def reset_state(self) -> None:
        """A stateful inner model starts afresh on the next frame, after the work already submitted."""
        with self._lock:
            if not self._closed:
                self._stream.submit(start_afresh, self.inner)

    def _run(self, frames: np.ndarray, style: np.ndarray, bgr: bool, ema_alpha: float | None, flow) -> np.ndarray:
        """One batch on the "device": the kernels' twins around the network, state updated in order."""
        n, h, w, _ = frames.shape
        ph, pw = _round_up(h), _round_up(w)
        y = self.inner.infer(ref_to_nchw(frames, h, w, ph, pw, bgr), style)
        if ema_alpha is None:
            out, _ = ref_to_u8hwc(y, h, w, bgr)
        else:
            st = self._state
            prev = st.ema.get((h, w), np.zeros((h, w, 3), np.float32))
            out, st.ema[(h, w)] = ref_to_u8hwc(y, h, w, bgr, prev=prev, alpha=ema_alpha,
                                                first=st.ema_first.get((h, w), True))
            st.ema_first[(h, w)] = False
        if flow is not None:
            prev_out = self._state.prev_out.get((h, w))
            for i, step in enumerate(flow):
                if step is not None and prev_out is not None:
                    out[i] = ref_flow_blend(prev_out, out[i], *step)
                prev_out = out[i].copy()
            self._state.prev_out[(h, w)] = prev_out
        return out

    # ---------------------------------------------------------------- the float contract
    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        return self.inner.infer(frames, style)

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer_uint8(np.full((batch, height, width, 3), 128, np.uint8), np.zeros((1, STYLE_DIM), np.float32))

    def close(self) -> None:
        """Finish the batches in flight (results and their errors dropped), stop the worker, close the network."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            while len(self._inflight):
                try:
                    self._inflight.flush()
                except Exception:       # noqa: BLE001 - closing: a failed batch's error went (or goes) nowhere
                    pass                # each failure consumes its batch, so this ends
        finally:
            self._stream.shutdown(wait=True)
            self.inner.close()
