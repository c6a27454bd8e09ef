"""TensorRT loader side: ONNX -> serialized engine, the engine cache and the timing cache.

Split from the runtime (``engines.tensorrt``) the way polygraphy separates loaders from
runners: building needs the TensorRT builder, the ONNX parser and a minute of GPU time
once per model, GPU and TensorRT version; running needs pycuda, streams and buffers on
every frame.  ``streamer build-engine`` uses only this module.

Written to the TensorRT 10/11 Python API: ``build_serialized_network``, optimization
profiles over named inputs, and a persisted ``ITimingCache``.  FP16 comes from
``BuilderFlag.FP16`` before 10.12 and from a strongly-typed FP16 ONNX
(``engines.fp16_onnx``, made on the fly when given an fp32 ONNX) on 10.12+ and 11,
where the weak-typing flags are deprecated or gone.

Caches, both under ``default_cache_dir()`` unless told otherwise:

- engines, keyed by the ONNX's sha256, the TensorRT version, the GPU name and compute
  capability, the precision and the profiles (``cache_fields``/``cache_key``): a plan is
  only valid for the exact TensorRT and GPU that built it;
- the timing cache, one file per TensorRT version *and* GPU (``timing_cache_path``):
  TensorRT refuses a cache from another device or version, and one shared file would
  make two GPUs in a machine keep refusing each other's.  A refusal is reported in one
  line and the build goes on without the stale cache (``attach_timing_cache``).

Importing this module needs neither tensorrt nor pycuda; ``availability()`` says why the
backend cannot run.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engines.base import STYLE_DIM, EngineError, one_line
from engines.carried_state import state_as_input

MULTIPLE = 8                        # the student downsamples by 4; 8 is safe for every layer
STRONG_TYPING_FROM = (10, 12)       # BuilderFlag.FP16 deprecated in 10.12, removed in 11
DEFAULT_WORKSPACE = 2 << 30
INSTALL_HINT = "pip install 'streamer[tensorrt]'; the TensorRT builder wheels come from NVIDIA's package index"

Log = Callable[[str], None]


# ------------------------------------------------------------------ availability

def availability() -> tuple[bool, str]:
    """(True, what will run) or (False, why not), without raising."""
    try:
        import tensorrt as trt  # optional heavy dependency, imported here on purpose (GPU installs only)
    except ImportError:
        return False, f"package tensorrt not installed ({INSTALL_HINT})"
    except Exception as exc:        # a wheel without its libnvinfer, a broken install
        return False, f"tensorrt cannot be loaded: {one_line(exc)}"
    try:
        import pycuda.driver as cuda  # optional heavy dependency, imported here on purpose (GPU installs only)
    except ImportError:
        return False, "pycuda not installed (pip install pycuda; it builds against the CUDA toolkit)"
    except Exception as exc:
        return False, f"pycuda cannot be loaded (CUDA driver library missing?): {one_line(exc)}"
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:
        return False, f"CUDA driver error: {one_line(exc)}"
    if count == 0:
        return False, "no CUDA GPU (the CUDA driver sees no device)"
    name = cuda.Device(0).name()
    return True, f"tensorrt {trt.__version__} on {name}"


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


# ------------------------------------------------------------------ cache keys and paths

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


def timing_cache_path(cache_dir: str | os.PathLike, trt_version: str, gpu_name: str,
                      compute_capability: tuple[int, int]) -> Path:
    """The timing cache file for this TensorRT and GPU (readable names: people clear these by hand)."""
    gpu = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "gpu"
    version = re.sub(r"[^A-Za-z0-9.]+", "-", trt_version)
    return Path(cache_dir) / f"timing-{version}-{gpu}-sm{compute_capability[0]}{compute_capability[1]}.cache"


def _atomic_write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.streamer-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------ build

_LOGGER = None


def trt_logger():
    """One logger for the process: TensorRT keeps a pointer to it in every builder and runtime."""
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt  # optional heavy dependency, imported here on purpose (GPU installs only)

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def gpu_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) of a CUDA device: what engines and timing caches are only valid for."""
    import pycuda.driver as cuda  # optional heavy dependency, imported here on purpose (GPU installs only)

    cuda.init()
    dev = cuda.Device(device)
    return dev.name(), tuple(dev.compute_capability())


def attach_timing_cache(config, path: Path | None, log: Log = print) -> bool:
    """Give ``config`` the timing cache saved at ``path``; True when the build's cache should be saved back.

    ``IBuilderConfig.set_timing_cache`` reports a cache from another TensorRT or device by
    returning False (with ``ignore_mismatch=False``), not by raising, so the value is
    checked: a refused cache costs one warning line and the build goes on with an empty
    cache, whose result then replaces the stale file.
    """
    if path is None:
        return False
    old = path.read_bytes() if path.is_file() else b""
    if _set_timing_cache(config, old):
        return True
    if old and _set_timing_cache(config, b""):
        log(f"warning: TensorRT refused the timing cache {path} (another TensorRT or GPU, or damaged); "
            f"building without it")
        return True
    log(f"warning: TensorRT refused {'the timing cache ' + str(path) if old else 'an empty timing cache'}; "
        f"building without a timing cache")
    return False


def _set_timing_cache(config, serialized: bytes) -> bool:
    try:
        cache = config.create_timing_cache(serialized)
    except Exception:   # noqa: BLE001 - a damaged file must cost a warning, not the build
        return False
    return cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))


def _parse_onnx(trt, builder, onnx_path, strong: bool):
    """The network definition of the ONNX (strongly typed when FP16 comes from the graph's types)."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger())
    if not parser.parse(state_as_input(onnx_path), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT cannot parse the ONNX: {errors}")
    return network, parser          # the parser must outlive the network's use


def _builder_config(trt, builder, precision: str, strong: bool, profiles, workspace: int):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision == "fp16" and not strong:
        config.set_flag(trt.BuilderFlag.FP16)
    for p in profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in p.shapes().items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    return config


def build_serialized(onnx_path: str | os.PathLike, profiles=DEFAULT_PROFILES, precision: str = "fp16",
                     timing_cache: str | os.PathLike | None = None, workspace: int = DEFAULT_WORKSPACE,
                     log: Log = print) -> bytes:
    """Parse the ONNX and build a serialized engine (a plan); loads and saves the timing cache if a path is given.

    ``onnx_path`` must already be the strongly-typed FP16 ONNX when ``fp16_strongly_typed()``
    holds for this TensorRT and precision is fp16 (``ensure_engine`` sees to it).
    """
    import tensorrt as trt  # optional heavy dependency, imported here on purpose (GPU installs only)

    if precision not in ("fp16", "fp32"):
        raise EngineError(f"tensorrt: precision must be fp16 or fp32, not {precision!r}")
    builder = trt.Builder(trt_logger())
    strong = precision == "fp16" and fp16_strongly_typed(trt.__version__)
    network, _parser = _parse_onnx(trt, builder, onnx_path, strong)
    config = _builder_config(trt, builder, precision, strong, profiles, workspace)
    cache_path = Path(timing_cache) if timing_cache else None
    save_cache = attach_timing_cache(config, cache_path, log)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    if save_cache:
        _atomic_write(cache_path, memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))


def ensure_engine(onnx_path: str | os.PathLike, *, precision: str = "fp16", profiles=DEFAULT_PROFILES,
                  cache_dir: str | os.PathLike | None = None, device: int = 0, rebuild: bool = False,
                  log: Log = print) -> tuple[Path, bool]:
    """The cached engine for this ONNX, GPU, TensorRT, precision and profiles, built if missing: (path, built)."""
    import tensorrt as trt  # optional heavy dependency, imported here on purpose (GPU installs only)

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError(f"{onnx_path}: model file not found")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    gpu, cc = gpu_identity(device)
    fields = cache_fields(sha256_file(onnx_path), trt.__version__, gpu, cc, precision, profiles)
    path = engine_path_for(cache_dir, onnx_path, cache_key(fields))
    if path.is_file() and not rebuild:
        return path, False
    source = onnx_path
    if precision == "fp16" and fp16_strongly_typed(trt.__version__):
        from engines.fp16_onnx import convert_file   # onnx: over a second to import, kept off every command's start-up

        source = convert_file(onnx_path, cache_dir / f"{onnx_path.stem}-{fields['onnx_sha256'][:16]}.fp16.onnx")
    log(f"building TensorRT {trt.__version__} {precision} engine for {gpu} from {onnx_path.name} "
        f"(profiles: {'; '.join(p.describe() for p in profiles)}); this takes a minute once")
    plan = build_serialized(source, profiles, precision, log=log,
                            timing_cache=timing_cache_path(cache_dir, trt.__version__, gpu, cc))
    _atomic_write(path, plan)
    _atomic_write(path.with_suffix(".json"), json.dumps(fields, indent=1).encode())
    return path, True
