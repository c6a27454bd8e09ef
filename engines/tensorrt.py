"""TensorRT runtime: a cached engine deserialized and run on CUDA streams through pycuda.

The loader side (ONNX -> plan, the engine cache, the timing cache, profiles) is
``engines.tensorrt_build``; this module is the runner, written to the TensorRT 10/11
Python API: named I/O tensors, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``.

Run time: one execution context, three streams.  A frame's uint8 pixels go up on
the upload stream, are converted, run and converted back on the compute stream
(``engines.cuda_kernels``: resize/pad to NCHW, crop to uint8 HWC and the temporal
EMA), and come down on the download stream; events order the three, so with
several frames in flight (``submit_uint8`` / ``collect``, bookkept by
``engines.inflight``) the upload of frame t+1, the compute of frame t and the
download of frame t-1 overlap.  No float frame crosses PCIe on that path.

Everything runs in the device's retained primary context (shared with torch, cupy and
the runtime API), pushed around each call; ``close()`` frees every device object
while that context is current, then pops it, then releases it.

Importing this module needs neither tensorrt nor pycuda; ``availability()`` says why
the backend cannot run.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engines.base import STYLE_DIM, EngineError, EngineInfo, check_inputs, pad_to_multiple
from engines.carried_state import STATE_INPUT, STATE_OUTPUT
from engines.cuda_kernels import PycudaKernels, check_uint8_inputs, to_nchw_launch, to_u8hwc_launch
from engines.inflight import GrowingBuffers, InFlight
from engines.tensorrt_build import (DEFAULT_PROFILES, MULTIPLE, Profile, availability, ensure_engine, gpu_identity,
                                    round_up, select_profile, trt_logger)

STATE_TENSORS = {STATE_INPUT, STATE_OUTPUT}


class _Slot:
    """Pinned host and device buffers and the three events of one batch in flight."""

    def __init__(self, cuda) -> None:
        self.host = GrowingBuffers(lambda nbytes: cuda.pagelocked_empty(nbytes, np.uint8))
        self.dev = GrowingBuffers(cuda.mem_alloc)
        self.uploaded, self.computed, self.downloaded = cuda.Event(), cuda.Event(), cuda.Event()

    def host_buf(self, name: str, nbytes: int) -> np.ndarray:
        return self.host.get(name, nbytes)[:nbytes]

    def dev_buf(self, name: str, nbytes: int):
        return self.dev.get(name, nbytes)

    def free(self) -> None:
        """Free device and pinned memory and the events now; the context that made them must be current."""
        self.dev.release(lambda d: d.free())
        self.host.release(lambda h: getattr(h.base, "free", lambda: None)())
        self.uploaded = self.computed = self.downloaded = None


class _DeviceEma:
    """The temporal EMA state on the device (float32 HxWx3) and whether the next batch starts it afresh."""

    def __init__(self, cuda) -> None:
        self._cuda = cuda
        self._state = None
        self._size: tuple[int, int] | None = None
        self.first = True

    def take(self, h: int, w: int, alpha: float | None, stream) -> tuple[object, bool]:
        """(state pointer or null, first) for the next batch of HxW frames."""
        if alpha is None:
            return np.uintp(0), True
        if self._size != (h, w):
            stream.synchronize()            # a kernel in flight may still blend into the old state
            self.free()
            self._state, self._size, self.first = self._cuda.mem_alloc(h * w * 3 * 4), (h, w), True
        first, self.first = self.first, False
        return self._state, first

    def free(self) -> None:
        if self._state is not None:
            self._state.free()
        self._state, self._size = None, None


class _Plan:
    """A deserialized student engine and its execution context: dtypes, profiles, shapes and tensor addresses."""

    def __init__(self, engine_path: Path) -> None:
        import tensorrt as trt  # optional heavy dependency, imported here on purpose (GPU installs only)

        self.runtime = trt.Runtime(trt_logger())       # must outlive the engine
        self.engine = self.context = None
        try:
            self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise EngineError(f"{engine_path}: TensorRT cannot deserialize this engine (other version or GPU?)")
            names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
            if names - STATE_TENSORS != {"frame", "style", "stylized"}:
                raise EngineError(f"{engine_path}: not a student engine (tensors {sorted(names)})")
            self.stateful = STATE_TENSORS <= names
            self.context = self.engine.create_execution_context()
        except BaseException:
            self.close()                    # while the caller's context is still current
            raise
        self.dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.profiles = [self._read_profile(i) for i in range(self.engine.num_optimization_profiles)]
        self._profile = 0

    def _read_profile(self, index: int) -> Profile:
        lo, opt, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape("frame", index))
        return Profile((lo[0], lo[2], lo[3]), (opt[0], opt[2], opt[3]), (hi[0], hi[2], hi[3]))

    def execute(self, shape: tuple[int, int, int], d_in, d_out, d_style, stream, state=None) -> None:
        """Enqueue the network on ``stream`` for an N x 3 x PH x PW batch, switching profile if it needs to;
        ``state`` is a stateful student's (state, state_out) device buffers."""
        n, ph, pw = shape
        ctx = self.context
        profile = select_profile(self.profiles, n, ph, pw)
        if profile != self._profile:
            ctx.set_optimization_profile_async(profile, stream.handle)
            self._profile = profile
        if not (ctx.set_input_shape("frame", (n, 3, ph, pw)) and ctx.set_input_shape("style", (n, STYLE_DIM))):
            raise EngineError(f"tensorrt: cannot set input shape {n}x3x{ph}x{pw}")
        for name, ptr in (("frame", d_in), ("style", d_style), ("stylized", d_out)):
            ctx.set_tensor_address(name, int(ptr))
        if state is not None:
            for name, ptr in zip((STATE_INPUT, STATE_OUTPUT), state):
                ctx.set_tensor_address(name, int(ptr))
        if not ctx.execute_async_v3(stream.handle):
            raise EngineError("tensorrt: execute_async_v3 failed (see the TensorRT log)")

    def close(self) -> None:
        """Drop the TensorRT objects in dependency order (their destructors free device memory)."""
        self.context = None
        self.engine = None
        self.runtime = None


class _CarriedState:
    """A stateful student's state on the device (the high-quality tier's carried whole-frame moments): each batch
    reads `state` and writes `state_out`, copied back on the compute stream for the next; zeros mean no previous
    frame, so a reset is a memset. Like the EMA, it belongs to one style and one video."""

    def __init__(self, cuda, nbytes: int) -> None:
        self._cuda, self.nbytes = cuda, nbytes
        self.buffers = (cuda.mem_alloc(nbytes), cuda.mem_alloc(nbytes))
        cuda.memset_d8(self.buffers[0], 0, nbytes)
        self.style: bytes | None = None

    def reset(self, stream) -> None:
        self._cuda.memset_d8_async(self.buffers[0], 0, self.nbytes, stream)

    def carry(self, stream) -> None:
        self._cuda.memcpy_dtod_async(self.buffers[0], self.buffers[1], self.nbytes, stream)

    def free(self) -> None:
        for buf in self.buffers:
            buf.free()
        self.buffers = ()


class TensorRTEngine:
    """The student on TensorRT.  ``infer`` follows the float contract; ``infer_uint8`` keeps floats on the GPU."""

    def __init__(self, onnx_path: str | os.PathLike, *, precision: str = "fp16", profiles=DEFAULT_PROFILES,
                 cache_dir: str | os.PathLike | None = None, engine_path: str | os.PathLike | None = None,
                 in_flight: int = 3, device: int = 0, log=print) -> None:
        ok, why = availability()
        if not ok:
            raise EngineError(f"tensorrt backend unavailable: {why}")
        import pycuda.driver as cuda  # optional heavy dependency, imported here on purpose (GPU installs only)

        self._cuda = cuda
        self._lock = threading.Lock()
        self._inflight: InFlight[_Slot] = InFlight("tensorrt")     # slots come with the streams, below
        self._ema = _DeviceEma(cuda)
        self._kernels = self._up = self._compute = self._down = None
        self._plan: _Plan | None = None
        self._state: _CarriedState | None = None
        self._cuda_ctx = cuda.Device(device).retain_primary_context()   # shared with torch/cupy/the runtime API
        try:
            with self._pushed():
                if engine_path is None:
                    engine_path, _ = ensure_engine(onnx_path, precision=precision, profiles=profiles,
                                                   cache_dir=cache_dir, device=device, log=log)
                self._plan = _Plan(Path(engine_path))
                self._start(in_flight)
        except BaseException:
            self.close()                    # a half-made engine still releases what it took
            raise
        self._dtype, self.profiles = self._plan.dtype, self._plan.profiles
        gpu, _ = gpu_identity(device)
        self.info = EngineInfo(backend="tensorrt", model=Path(onnx_path).stem, device=f"cuda:{device} {gpu}",
                               precision=precision, min_side=min(min(p.min[1:]) for p in self.profiles),
                               max_side=max(max(p.max[1:]) for p in self.profiles),
                               max_batch=1 if self._state is not None else max(p.max[0] for p in self.profiles),
                               uint8_io=True)   # a stateful student runs one frame a call (engines/student_hq.py)

    def _start(self, in_flight: int) -> None:
        """Kernels, streams and the slot ring (context current)."""
        self._kernels = PycudaKernels()
        self._up, self._compute, self._down = self._cuda.Stream(), self._cuda.Stream(), self._cuda.Stream()
        if self._plan.stateful:
            size = int(np.prod(self._plan.engine.get_tensor_shape(STATE_INPUT)))
            self._state = _CarriedState(self._cuda, size * self._plan.dtype[STATE_INPUT].itemsize)
        self._inflight = InFlight("tensorrt", [_Slot(self._cuda) for _ in range(max(1, in_flight))])

    @contextmanager
    def _pushed(self):
        if self._cuda_ctx is None:
            raise EngineError("tensorrt: the engine is closed")
        self._cuda_ctx.push()
        try:
            yield
        finally:
            self._cuda_ctx.pop()

    # -- one batch: the three stages, enqueued without waiting
    def _net_buffers(self, slot: _Slot, n: int, ph: int, pw: int):
        """The network's input and output device buffers in this slot, for an N x 3 x PH x PW batch."""
        return (slot.dev_buf("net_in", n * 3 * ph * pw * self._dtype["frame"].itemsize),
                slot.dev_buf("net_out", n * 3 * ph * pw * self._dtype["stylized"].itemsize))

    def _enqueue(self, slot: _Slot, style: np.ndarray, shape: tuple[int, int, int], uploads, pre, post,
                 download) -> None:
        """Upload ``uploads`` [(device, pinned host)], run ``pre``, the network and ``post`` (kernel launch specs or
        None) on the compute stream, download ``download`` (pinned host, device); events order the three streams."""
        cuda = self._cuda
        sbytes = np.frombuffer(style.astype(self._dtype["style"]).tobytes(), np.uint8)
        h_style = slot.host_buf("style", sbytes.nbytes)
        h_style[:] = sbytes
        d_style = slot.dev_buf("style", sbytes.nbytes)
        for dev, host in [*uploads, (d_style, h_style)]:
            cuda.memcpy_htod_async(dev, host, self._up)
        slot.uploaded.record(self._up)
        self._compute.wait_for_event(slot.uploaded)
        if pre is not None:
            self._kernels.launch(pre, self._compute)
        state = None
        if self._state is not None:
            key = style[-1].tobytes() + bytes(f"{shape[1]}x{shape[2]}", "ascii")
            if key != self._state.style:            # the carried moments belong to one style and one scale
                self._state.style = key
                self._state.reset(self._compute)
            state = self._state.buffers
        self._plan.execute(shape, *self._net_buffers(slot, *shape), d_style, self._compute, state)
        if state is not None:
            self._state.carry(self._compute)
        if post is not None:
            self._kernels.launch(post, self._compute)
        slot.computed.record(self._compute)
        self._down.wait_for_event(slot.computed)
        cuda.memcpy_dtoh_async(*download, self._down)
        slot.downloaded.record(self._down)

    def _finisher(self, slot: _Slot, read):
        """The ``finish`` of a submission: wait for the slot's download, then copy its result out."""
        def finish() -> np.ndarray:
            with self._pushed():
                slot.downloaded.synchronize()
            return read()
        return finish

    # -- the uint8 path
    def submit_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                     ema_alpha: float | None = None) -> int:
        """Enqueue uint8 [N,H,W,3] frames (RGB, or BGR); returns a ticket for ``collect`` (``engines.inflight``).

        With ``ema_alpha`` the output is blended with the previous output (the EMA of
        ``streamer.temporal``), on the GPU; ``reset_smoothing()`` forgets it.
        """
        frames, style = check_uint8_inputs(self.info, frames, style)
        n, h, w, _ = frames.shape
        ph, pw, nbytes = round_up(h), round_up(w), frames.nbytes
        with self._lock, self._pushed(), self._inflight.submit() as sub:
            slot = sub.slot
            h_in, h_out = slot.host_buf("u8_in", nbytes), slot.host_buf("u8_out", nbytes)
            h_in[:] = frames.reshape(-1)
            d_u8_in, d_u8_out = slot.dev_buf("u8_in", nbytes), slot.dev_buf("u8_out", nbytes)
            d_in, d_out = self._net_buffers(slot, n, ph, pw)
            prev, first = self._ema.take(h, w, ema_alpha, self._compute)
            pre = to_nchw_launch(d_u8_in, d_in, n, h, w, w * 3, h, w, ph, pw, bgr, self._dtype["frame"])
            post = to_u8hwc_launch(d_out, d_u8_out, prev, n, h, w, ph, pw, w * 3, bgr, self._dtype["stylized"],
                                   1.0 if ema_alpha is None else ema_alpha, first)
            self._enqueue(slot, style, (n, ph, pw), [(d_u8_in, h_in)], pre, post, (h_out, d_u8_out))
            sub.finish = self._finisher(slot, lambda: h_out.reshape(n, h, w, 3).copy())
        return sub.ticket

    def discard_in_flight(self) -> None:
        """Drop the batches an earlier run left uncollected (see engines.inflight.InFlight.discard)."""
        self._inflight.discard()

    def collect(self, ticket: int) -> np.ndarray:
        """Wait for a submitted batch and return its frames (a copy; the pinned buffer is reused)."""
        return self._inflight.collect(ticket)

    def infer_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                    ema_alpha: float | None = None) -> np.ndarray:
        """uint8 [N,H,W,3] in, uint8 [N,H,W,3] out; only uint8 crosses PCIe."""
        return self.collect(self.submit_uint8(frames, style, bgr=bgr, ema_alpha=ema_alpha))

    def reset_smoothing(self) -> None:
        self._ema.first = True
        self.reset_state()

    def reset_state(self) -> None:
        """A stateful student starts afresh on the next frame (after the work already submitted)."""
        if self._state is not None:
            with self._lock, self._pushed():
                self._state.reset(self._compute)

    # -- the float contract
    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        padded, h, w = pad_to_multiple(np.ascontiguousarray(frames, dtype=np.float32), MULTIPLE)
        padded = np.ascontiguousarray(padded.astype(self._dtype["frame"]))
        n, _, ph, pw = padded.shape
        out_dtype = self._dtype["stylized"]
        with self._lock, self._pushed(), self._inflight.submit() as sub:
            slot = sub.slot
            h_in = slot.host_buf("f_in", padded.nbytes)
            h_in[:] = padded.reshape(-1).view(np.uint8)
            h_out = slot.host_buf("f_out", n * 3 * ph * pw * out_dtype.itemsize)
            d_in, d_out = self._net_buffers(slot, n, ph, pw)
            self._enqueue(slot, style, (n, ph, pw), [(d_in, h_in)], None, None, (h_out, d_out))
            sub.finish = self._finisher(slot, lambda: h_out.view(out_dtype).reshape(n, 3, ph, pw)[:, :, :h, :w].copy())
        return self.collect(sub.ticket).astype(np.float32, copy=False)

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer_uint8(np.full((batch, height, width, 3), 128, np.uint8), np.zeros((1, STYLE_DIM), np.float32))

    # -- teardown
    def close(self) -> None:
        """Finish the batches in flight, free every device object with the context current, pop it, then detach.

        The order matters: pycuda frees memory, events, streams and modules against the
        context that made them, and ``detach()`` may drop the last retain of the primary
        context (resetting it), so anything still alive after it is freed against a
        released context (errors at exit, or leaks when torch keeps the context alive).
        """
        if self._cuda_ctx is None:
            return
        try:
            with self._lock, self._pushed():
                try:
                    self._inflight.flush()      # results dropped: nothing may be freed under a running copy
                finally:
                    self._free_device_objects()
        finally:                                # _pushed has popped by now
            ctx, self._cuda_ctx = self._cuda_ctx, None
            ctx.detach()

    def _free_device_objects(self) -> None:
        for slot in self._inflight.slots:
            slot.free()
        self._inflight.slots = []
        self._ema.free()
        if self._state is not None:
            self._state.free()
            self._state = None
        self._kernels = None                    # the module (cuModuleUnload)
        self._up = self._compute = self._down = None
        if self._plan is not None:
            self._plan.close()
            self._plan = None
