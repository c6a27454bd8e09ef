"""PyTorch backend: the student from ``streamer/models/student.pt`` on CPU or CUDA, same contract as the others.

On CUDA it runs fp16 in channels_last, replays a CUDA graph per input shape (the
student is ~30 small kernels, so launch gaps would otherwise dominate), and keeps
uint8 on the bus: ``infer_uint8`` uploads uint8 NHWC frames from pinned memory,
converts, pads, runs, rounds and blends (the temporal EMA, optional) on the GPU,
and downloads uint8.  Three streams (upload, compute, download) with events let
``submit_uint8``/``collect`` keep several batches in flight, so the upload of frame
t+1, the compute of frame t and the download of frame t-1 overlap.

It is the GPU path measurable without TensorRT and the fallback where TensorRT is
missing.  Importing this module does not import torch; ``availability()`` says why
the backend cannot run.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from engines.base import STYLE_DIM, EngineError, EngineInfo, check_inputs
from engines.cuda_kernels import check_uint8_inputs

MULTIPLE = 8
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "streamer" / "models" / "student.pt"


def availability(device: str = "cuda") -> tuple[bool, str]:
    """(True, what will run) or (False, why not) for ``device`` ("cuda", "cuda:1" or "cpu")."""
    try:
        import torch
    except ImportError:
        return False, "package torch not installed (pip install 'streamer[distill]', or a CUDA build of torch for the GPU)"
    except Exception as exc:
        return False, f"torch cannot be loaded: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
    if not str(device).startswith("cuda"):
        return True, f"torch {torch.__version__} on CPU"
    if torch.version.cuda is None:
        return False, f"no CUDA GPU (torch.cuda.is_available() is False; torch {torch.__version__} is a CPU-only build)"
    try:
        available = torch.cuda.is_available()
    except Exception as exc:  # driver too old, broken install
        return False, f"CUDA driver error: {exc}"
    if not available:
        return False, "no CUDA GPU (torch.cuda.is_available() is False)"
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        return False, f"no CUDA device {index} (torch sees {torch.cuda.device_count()})"
    return True, f"torch {torch.__version__} CUDA {torch.version.cuda} on {torch.cuda.get_device_name(index)}"


def _round_up(x: int) -> int:
    return -(-x // MULTIPLE) * MULTIPLE


class _Slot:
    """One batch in flight: pinned host buffers, device staging buffers, events."""

    def __init__(self, torch) -> None:
        self.torch = torch
        self.buffers: dict[str, object] = {}
        self.uploaded, self.computed, self.downloaded = (torch.cuda.Event() for _ in range(3))
        self.busy = False
        self.result = None

    def buf(self, name: str, nbytes: int, pinned: bool = False):
        t = self.buffers.get(name)
        if t is None or t.numel() < nbytes:
            t = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8,
                                 device="cpu" if pinned else "cuda", pin_memory=pinned)
            self.buffers[name] = t
        return t[:nbytes]


class TorchEngine:
    """The PyTorch student.  ``device`` is "cuda", "cuda:N" or "cpu"; fp16 + channels_last + CUDA graphs on CUDA."""

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str = "cuda", *,
                 precision: str | None = None, channels_last: bool = True, cuda_graphs: bool = True,
                 in_flight: int = 3, model=None) -> None:
        ok, why = availability(device)
        if not ok:
            raise EngineError(f"torch backend unavailable: {why}")
        import torch

        from engines.student import load_weights

        self.torch = torch
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        precision = precision or ("fp16" if self.is_cuda else "fp32")
        if precision not in ("fp16", "fp32"):
            raise EngineError(f"torch: precision must be fp16 or fp32, not {precision!r}")
        if precision == "fp16" and not self.is_cuda:
            raise EngineError("torch: fp16 needs CUDA (use fp32 on CPU)")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        if model is None:
            path = Path(weights_path) if weights_path else DEFAULT_WEIGHTS
            if not path.is_file():
                raise EngineError(f"{path}: student weights not found (train with `distill train`, or pass the .pt path)")
            try:
                model = load_weights(path)
            except Exception as exc:
                raise EngineError(f"{path}: cannot load student weights: {str(exc).splitlines()[0]}") from exc
            name = path.stem
        else:
            name = "student"
        self.memory_format = torch.channels_last if (channels_last and self.is_cuda) else torch.contiguous_format
        self.model = model.eval().to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.use_graphs = cuda_graphs and self.is_cuda
        self._lock = threading.Lock()
        self._pending: dict[int, _Slot] = {}
        self._next_ticket = 0
        self._graphs: dict[tuple, tuple] = {}
        dev_name = "cpu"
        if self.is_cuda:
            torch.backends.cudnn.benchmark = True
            with torch.cuda.device(self.device):
                self._up, self._compute, self._down = torch.cuda.Stream(), torch.cuda.Stream(), torch.cuda.Stream()
                self._slots = [_Slot(torch) for _ in range(max(1, in_flight))]
            dev_name = f"{self.device} {torch.cuda.get_device_name(self.device)}"
        self._ema: dict = {}            # (h, w) -> (state float32 [H,W,3], first flag 0-d, a, b) on the device
        self.info = EngineInfo(backend="torch", model=name, device=dev_name, precision=precision,
                               multiple_of=MULTIPLE, uint8_io=self.is_cuda)

    # ---------------------------------------------------------------- the computation (torch ops only)
    def _network(self, x, style):
        """x [N,3,PH,PW] in the engine dtype/layout -> [N,3,PH,PW]."""
        return self.model(x, style.to(self.dtype))

    def _pre(self, u8, bgr: bool):
        """uint8 [N,H,W,3] on the device -> padded [N,3,PH,PW] in the engine dtype and layout, 0..1."""
        F = self.torch.nn.functional
        x = u8.permute(0, 3, 1, 2).float().div_(255.0)
        if bgr:
            x = x.flip(1)
        h, w = x.shape[2:]
        ph, pw = _round_up(h) - h, _round_up(w) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        return x.to(dtype=self.dtype).contiguous(memory_format=self.memory_format)

    def _post(self, y, h: int, w: int, bgr: bool, ema=None):
        """[N,3,PH,PW] -> uint8 [N,H,W,3]: round clip(y,0,1)*255 half up, then the optional EMA (streamer.temporal)."""
        torch = self.torch
        v = y[:, :, :h, :w].float().clamp_(0.0, 1.0).mul_(255.0).add_(0.5).floor_().permute(0, 2, 3, 1)
        if bgr:
            v = v.flip(3)
        if ema is not None:
            state, first, a, b = ema
            outs = []
            for i in range(v.shape[0]):
                blended = torch.where(first > 0, v[i], a * v[i] + b * state)
                state.copy_(blended)
                first.zero_()
                outs.append(blended.add(0.5).clamp_(0.0, 255.0))
            v = torch.stack(outs)
        return v.to(torch.uint8).contiguous()

    def _ema_state(self, h: int, w: int, alpha: float):
        """The EMA state for this frame size: one per size, kept, since captured graphs point at it."""
        torch = self.torch
        if (h, w) not in self._ema:
            self._ema[(h, w)] = (torch.zeros((h, w, 3), dtype=torch.float32, device=self.device),
                                 torch.ones((), dtype=torch.float32, device=self.device),
                                 torch.empty((), dtype=torch.float32, device=self.device),
                                 torch.empty((), dtype=torch.float32, device=self.device))
        state, first, a, b = self._ema[(h, w)]
        a.fill_(float(np.float32(alpha)))
        b.fill_(float(np.float32(1.0 - alpha)))
        return self._ema[(h, w)]

    def reset_smoothing(self) -> None:
        """Forget the previous frame (seek, scene cut, style switch); ordered after the work already submitted."""
        torch = self.torch
        with torch.inference_mode():
            if self.is_cuda:
                with torch.cuda.device(self.device), torch.cuda.stream(self._compute):
                    for _, first, _, _ in self._ema.values():
                        first.fill_(1.0)
            else:
                for _, first, _, _ in self._ema.values():
                    first.fill_(1.0)

    def _u8_pipeline(self, u8, style, bgr: bool, ema):
        h, w = u8.shape[1:3]
        return self._post(self._network(self._pre(u8, bgr), style), h, w, bgr, ema)

    # ---------------------------------------------------------------- CUDA graphs
    def _graph(self, key: tuple, make_inputs, fn, preserve=()):
        """(graph or None, static inputs, static output) for this shape; captured once, replayed after.

        Warm-up runs change ``preserve`` (the EMA state): it is restored after the capture.
        """
        torch = self.torch
        if key in self._graphs:
            return self._graphs[key]
        inputs = make_inputs()
        if not self.use_graphs:
            entry = (None, inputs, None)
        else:
            saved = [t.clone() for t in preserve]
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(self._compute)
            with torch.cuda.stream(side):
                for _ in range(3):      # cudnn autotuning and lazy init stay out of the capture
                    fn(*inputs)
            self._compute.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                out = fn(*inputs)
            self._compute.wait_stream(side)
            for t, v in zip(preserve, saved):
                t.copy_(v)
            entry = (graph, inputs, out)
        self._graphs[key] = entry
        return entry

    def _run(self, key, make_inputs, fn, fill, preserve=()):
        """On the compute stream: fill the static inputs, replay (or run eagerly), return the output tensor."""
        graph, inputs, out = self._graph(key, make_inputs, fn, preserve)
        fill(*inputs)
        if graph is None:
            return fn(*inputs)
        graph.replay()
        return out

    # ---------------------------------------------------------------- uint8 path
    def submit_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                     ema_alpha: float | None = None) -> int:
        """Enqueue uint8 [N,H,W,3] frames; returns a ticket for ``collect`` (results must be collected in order)."""
        torch = self.torch
        frames, style = check_uint8_inputs(self.info, frames, style)
        n, h, w, _ = frames.shape
        with self._lock:
            ticket = self._next_ticket
            if not self.is_cuda:
                with torch.inference_mode():
                    ema = self._ema_state(h, w, ema_alpha) if ema_alpha is not None else None
                    out = self._u8_pipeline(torch.from_numpy(frames), torch.from_numpy(style), bgr, ema)
                self._pending[ticket] = out.numpy()
                self._next_ticket += 1
                return ticket
            slot = self._slots[ticket % len(self._slots)]
            if slot.busy:
                raise EngineError("torch: too many batches in flight; collect() results in order first")
            nbytes = frames.nbytes
            h_in, h_out = slot.buf("h_in", nbytes, pinned=True), slot.buf("h_out", nbytes, pinned=True)
            h_style = slot.buf("h_style", style.nbytes, pinned=True)
            h_in.numpy()[:] = frames.reshape(-1)
            h_style.numpy()[:] = style.reshape(-1).view(np.uint8)
            d_in, d_out = slot.buf("d_in", nbytes), slot.buf("d_out", nbytes)
            d_style = slot.buf("d_style", style.nbytes)
            with torch.cuda.device(self.device), torch.inference_mode():
                with torch.cuda.stream(self._up):
                    d_in.copy_(h_in, non_blocking=True)
                    d_style.copy_(h_style, non_blocking=True)
                    slot.uploaded.record(self._up)
                with torch.cuda.stream(self._compute):
                    self._compute.wait_event(slot.uploaded)
                    ema = self._ema_state(h, w, ema_alpha) if ema_alpha is not None else None
                    key = ("u8", n, h, w, bgr, ema is not None)

                    def make_inputs():
                        return (torch.empty((n, h, w, 3), dtype=torch.uint8, device=self.device),
                                torch.empty((n, STYLE_DIM), dtype=torch.float32, device=self.device))

                    def fill(s_in, s_style):
                        s_in.view(-1).copy_(d_in)
                        s_style.view(-1).copy_(d_style.view(torch.float32))

                    out = self._run(key, make_inputs, lambda u8, st: self._u8_pipeline(u8, st, bgr, ema), fill,
                                    preserve=ema[:2] if ema else ())
                    d_out.copy_(out.view(-1))
                    slot.computed.record(self._compute)
                with torch.cuda.stream(self._down):
                    self._down.wait_event(slot.computed)
                    h_out.copy_(d_out, non_blocking=True)
                    slot.downloaded.record(self._down)
            slot.busy = True
            slot.result = (h_out, (n, h, w, 3))
            self._pending[ticket] = slot
            self._next_ticket += 1
            return ticket

    def collect(self, ticket: int) -> np.ndarray:
        """Wait for a submitted batch; returns uint8 [N,H,W,3] (a copy: the pinned buffer is reused)."""
        item = self._pending.pop(ticket)
        if isinstance(item, np.ndarray):
            return item
        item.downloaded.synchronize()
        host, shape = item.result
        out = host.numpy().reshape(shape).copy()
        item.busy, item.result = False, None
        return out

    def infer_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                    ema_alpha: float | None = None) -> np.ndarray:
        """uint8 [N,H,W,3] RGB (or BGR) in and out; on CUDA only uint8 crosses PCIe."""
        return self.collect(self.submit_uint8(frames, style, bgr=bgr, ema_alpha=ema_alpha))

    # ---------------------------------------------------------------- float contract
    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        torch = self.torch
        style = check_inputs(self.info, frames, style)
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        n, _, h, w = frames.shape
        with self._lock, torch.inference_mode():
            x = torch.from_numpy(frames)
            s = torch.from_numpy(style)
            if self.is_cuda:
                x = x.pin_memory().to(self.device, non_blocking=True)
                s = s.to(self.device)
            F = torch.nn.functional
            ph, pw = _round_up(h) - h, _round_up(w) - w
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="reflect")
            x = x.to(self.dtype).contiguous(memory_format=self.memory_format)
            y = self._network(x, s)[:, :, :h, :w].float()
            return y.cpu().numpy() if self.is_cuda else y.contiguous().numpy()

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        frames = np.full((batch, height, width, 3), 128, np.uint8)
        self.infer_uint8(frames, np.zeros((1, STYLE_DIM), np.float32))

    # ---------------------------------------------------------------- measurement
    def benchmark_model(self, batch: int, height: int, width: int, iters: int = 100) -> float:
        """Model-only frames per second on device-resident input (CUDA graph replays timed with events)."""
        torch = self.torch
        if not self.is_cuda:
            raise EngineError("torch: benchmark_model needs CUDA")
        ph, pw = _round_up(height), _round_up(width)
        with torch.cuda.device(self.device), torch.inference_mode(), torch.cuda.stream(self._compute):
            gen = torch.Generator(device=self.device).manual_seed(0)

            def make_inputs():
                x = torch.rand((batch, 3, ph, pw), generator=gen, device=self.device).to(self.dtype)
                return (x.contiguous(memory_format=self.memory_format),
                        torch.randn((batch, STYLE_DIM), generator=gen, device=self.device))

            key = ("model", batch, ph, pw)
            for _ in range(5):
                self._run(key, make_inputs, self._network, lambda *a: None)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self._compute)
            for _ in range(iters):
                self._run(key, make_inputs, self._network, lambda *a: None)
            end.record(self._compute)
            end.synchronize()
        return batch * iters / (start.elapsed_time(end) / 1000.0)

    def close(self) -> None:
        for ticket in list(self._pending):
            self.collect(ticket)
        self._graphs.clear()
        self._ema.clear()
        if self.is_cuda:
            self._slots = []

