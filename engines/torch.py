"""PyTorch backend: the student from the ``.pt`` its caller names, on CPU or CUDA, same contract as the others.

On CUDA it runs fp16 in channels_last, replays a CUDA graph per input shape (the
student is ~30 small kernels, so launch gaps would otherwise dominate), and keeps
uint8 on the bus: ``infer_uint8`` uploads uint8 NHWC frames from pinned memory,
converts, pads, runs, rounds and blends (optional: the temporal EMA, or the
flow-guided warp + blend of ``streamer.temporal.FlowSmoothing`` with the flow
estimated on the CPU) on the GPU, and downloads uint8.  Three streams (upload,
compute, download) with events let
``submit_uint8``/``collect`` keep several batches in flight (``engines.inflight``
keeps the tickets and slots), so the upload of frame t+1, the compute of frame t and
the download of frame t-1 overlap.

It is the GPU path measurable without TensorRT and the fallback where TensorRT is
missing.  The weights path comes from the caller (the model spec of
``streamer.model_registry``), never from a default here.  The pieces, each small
enough to read alone: ``load_student`` (weights), ``_StudentOps`` (the computation,
torch ops only, so a graph can capture it), ``_EmaStates`` (blend state per frame
size), ``_FlowStates`` (the previous output per frame size, and the warp + blend),
``_Graphs`` (capture and replay), ``_Slot`` (one batch's buffers), and
``TorchEngine``, which strings them together.

Importing this module does not import torch; ``availability()`` says why the backend
cannot run.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from engines.base import STYLE_DIM, EngineError, EngineInfo, check_inputs, one_line
from engines.cuda_kernels import check_uint8_inputs
from engines.inflight import GrowingBuffers, InFlight

MULTIPLE = 8


def availability(device: str = "cuda") -> tuple[bool, str]:
    """(True, what will run) or (False, why not) for ``device`` ("cuda", "cuda:1" or "cpu")."""
    try:
        import torch  # optional heavy dependency (about 1 s to import), imported here on purpose
    except ImportError:
        return False, "package torch not installed (pip install 'streamer[distill]', or a CUDA build of torch for the GPU)"
    except Exception as exc:
        return False, f"torch cannot be loaded: {one_line(exc)}"
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


def load_student(weights_path: str | os.PathLike | None):
    """The student network from the ``.pt`` the caller names (the model spec's weights), errors in one line."""
    if weights_path is None:
        raise EngineError("torch: no student weights given (pass the model's .pt path, or model=)")
    path = Path(weights_path)
    if not path.is_file():
        raise EngineError(f"{path}: student weights not found (train with `distill train`, or pass the .pt path)")
    from engines.student import load_weights  # imports torch: optional heavy dependency, imported here on purpose

    try:
        return load_weights(path)
    except Exception as exc:
        raise EngineError(f"{path}: cannot load student weights: {one_line(exc)}") from exc


class _StudentOps:
    """The computation, in torch ops only so a CUDA graph can capture it: uint8 in, network, uint8 (+EMA) out."""

    def __init__(self, torch, model, device, dtype, memory_format) -> None:
        self.torch, self.dtype, self.memory_format = torch, dtype, memory_format
        self.model = model.eval().to(device=device, dtype=dtype, memory_format=memory_format)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def network(self, x, style):
        """x [N,3,PH,PW] in the engine dtype/layout -> [N,3,PH,PW]."""
        return self.model(x, style.to(self.dtype))

    def pad_convert(self, x):
        """float [N,3,H,W] -> reflect-padded to the network's multiple, in the engine dtype and layout."""
        h, w = x.shape[2:]
        ph, pw = _round_up(h) - h, _round_up(w) - w
        if ph or pw:
            x = self.torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
        return x.to(dtype=self.dtype).contiguous(memory_format=self.memory_format)

    def pre(self, u8, bgr: bool):
        """uint8 [N,H,W,3] on the device -> padded [N,3,PH,PW] in the engine dtype and layout, 0..1."""
        x = u8.permute(0, 3, 1, 2).float().div_(255.0)
        return self.pad_convert(x.flip(1) if bgr else x)

    def post(self, y, h: int, w: int, bgr: bool, ema=None):
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

    def u8_pipeline(self, u8, style, bgr: bool, ema):
        h, w = u8.shape[1:3]
        return self.post(self.network(self.pre(u8, bgr), style), h, w, bgr, ema)


class _EmaStates:
    """EMA state per frame size on the device, kept for the engine's life since captured graphs point at it."""

    def __init__(self, torch, device, stream) -> None:
        self.torch, self.device, self.stream = torch, device, stream
        self._states: dict[tuple[int, int], tuple] = {}

    def get(self, h: int, w: int, alpha: float):
        """(state float32 [H,W,3], first flag 0-d, a, b) for this size, with a and b set from ``alpha``."""
        torch = self.torch
        if (h, w) not in self._states:
            self._states[(h, w)] = (torch.zeros((h, w, 3), dtype=torch.float32, device=self.device),
                                    torch.ones((), dtype=torch.float32, device=self.device),
                                    torch.empty((), dtype=torch.float32, device=self.device),
                                    torch.empty((), dtype=torch.float32, device=self.device))
        state, first, a, b = self._states[(h, w)]
        a.fill_(float(np.float32(alpha)))
        b.fill_(float(np.float32(1.0 - alpha)))
        return self._states[(h, w)]

    def reset(self) -> None:
        """Forget the previous frame; on CUDA ordered after the work already submitted (the compute stream)."""
        torch = self.torch
        with torch.inference_mode():
            if self.stream is None:
                for _, first, _, _ in self._states.values():
                    first.fill_(1.0)
                return
            with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
                for _, first, _, _ in self._states.values():
                    first.fill_(1.0)

    def clear(self) -> None:
        self._states.clear()


class _FlowStates:
    """The flow-guided warp + blend on the device: ``engines.cuda_kernels.ref_flow_blend`` in torch ops, the same
    float32 steps, so the result equals the NumPy twin (and the CPU smoother). The previous output is kept per
    frame size; it runs eagerly after the captured graph, since its inputs change with every frame."""

    def __init__(self, torch, device) -> None:
        self.torch, self.device = torch, device
        self._prev: dict[tuple[int, int], object] = {}

    def _up_axis(self, n_out: int, n_in: int):
        """(first sample, second sample, fraction) per output index, as cv2.resize INTER_LINEAR (``up_coord``)."""
        torch = self.torch
        s = ((torch.arange(n_out, dtype=torch.float32, device=self.device) + 0.5) * float(np.float32(n_in / n_out))
             + -0.5).clamp_(min=0.0)
        i0 = torch.clamp(s.long(), max=n_in - 1)
        return i0, torch.clamp(i0 + 1, max=n_in - 1), s - i0.float()

    def blend(self, prev, cur, flow, weight):
        """uint8 [H,W,3] ``prev`` warped by the float32 [SH,SW,2] backward ``flow``, blended with uint8 [H,W,3]
        ``cur`` by the float32 [SH,SW] ``weight`` -> uint8 [H,W,3]."""
        torch = self.torch
        h, w = cur.shape[:2]
        sh, sw = weight.shape
        ya, yb, fy = self._up_axis(h, sh)
        xa, xb, fx = self._up_axis(w, sw)
        fy, fx = fy[:, None, None], fx[None, :, None]
        small = torch.cat([flow, weight[..., None]], dim=2)                 # u, v, weight
        top = small[ya][:, xa] * (1.0 - fx) + small[ya][:, xb] * fx
        bot = small[yb][:, xa] * (1.0 - fx) + small[yb][:, xb] * fx
        full = top * (1.0 - fy) + bot * fy
        u, v, wt = full[..., 0], full[..., 1], full[..., 2:]
        sx = (torch.arange(w, dtype=torch.float32, device=self.device)[None, :] + u).clamp_(-1e9, 1e9)
        sy = (torch.arange(h, dtype=torch.float32, device=self.device)[:, None] + v).clamp_(-1e9, 1e9)
        x0, y0 = torch.floor(sx).long(), torch.floor(sy).long()
        ax, ay = (sx - x0.float())[..., None], (sy - y0.float())[..., None]
        xl, xr = x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1)
        yt, yd = y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1)
        p = prev.float()
        top = p[yt, xl] * (1.0 - ax) + p[yt, xr] * ax
        bot = p[yd, xl] * (1.0 - ax) + p[yd, xr] * ax
        warped = torch.floor(top * (1.0 - ay) + bot * ay + 0.5)
        keep = 1.0 - wt
        out = torch.round((wt * warped + keep * cur.float()) / (wt + keep + float(np.float32(1e-5))))
        return out.clamp_(0.0, 255.0).to(torch.uint8)

    def apply(self, u8, steps):
        """uint8 [N,H,W,3] consecutive frames; ``steps[i]`` is (flow, weight) tensors or None (frame i starts
        afresh). Returns the blended uint8 [N,H,W,3] and keeps the last frame for the next batch."""
        torch = self.torch
        key = tuple(u8.shape[1:3])
        prev, outs = self._prev.get(key), []
        for i, step in enumerate(steps):
            cur = u8[i]
            if step is not None and prev is not None:
                cur = self.blend(prev, cur, *step)
            outs.append(cur)
            prev = cur
        self._prev[key] = prev.clone()      # u8 may be a graph's static output, overwritten by the next replay
        return torch.stack(outs)

    def clear(self) -> None:
        self._prev.clear()


def _pack_flow(flow, n: int) -> tuple[list[bool], tuple[int, int], np.ndarray] | None:
    """Per-frame (flow, weight) or None -> (which frames have a step, (SH, SW), one float32 array of them all)."""
    if flow is None:
        return None
    if len(flow) != n:
        raise EngineError(f"torch: {n} frames but {len(flow)} flow entries")
    steps = [(np.asarray(f, np.float32), np.asarray(w, np.float32)) for f, w in (s for s in flow if s is not None)]
    shape = steps[0][1].shape if steps else (1, 1)
    if any(f.shape != (*shape, 2) or w.shape != shape for f, w in steps):
        raise EngineError("torch: every flow entry of a batch must be [SH,SW,2] with a [SH,SW] weight")
    packed = np.concatenate([a.ravel() for f, w in steps for a in (f, w)]) if steps else np.zeros(1, np.float32)
    return [s is not None for s in flow], shape, packed


def _unpack_flow(packed, has: list[bool], shape: tuple[int, int]) -> list:
    """The (flow, weight) views of the packed tensor, None where a frame has no step."""
    sh, sw = shape
    steps, at = [], 0
    for present in has:
        if not present:
            steps.append(None)
            continue
        f = packed[at:at + sh * sw * 2].view(sh, sw, 2)
        at += sh * sw * 2
        steps.append((f, packed[at:at + sh * sw].view(sh, sw)))
        at += sh * sw
    return steps


class _Graphs:
    """One CUDA graph per input shape: captured once after warm-up runs, replayed after (eager when disabled)."""

    def __init__(self, torch, device, stream, enabled: bool) -> None:
        self.torch, self.device, self.stream, self.enabled = torch, device, stream, enabled
        self._entries: dict[tuple, tuple] = {}

    def run(self, key: tuple, make_inputs, fn, fill, preserve=()):
        """On the compute stream: fill the static inputs, replay (or run eagerly), return the output tensor."""
        if key not in self._entries:
            inputs = make_inputs()
            self._entries[key] = self._capture(inputs, fn, preserve) if self.enabled else (None, inputs, None)
        graph, inputs, out = self._entries[key]
        fill(*inputs)
        if graph is None:
            return fn(*inputs)
        graph.replay()
        return out

    def _capture(self, inputs, fn, preserve) -> tuple:
        """(graph, static inputs, static output); warm-up runs change ``preserve`` (the EMA state): restored after."""
        torch = self.torch
        saved = [t.clone() for t in preserve]
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(self.stream)
        with torch.cuda.stream(side):
            for _ in range(3):      # cudnn autotuning and lazy init stay out of the capture
                fn(*inputs)
        self.stream.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            out = fn(*inputs)
        self.stream.wait_stream(side)
        for t, v in zip(preserve, saved):
            t.copy_(v)
        return graph, inputs, out

    def clear(self) -> None:
        self._entries.clear()


class _Slot:
    """One batch in flight on CUDA: pinned host buffers, device staging buffers, three events."""

    def __init__(self, torch, device) -> None:
        self.pinned = GrowingBuffers(lambda n: torch.empty(n, dtype=torch.uint8, pin_memory=True))
        self.dev = GrowingBuffers(lambda n: torch.empty(n, dtype=torch.uint8, device=device))
        self.uploaded, self.computed, self.downloaded = (torch.cuda.Event() for _ in range(3))

    def host(self, name: str, nbytes: int):
        return self.pinned.get(name, nbytes)[:nbytes]

    def device(self, name: str, nbytes: int):
        return self.dev.get(name, nbytes)[:nbytes]


class TorchEngine:
    """The PyTorch student.  ``device`` is "cuda", "cuda:N" or "cpu"; fp16 + channels_last + CUDA graphs on CUDA."""

    device_smoothing = ("ema", "flow")      # blends streamer.inflight_stage leaves to the engine

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str = "cuda", *,
                 precision: str | None = None, channels_last: bool = True, cuda_graphs: bool = True,
                 in_flight: int = 3, model=None) -> None:
        ok, why = availability(device)
        if not ok:
            raise EngineError(f"torch backend unavailable: {why}")
        import torch  # optional heavy dependency (about 1 s to import), imported here on purpose

        self.torch, self.device = torch, torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        precision = precision or ("fp16" if self.is_cuda else "fp32")
        if precision not in ("fp16", "fp32"):
            raise EngineError(f"torch: precision must be fp16 or fp32, not {precision!r}")
        if precision == "fp16" and not self.is_cuda:
            raise EngineError("torch: fp16 needs CUDA (use fp32 on CPU)")
        if model is None:
            model, name = load_student(weights_path), Path(weights_path).stem
        else:
            name = "student"
        memory_format = torch.channels_last if (channels_last and self.is_cuda) else torch.contiguous_format
        self.ops = _StudentOps(torch, model, self.device, torch.float16 if precision == "fp16" else torch.float32,
                               memory_format)
        self.model = self.ops.model
        self._lock = threading.Lock()
        self._up = self._compute = self._down = None
        slots, dev_name = [], "cpu"
        if self.is_cuda:
            torch.backends.cudnn.benchmark = True
            with torch.cuda.device(self.device):
                self._up, self._compute, self._down = (torch.cuda.Stream() for _ in range(3))
                slots = [_Slot(torch, self.device) for _ in range(max(1, in_flight))]
            dev_name = f"{self.device} {torch.cuda.get_device_name(self.device)}"
        self._inflight: InFlight[_Slot] = InFlight("torch", slots)
        self._ema = _EmaStates(torch, self.device, self._compute)
        self._flow = _FlowStates(torch, self.device)
        self._graphs = _Graphs(torch, self.device, self._compute, cuda_graphs and self.is_cuda)
        self._state_style: bytes | None = None   # the style a stateful network's carried state belongs to
        # a stateful network (student-hq) blends every frame of a batch with the same carried moments: one frame a call
        self._stateful = getattr(getattr(self.model, "config", None), "frame_moments", False)
        self.info = EngineInfo(backend="torch", model=name, device=dev_name, precision=precision,
                               uint8_io=self.is_cuda, max_batch=1 if self._stateful else 1 << 16)

    # ---------------------------------------------------------------- uint8 path
    def submit_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                     ema_alpha: float | None = None, flow=None) -> int:
        """Enqueue uint8 [N,H,W,3] frames; returns a ticket for ``collect`` (the contract of ``engines.inflight``).

        ``ema_alpha``: the temporal EMA. ``flow``: one entry per frame, ``(flow SHxSWx2, weight SHxSW)`` float32
        from ``streamer.temporal.FlowSmoothing.estimate`` or None where the frame starts afresh: the previous
        output is warped and blended on the device (``_FlowStates``)."""
        frames, style = check_uint8_inputs(self.info, frames, style)
        if ema_alpha is not None and flow is not None:
            raise EngineError("torch: ema_alpha and flow smoothing are exclusive")
        packed = _pack_flow(flow, frames.shape[0])
        with self._lock, self._inflight.submit() as sub:
            self._restart_state_when_changed(style, frames.shape[1:3])
            if self.is_cuda:
                sub.finish = self._enqueue_cuda(sub.slot, frames, style, bgr, ema_alpha, packed)
            else:
                out = self._run_cpu(frames, style, bgr, ema_alpha, packed)
                sub.finish = lambda: out
        return sub.ticket

    def _run_cpu(self, frames: np.ndarray, style: np.ndarray, bgr: bool, ema_alpha: float | None,
                 packed=None) -> np.ndarray:
        torch = self.torch
        n, h, w, _ = frames.shape
        with torch.inference_mode():
            ema = self._ema.get(h, w, ema_alpha) if ema_alpha is not None else None
            out = self.ops.u8_pipeline(torch.from_numpy(frames), torch.from_numpy(style), bgr, ema)
            if packed is not None:
                has, shape, values = packed
                out = self._flow.apply(out, _unpack_flow(torch.from_numpy(values), has, shape))
            return out.numpy()

    def _enqueue_cuda(self, slot: _Slot, frames: np.ndarray, style: np.ndarray, bgr: bool, ema_alpha: float | None,
                      packed=None):
        """Upload, compute and download one batch on the three streams; returns the submission's ``finish``."""
        torch = self.torch
        n, h, w, _ = frames.shape
        nb, sb = frames.nbytes, style.nbytes
        h_in, h_out, h_style = slot.host("in", nb), slot.host("out", nb), slot.host("style", sb)
        d_in, d_out, d_style = slot.device("in", nb), slot.device("out", nb), slot.device("style", sb)
        h_in.numpy()[:] = frames.reshape(-1)
        h_style.numpy()[:] = style.reshape(-1).view(np.uint8)
        if packed is not None:
            has, shape, values = packed
            h_flow, d_flow = slot.host("flow", values.nbytes), slot.device("flow", values.nbytes)
            h_flow.numpy()[:] = values.view(np.uint8)
        with torch.cuda.device(self.device), torch.inference_mode():
            with torch.cuda.stream(self._up):
                d_in.copy_(h_in, non_blocking=True)
                d_style.copy_(h_style, non_blocking=True)
                if packed is not None:
                    d_flow.copy_(h_flow, non_blocking=True)
                slot.uploaded.record(self._up)
            with torch.cuda.stream(self._compute):
                self._compute.wait_event(slot.uploaded)
                out = self._compute_u8(d_in, d_style, (n, h, w), bgr, ema_alpha)
                if packed is not None:      # eager, after the graph: the flow changes with every frame
                    out = self._flow.apply(out, _unpack_flow(d_flow.view(torch.float32), has, shape))
                d_out.copy_(out.reshape(-1))
                slot.computed.record(self._compute)
            with torch.cuda.stream(self._down):
                self._down.wait_event(slot.computed)
                h_out.copy_(d_out, non_blocking=True)
                slot.downloaded.record(self._down)

        def finish() -> np.ndarray:
            slot.downloaded.synchronize()
            return h_out.numpy().reshape(n, h, w, 3).copy()     # a copy: the pinned buffer is reused
        return finish

    def _compute_u8(self, d_in, d_style, shape: tuple[int, int, int], bgr: bool, ema_alpha: float | None):
        """On the compute stream: the uint8 pipeline through this shape's graph; returns its output tensor."""
        torch = self.torch
        n, h, w = shape
        ema = self._ema.get(h, w, ema_alpha) if ema_alpha is not None else None

        def make_inputs():
            return (torch.empty((n, h, w, 3), dtype=torch.uint8, device=self.device),
                    torch.empty((n, STYLE_DIM), dtype=torch.float32, device=self.device))

        def fill(s_in, s_style):
            s_in.view(-1).copy_(d_in)
            s_style.view(-1).copy_(d_style.view(torch.float32))

        # the warm-up runs of a capture change the EMA state and a stateful network's carried state: both restored
        carried = (self.model.state_tensor(self.device),) if self._stateful else ()
        return self._graphs.run(("u8", n, h, w, bgr, ema is not None), make_inputs,
                                lambda u8, st: self.ops.u8_pipeline(u8, st, bgr, ema), fill,
                                preserve=(tuple(ema[:2]) if ema else ()) + carried)

    def discard_in_flight(self) -> None:
        """Drop the batches an earlier run left uncollected (see engines.inflight.InFlight.discard)."""
        self._inflight.discard()

    def collect(self, ticket: int) -> np.ndarray:
        """Wait for a submitted batch; returns uint8 [N,H,W,3] (results come back in submission order)."""
        return self._inflight.collect(ticket)

    def infer_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                    ema_alpha: float | None = None, flow=None) -> np.ndarray:
        """uint8 [N,H,W,3] RGB (or BGR) in and out; on CUDA only uint8 (and the low-resolution flow) crosses PCIe."""
        return self.collect(self.submit_uint8(frames, style, bgr=bgr, ema_alpha=ema_alpha, flow=flow))

    def reset_smoothing(self) -> None:
        """Forget the previous frame (seek, scene cut, style switch); ordered after the work already submitted."""
        self._ema.reset()
        self.reset_state()

    def reset_state(self) -> None:
        """A stateful network (the high-quality tier's carried whole-frame moments) starts afresh on the next frame;
        on the compute stream, so after the work already submitted."""
        with self._lock:
            self._reset_state_locked()

    def _reset_state_locked(self) -> None:
        if self._stateful:
            stream = self.torch.cuda.stream(self._compute) if self.is_cuda else contextlib.nullcontext()
            with self.torch.inference_mode(), stream:
                self.model.reset_state()

    def _restart_state_when_changed(self, style: np.ndarray, size: tuple[int, int]) -> None:
        """The carried moments belong to one style and one scale: another one starts them afresh (lock held)."""
        if not self._stateful:
            return
        key = style[-1].tobytes() + bytes(f"{size[0]}x{size[1]}", "ascii")
        if key != self._state_style:
            self._state_style = key
            self._reset_state_locked()

    # ---------------------------------------------------------------- float contract
    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        torch = self.torch
        style = check_inputs(self.info, frames, style)
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        h, w = frames.shape[2:]
        # on the compute stream, where the uint8 path and the carried state's resets run: one order for all of them
        stream = torch.cuda.stream(self._compute) if self.is_cuda else contextlib.nullcontext()
        with self._lock, torch.inference_mode(), stream:
            self._restart_state_when_changed(style, (h, w))
            x, s = torch.from_numpy(frames), torch.from_numpy(style)
            if self.is_cuda:
                x, s = x.pin_memory().to(self.device, non_blocking=True), s.to(self.device)
            y = self.ops.network(self.ops.pad_convert(x), s)[:, :, :h, :w].float()
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
                x = torch.rand((batch, 3, ph, pw), generator=gen, device=self.device).to(self.ops.dtype)
                return (x.contiguous(memory_format=self.ops.memory_format),
                        torch.randn((batch, STYLE_DIM), generator=gen, device=self.device))

            def run():
                self._graphs.run(("model", batch, ph, pw), make_inputs, self.ops.network, lambda *a: None)

            for _ in range(5):
                run()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self._compute)
            for _ in range(iters):
                run()
            end.record(self._compute)
            end.synchronize()
            self._reset_state_locked()   # random frames went through a stateful network: nothing of them carries on
            self._state_style = None
        return batch * iters / (start.elapsed_time(end) / 1000.0)

    def close(self) -> None:
        """Finish the batches in flight (results dropped), then let go of graphs, EMA state and slots."""
        self._inflight.flush()
        self._graphs.clear()
        self._ema.clear()
        self._flow.clear()
        self._inflight.slots = []
