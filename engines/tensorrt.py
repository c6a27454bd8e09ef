"""TensorRT backend: FP16 engines built from the student ONNX, cached, run on CUDA streams through pycuda.

Written to the TensorRT 10/11 Python API: named I/O tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``, ``build_serialized_network``,
optimization profiles and a persisted timing cache.  FP16 comes from
``BuilderFlag.FP16`` before 10.12 and from a strongly-typed FP16 ONNX
(``engines.fp16_onnx``, made on the fly when given an fp32 ONNX) on 10.12+ and 11,
where the weak-typing flags are deprecated or gone.

Engines are cached on disk, keyed by the ONNX's sha256, the TensorRT version, the
GPU name and compute capability, the precision and the profiles (``cache_key``).

Run time: one execution context, three streams.  A frame's uint8 pixels go up on
the upload stream, are converted, run and converted back on the compute stream
(``engines.cuda_kernels``: resize/pad to NCHW, crop to uint8 HWC and the temporal
EMA), and come down on the download stream; events order the three, so with
several frames in flight (``submit_uint8`` / ``collect``) the upload of frame t+1,
the compute of frame t and the download of frame t-1 overlap.  No float frame
crosses PCIe on that path.

Importing this module needs neither tensorrt nor pycuda; ``availability()`` says why
the backend cannot run.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engines.base import STYLE_DIM, EngineError, EngineInfo, check_inputs, pad_to_multiple
from engines.cuda_kernels import check_uint8_inputs

MULTIPLE = 8                        # the student downsamples by 4; 8 is safe for every layer
STRONG_TYPING_FROM = (10, 12)       # BuilderFlag.FP16 deprecated in 10.12, removed in 11
DEFAULT_WORKSPACE = 2 << 30
INSTALL_HINT = "pip install 'streamer[tensorrt]'; the TensorRT builder wheels come from NVIDIA's package index"


# ------------------------------------------------------------------ availability

def availability() -> tuple[bool, str]:
    """(True, what will run) or (False, why not), without raising."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, f"package tensorrt not installed ({INSTALL_HINT})"
    except Exception as exc:        # a wheel without its libnvinfer, a broken install
        return False, f"tensorrt cannot be loaded: {_first_line(exc)}"
    try:
        import pycuda.driver as cuda
    except ImportError:
        return False, "pycuda not installed (pip install pycuda; it builds against the CUDA toolkit)"
    except Exception as exc:
        return False, f"pycuda cannot be loaded (CUDA driver library missing?): {_first_line(exc)}"
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:
        return False, f"CUDA driver error: {_first_line(exc)}"
    if count == 0:
        return False, "no CUDA GPU (the CUDA driver sees no device)"
    name = cuda.Device(0).name()
    return True, f"tensorrt {trt.__version__} on {name}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def fp16_strongly_typed(trt_version: str) -> bool:
    """True where FP16 must come from the graph's types (10.12+, 11) rather than BuilderFlag.FP16."""
    return parse_version(trt_version)[:2] >= STRONG_TYPING_FROM


# ------------------------------------------------------------------ profiles

@dataclass(frozen=True)
class Profile:
    """One optimization profile over the frame input: (N, H, W) at min, opt and max."""
    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def __post_init__(self) -> None:
        for a, b in ((self.min, self.opt), (self.opt, self.max)):
            if any(x > y for x, y in zip(a, b)):
                raise ValueError(f"profile must have min <= opt <= max per dimension, got {self.min}, {self.opt}, {self.max}")
        if any(x % MULTIPLE for s in (self.min, self.opt, self.max) for x in s[1:]):
            raise ValueError(f"profile heights and widths must be multiples of {MULTIPLE}")

    def contains(self, n: int, h: int, w: int) -> bool:
        return all(lo <= x <= hi for lo, x, hi in zip(self.min, (n, h, w), self.max))

    def shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """Per input tensor: (min, opt, max) shapes, as IOptimizationProfile.set_shape takes them."""
        frame = tuple((n, 3, h, w) for n, h, w in (self.min, self.opt, self.max))
        style = tuple((n, STYLE_DIM) for n, _, _ in (self.min, self.opt, self.max))
        return {"frame": frame, "style": style}

    def describe(self) -> str:
        return " .. ".join(f"{n}x{w}x{h}" for n, h, w in (self.min, self.opt, self.max)) + " (NxWxH min .. opt .. max)"


def round_up(x: int, multiple: int = MULTIPLE) -> int:
    return -(-x // multiple) * multiple


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 1920x1080)") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return w, h


def make_profile(min_size=(64, 64), opt_size=(1920, 1080), max_size=(3840, 2160),
                 batch_opt: int = 1, batch_max: int = 4) -> Profile:
    """A profile from (width, height) sizes, rounded up to the network's multiple."""
    def hw(size):
        return round_up(size[1]), round_up(size[0])
    return Profile((1, *hw(min_size)), (batch_opt, *hw(opt_size)), (batch_max, *hw(max_size)))


DEFAULT_PROFILES = (make_profile(),)


def select_profile(profiles, n: int, h: int, w: int) -> int:
    """Index of the profile to run an (N, H, W) padded batch with: one that contains it, whose opt is nearest."""
    fits = [i for i, p in enumerate(profiles) if p.contains(n, h, w)]
    if not fits:
        ranges = "; ".join(p.describe() for p in profiles)
        raise EngineError(f"tensorrt: batch {n} of {w}x{h} is outside the engine's profiles ({ranges}); "
                          f"rebuild with `streamer build-engine` and a wider --min/--max/--batch-max")
    volume = n * h * w
    return min(fits, key=lambda i: (abs(np.prod(profiles[i].opt) - volume), i))


# ------------------------------------------------------------------ cache

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_fields(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: tuple[int, int],
                 precision: str, profiles) -> dict:
    """Everything an engine depends on; an engine built for one set of fields is not loaded for another."""
    return {"onnx_sha256": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name,
            "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}", "precision": precision,
            "profiles": [asdict(p) for p in profiles]}


def cache_key(fields: dict) -> str:
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    base = os.environ.get("STREAMER_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                            "streamer")
    return Path(base) / "tensorrt"


def engine_path_for(cache_dir: Path, onnx_path: Path, key: str) -> Path:
    return Path(cache_dir) / f"{onnx_path.stem}-{key}.engine"


def _atomic_write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.streamer-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------ build

_LOGGER = None


def _trt_logger():
    """One logger for the process: TensorRT keeps a pointer to it in every builder and runtime."""
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def build_serialized(onnx_path: str | os.PathLike, profiles=DEFAULT_PROFILES, precision: str = "fp16",
                     timing_cache: str | os.PathLike | None = None, workspace: int = DEFAULT_WORKSPACE) -> bytes:
    """Parse the ONNX and build a serialized engine (a plan); loads and saves the timing cache if a path is given.

    ``onnx_path`` must already be the strongly-typed FP16 ONNX when ``fp16_strongly_typed()``
    holds for this TensorRT and precision is fp16 (``ensure_engine`` sees to it).
    """
    import tensorrt as trt

    if precision not in ("fp16", "fp32"):
        raise EngineError(f"tensorrt: precision must be fp16 or fp32, not {precision!r}")
    logger = _trt_logger()
    builder = trt.Builder(logger)
    strong = precision == "fp16" and fp16_strongly_typed(trt.__version__)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT cannot parse the ONNX: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision == "fp16" and not strong:
        config.set_flag(trt.BuilderFlag.FP16)
    for p in profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in p.shapes().items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    old = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(old)
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    if cache_path:
        _atomic_write(cache_path, memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))


def gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(device)
    return dev.name(), tuple(dev.compute_capability())


def ensure_engine(onnx_path: str | os.PathLike, *, precision: str = "fp16", profiles=DEFAULT_PROFILES,
                  cache_dir: str | os.PathLike | None = None, device: int = 0, rebuild: bool = False,
                  log=print) -> tuple[Path, bool]:
    """The cached engine for this ONNX, GPU, TensorRT, precision and profiles, built if missing: (path, built)."""
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError(f"{onnx_path}: model file not found")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    gpu, cc = gpu_identity(device)
    fields = cache_fields(sha256_file(onnx_path), trt.__version__, gpu, cc, precision, profiles)
    key = cache_key(fields)
    path = engine_path_for(cache_dir, onnx_path, key)
    if path.is_file() and not rebuild:
        return path, False
    source = onnx_path
    if precision == "fp16" and fp16_strongly_typed(trt.__version__):
        from engines.fp16_onnx import convert_file

        source = convert_file(onnx_path, cache_dir / f"{onnx_path.stem}-{fields['onnx_sha256'][:16]}.fp16.onnx")
    log(f"building TensorRT {trt.__version__} {precision} engine for {gpu} from {onnx_path.name} "
        f"(profiles: {'; '.join(p.describe() for p in profiles)}); this takes a minute once")
    plan = build_serialized(source, profiles, precision, timing_cache=cache_dir / f"timing-{trt.__version__}.cache")
    _atomic_write(path, plan)
    _atomic_write(path.with_suffix(".json"), json.dumps(fields, indent=1).encode())
    return path, True


# ------------------------------------------------------------------ runtime

class _Slot:
    """Pinned host and device buffers of one frame batch in flight, grown on demand."""

    def __init__(self, cuda) -> None:
        self.cuda = cuda
        self.sizes: dict[str, int] = {}
        self.host: dict[str, np.ndarray] = {}
        self.dev: dict = {}
        self.uploaded, self.computed, self.downloaded = cuda.Event(), cuda.Event(), cuda.Event()
        self.busy = False

    def host_buf(self, name: str, nbytes: int) -> np.ndarray:
        if self.host.get(name) is None or self.host[name].nbytes < nbytes:
            self.host[name] = self.cuda.pagelocked_empty(max(nbytes, 1), np.uint8)
        return self.host[name][:nbytes]

    def dev_buf(self, name: str, nbytes: int):
        if self.sizes.get(name, -1) < nbytes:
            self.dev[name] = self.cuda.mem_alloc(max(nbytes, 1))
            self.sizes[name] = nbytes
        return self.dev[name]


class TensorRTEngine:
    """The student on TensorRT.  ``infer`` follows the float contract; ``infer_uint8`` keeps floats on the GPU."""

    def __init__(self, onnx_path: str | os.PathLike, *, precision: str = "fp16", profiles=DEFAULT_PROFILES,
                 cache_dir: str | os.PathLike | None = None, engine_path: str | os.PathLike | None = None,
                 in_flight: int = 3, device: int = 0, log=print) -> None:
        ok, why = availability()
        if not ok:
            raise EngineError(f"tensorrt backend unavailable: {why}")
        import pycuda.driver as cuda
        import tensorrt as trt

        from engines.cuda_kernels import PycudaKernels

        self._cuda, self._trt = cuda, trt
        self._cuda_ctx = cuda.Device(device).retain_primary_context()   # shared with torch/cupy/the runtime API
        self._lock = threading.Lock()
        with self._pushed():
            if engine_path is None:
                engine_path, _ = ensure_engine(onnx_path, precision=precision, profiles=profiles,
                                               cache_dir=cache_dir, device=device, log=log)
            self._runtime = trt.Runtime(_trt_logger())      # must outlive the engine
            self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self._engine is None:
                raise EngineError(f"{engine_path}: TensorRT cannot deserialize this engine (other version or GPU?)")
            self._context = self._engine.create_execution_context()
            self._kernels = PycudaKernels()
            self._up, self._compute, self._down = cuda.Stream(), cuda.Stream(), cuda.Stream()
            self._slots = [_Slot(cuda) for _ in range(max(1, in_flight))]
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        if names != {"frame", "style", "stylized"}:
            raise EngineError(f"{engine_path}: not a student engine (tensors {sorted(names)})")
        self._dtype = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self.profiles = [self._read_profile(i) for i in range(self._engine.num_optimization_profiles)]
        self._profile = 0
        self._ema_state = None          # device float32 HxWx3 and its (h, w)
        self._ema_first = True
        self._next_ticket = 0
        self._pending: dict[int, tuple] = {}
        gpu, _ = gpu_identity(device)
        self.info = EngineInfo(backend="tensorrt", model=Path(onnx_path).stem, device=f"cuda:{device} {gpu}",
                               precision=precision, min_side=min(min(p.min[1:]) for p in self.profiles),
                               max_side=max(max(p.max[1:]) for p in self.profiles), multiple_of=MULTIPLE,
                               max_batch=max(p.max[0] for p in self.profiles), uint8_io=True)

    def _read_profile(self, index: int) -> Profile:
        lo, opt, hi = (tuple(s) for s in self._engine.get_tensor_profile_shape("frame", index))
        return Profile((lo[0], lo[2], lo[3]), (opt[0], opt[2], opt[3]), (hi[0], hi[2], hi[3]))

    @contextmanager
    def _pushed(self):
        self._cuda_ctx.push()
        try:
            yield
        finally:
            self._cuda_ctx.pop()

    # -- the three stages of one batch, enqueued without waiting
    def _enqueue(self, slot: _Slot, n: int, ph: int, pw: int, style: np.ndarray, upload, convert_in, convert_out,
                 download) -> None:
        cuda, ctx = self._cuda, self._context
        profile = select_profile(self.profiles, n, ph, pw)
        sbytes = style.astype(self._dtype["style"]).tobytes()
        hstyle = slot.host_buf("style", len(sbytes))
        hstyle[:] = np.frombuffer(sbytes, np.uint8)
        d_in = slot.dev_buf("net_in", n * 3 * ph * pw * self._dtype["frame"].itemsize)
        d_out = slot.dev_buf("net_out", n * 3 * ph * pw * self._dtype["stylized"].itemsize)
        d_style = slot.dev_buf("style", len(sbytes))
        upload(slot)
        cuda.memcpy_htod_async(d_style, hstyle, self._up)
        slot.uploaded.record(self._up)
        self._compute.wait_for_event(slot.uploaded)
        convert_in(slot, d_in)
        if profile != self._profile:
            self._context.set_optimization_profile_async(profile, self._compute.handle)
            self._profile = profile
        if not (ctx.set_input_shape("frame", (n, 3, ph, pw)) and ctx.set_input_shape("style", (n, STYLE_DIM))):
            raise EngineError(f"tensorrt: cannot set input shape {n}x3x{ph}x{pw}")
        ctx.set_tensor_address("frame", int(d_in))
        ctx.set_tensor_address("style", int(d_style))
        ctx.set_tensor_address("stylized", int(d_out))
        if not ctx.execute_async_v3(self._compute.handle):
            raise EngineError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
        convert_out(slot, d_out)
        slot.computed.record(self._compute)
        self._down.wait_for_event(slot.computed)
        download(slot)
        slot.downloaded.record(self._down)

    @contextmanager
    def _slot(self):
        """The next slot, marked busy until ``collect``; freed again if enqueueing fails."""
        slot = self._slots[self._next_ticket % len(self._slots)]
        if slot.busy:
            raise EngineError("tensorrt: too many batches in flight; collect() results in order first")
        slot.busy = True
        try:
            yield slot
        except BaseException:
            slot.busy = False
            raise

    def submit_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                     ema_alpha: float | None = None) -> int:
        """Enqueue uint8 [N,H,W,3] frames (RGB, or BGR); returns a ticket for ``collect``.

        With ``ema_alpha`` the output is blended with the previous output (the EMA of
        ``streamer.temporal``), on the GPU; ``reset_smoothing()`` forgets it.
        """
        frames, style = check_uint8_inputs(self.info, frames, style)
        n, h, w, _ = frames.shape
        ph, pw = round_up(h), round_up(w)
        from engines.cuda_kernels import to_nchw_launch, to_u8hwc_launch

        with self._lock, self._pushed(), self._slot() as slot:
            nbytes = frames.nbytes
            h_in, h_out = slot.host_buf("u8_in", nbytes), slot.host_buf("u8_out", nbytes)
            h_in[:] = frames.reshape(-1)
            d_u8_in, d_u8_out = slot.dev_buf("u8_in", nbytes), slot.dev_buf("u8_out", nbytes)
            prev = np.uintp(0)
            if ema_alpha is not None:
                if self._ema_state is None or self._ema_state[1] != (h, w):
                    self._ema_state = (self._cuda.mem_alloc(h * w * 3 * 4), (h, w))
                    self._ema_first = True
                prev = self._ema_state[0]
            first = self._ema_first
            self._ema_first = self._ema_first and ema_alpha is None

            def upload(s):
                self._cuda.memcpy_htod_async(d_u8_in, h_in, self._up)

            def convert_in(s, d_in):
                self._kernels.launch(to_nchw_launch(d_u8_in, d_in, n, h, w, w * 3, h, w, ph, pw, bgr,
                                                    self._dtype["frame"]), self._compute)

            def convert_out(s, d_out):
                self._kernels.launch(to_u8hwc_launch(d_out, d_u8_out, prev, n, h, w, ph, pw, w * 3, bgr,
                                                     self._dtype["stylized"], 1.0 if ema_alpha is None else ema_alpha,
                                                     first), self._compute)

            def download(s):
                self._cuda.memcpy_dtoh_async(h_out, d_u8_out, self._down)

            self._enqueue(slot, n, ph, pw, style, upload, convert_in, convert_out, download)
            return self._register(slot, h_out, (n, h, w, 3), np.uint8)

    def _register(self, slot: _Slot, host: np.ndarray, shape, dtype, crop=None) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        self._pending[ticket] = (slot, host, shape, dtype, crop)
        return ticket

    def collect(self, ticket: int) -> np.ndarray:
        """Wait for a submitted batch and return its frames (a copy; the pinned buffer is reused)."""
        slot, host, shape, dtype, crop = self._pending.pop(ticket)
        with self._pushed():
            slot.downloaded.synchronize()
        out = host.view(dtype).reshape(shape)
        out = (out[crop] if crop else out).copy()
        slot.busy = False
        return out

    def infer_uint8(self, frames: np.ndarray, style: np.ndarray, *, bgr: bool = False,
                    ema_alpha: float | None = None) -> np.ndarray:
        """uint8 [N,H,W,3] in, uint8 [N,H,W,3] out; only uint8 crosses PCIe."""
        return self.collect(self.submit_uint8(frames, style, bgr=bgr, ema_alpha=ema_alpha))

    def reset_smoothing(self) -> None:
        self._ema_first = True

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        padded, h, w = pad_to_multiple(np.ascontiguousarray(frames, dtype=np.float32), MULTIPLE)
        padded = np.ascontiguousarray(padded.astype(self._dtype["frame"]))
        n, _, ph, pw = padded.shape
        out_dtype = self._dtype["stylized"]
        with self._lock, self._pushed(), self._slot() as slot:
            h_in = slot.host_buf("f_in", padded.nbytes)
            h_in[:] = padded.reshape(-1).view(np.uint8)
            h_out = slot.host_buf("f_out", n * 3 * ph * pw * out_dtype.itemsize)

            def upload(s):
                self._cuda.memcpy_htod_async(s.dev["net_in"], h_in, self._up)

            def download(s):
                self._cuda.memcpy_dtoh_async(h_out, s.dev["net_out"], self._down)

            self._enqueue(slot, n, ph, pw, style, upload, lambda s, d: None, lambda s, d: None, download)
            ticket = self._register(slot, h_out, (n, 3, ph, pw), out_dtype, (slice(None), slice(None),
                                                                               slice(0, h), slice(0, w)))
        return self.collect(ticket).astype(np.float32, copy=False)

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer_uint8(np.full((batch, height, width, 3), 128, np.uint8), np.zeros((1, STYLE_DIM), np.float32))

    def close(self) -> None:
        if getattr(self, "_context", None) is None:
            return
        with self._pushed():
            for ticket in list(self._pending):
                self.collect(ticket)
            self._context = self._engine = self._runtime = None
            self._slots = []
            self._ema_state = None
        self._cuda_ctx.detach()

