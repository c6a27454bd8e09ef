"""The GPU backends' tools behind ``streamer build-engine``, ``validate-engine`` and ``validate-torch``.

- :func:`build_engine`: build (or find in the cache) the TensorRT engine for this GPU.
- :func:`validate_engine`: polygraphy's Comparator runs the engine (TrtRunner) and ONNX Runtime FP32
  (OnnxrtRunner) on the same real-image batch and checks PSNR (the right measure for images: a few fp16
  LSBs of error in a 0..1 image are invisible, elementwise atol/rtol is not).
- :func:`validate_torch`: the PyTorch backend (fp16 on CUDA by default) against ONNX Runtime FP32, with
  the same PSNR check (>= 40 dB by default).
Each returns a dict (the ``--json`` object); a backend that cannot run here is a one-line StreamerError.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from engines import tensorrt_build as trt_backend
from engines.base import EngineError
from engines.onnxruntime import OnnxRuntimeEngine
from engines.torch import TorchEngine
from streamer.errors import InputError, StreamerError
from streamer.media_files import read_image
from streamer.metrics import psnr
from streamer.styles import bundled_styles

DEFAULT_MIN_PSNR = 40.0


def sample_batch(width: int, height: int, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real image content (bundled paintings, resized) as [N,3,H,W] float32 0..1, and N random style vectors."""
    rng = np.random.default_rng(seed)
    paths = list(bundled_styles().values())
    frames = [cv2.resize(read_image(paths[i % len(paths)]), (width, height), interpolation=cv2.INTER_AREA)
              .transpose(2, 0, 1) for i in range(batch)]
    style = (rng.standard_normal((batch, 100)) * 0.5).astype(np.float32)
    return np.stack(frames).astype(np.float32) / 255.0, style


def parse_size(text: str) -> tuple[int, int]:
    try:
        return trt_backend.parse_size(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: {what} not found")
    return p


def _require_tensorrt(what: str) -> None:
    ok, why = trt_backend.availability()
    if not ok:
        raise StreamerError(f"cannot {what}: {why}")


def build_engine(onnx_path: Path, *, precision: str = "fp16", min_size: str = "64x64", opt_size: str = "1920x1080",
                 max_size: str = "3840x2160", batch_opt: int = 1, batch_max: int = 4, cache_dir: str | None = None,
                 rebuild: bool = False, log=print) -> dict:
    """Build (or find in the cache) the TensorRT engine for this GPU with one optimization profile."""
    try:
        profiles = (trt_backend.make_profile(parse_size(min_size), parse_size(opt_size), parse_size(max_size),
                                             batch_opt, batch_max),)
    except ValueError as exc:
        raise InputError(f"profile: {exc}") from None
    _require_tensorrt("build a TensorRT engine")
    t0 = time.perf_counter()
    try:
        path, built = trt_backend.ensure_engine(onnx_path, precision=precision, profiles=profiles, cache_dir=cache_dir,
                                                rebuild=rebuild, log=log)
    except EngineError as exc:
        raise StreamerError(str(exc)) from None
    return {"engine": str(path), "built": built, "seconds": round(time.perf_counter() - t0, 2),
            "precision": precision, "profiles": [p.describe() for p in profiles]}


def compare_with_polygraphy(engine_bytes: bytes, onnx_path: Path, feed: dict, min_psnr: float) -> tuple[bool, float]:
    """TrtRunner vs OnnxrtRunner (CPU, FP32) through polygraphy's Comparator; (passed, PSNR of 'stylized')."""
    # polygraphy is optional (the tensorrt extra): imported only when a TensorRT engine is validated
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx  # optional, see above
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner  # optional, see above
    from polygraphy.comparator import Comparator, CompareFunc  # optional, see above

    try:
        from polygraphy.comparator import PsnrCompareFunc       # polygraphy >= 0.50
        compare = PsnrCompareFunc(psnr_threshold=min_psnr)
    except ImportError:
        # older polygraphy: mean absolute error of one 8-bit level, with our PSNR checked below
        compare = CompareFunc.simple(atol=1.0 / 255, rtol=0.0, check_error_stat="mean")
    runners = [TrtRunner(EngineFromBytes(engine_bytes), name="tensorrt"),
               OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["cpu"]), name="onnxruntime-fp32")]
    results = Comparator.run(runners, data_loader=[feed])
    passed = bool(Comparator.compare_accuracy(results, compare_func=compare))
    outputs = [iters[0]["stylized"] for _, iters in results.items()]
    value = psnr(outputs[0], outputs[1])
    return passed and value >= min_psnr, value


def validate_engine(onnx_path: Path, *, engine: str | None = None, size: str = "1280x720", batch: int = 2,
                    precision: str = "fp16", cache_dir: str | None = None, min_psnr: float = DEFAULT_MIN_PSNR,
                    log=print) -> dict:
    """A TensorRT engine (the cached one, built if missing) against ONNX Runtime FP32 on real pixels."""
    w, h = parse_size(size)
    _require_tensorrt("validate a TensorRT engine")
    try:
        import polygraphy  # noqa: F401 - optional dependency, checked here for a one-line error
    except ImportError:
        raise StreamerError("validate-engine needs polygraphy (pip install polygraphy)") from None
    try:
        path = Path(engine) if engine else trt_backend.ensure_engine(onnx_path, precision=precision,
                                                                     cache_dir=cache_dir, log=log)[0]
    except EngineError as exc:
        raise StreamerError(str(exc)) from None
    frames, style = sample_batch(trt_backend.round_up(w), trt_backend.round_up(h), batch)
    passed, value = compare_with_polygraphy(path.read_bytes(), onnx_path, {"frame": frames, "style": style}, min_psnr)
    return {"engine": str(path), "onnx": str(onnx_path), "psnr_db": round(value, 2), "min_psnr_db": min_psnr,
            "passed": passed, "size": f"{w}x{h}", "batch": batch}


def validate_carried_state(weights: Path, onnx_path: Path, *, device: str = "cuda", width: int = 640,
                           height: int = 360, frames: int = 8, min_psnr: float = DEFAULT_MIN_PSNR) -> dict:
    """A stateful student (student-hq) on a short clip, frame by frame: TorchEngine's uint8 path (CUDA graphs
    replaying its in-place state) against ONNX Runtime FP32 carrying `state_out` itself. The clip: one real image
    with a bright square sliding in from the left edge, so the carried moments matter."""
    still, style = sample_batch(width, height, 1)
    base = (still[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    side = height // 3
    clip = []
    for i in range(frames):
        f = base.copy()
        f[height // 3:height // 3 + side, :max(0, (i - 2) * side // 4)] = (240, 40, 200)
        clip.append(f)
    ref_engine = OnnxRuntimeEngine(onnx_path)
    try:
        engine = TorchEngine(weights, device)
    except EngineError as exc:
        raise StreamerError(str(exc)) from None
    values = []
    try:
        for f in clip:
            got = engine.infer_uint8(f[None], style)[0]
            ref = ref_engine.infer(f.transpose(2, 0, 1)[None].astype(np.float32) / 255, style)[0]
            values.append(psnr(got, np.floor(np.clip(ref, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)))
    finally:
        engine.close()
    return {"device": engine.info.device, "precision": engine.info.precision, "size": f"{width}x{height}",
            "frames": frames, "psnr_db_min": round(min(values), 2), "min_psnr_db": min_psnr,
            "passed": bool(min(values) >= min_psnr)}


def validate_torch(weights: Path, onnx_path: Path, *, device: str = "cuda", precision: str | None = None,
                   width: int = 1280, height: int = 720, batch: int = 2, min_psnr: float = DEFAULT_MIN_PSNR) -> dict:
    """TorchEngine (float and uint8 paths) against ONNX Runtime FP32 on the same real-image batch."""
    frames, style = sample_batch(width, height, batch)
    ref = OnnxRuntimeEngine(onnx_path).infer(frames, style)
    try:
        engine = TorchEngine(weights, device, precision=precision)
    except EngineError as exc:
        raise StreamerError(str(exc)) from None
    try:
        out = engine.infer(frames, style)
        u8_in = np.ascontiguousarray((frames * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))
        engine.reset_state()   # a stateful student (student-hq): each call on its own, as the references run
        u8_out = engine.infer_uint8(u8_in, style)
    finally:
        engine.close()
    ref_u8 = OnnxRuntimeEngine(onnx_path).infer(u8_in.transpose(0, 3, 1, 2).astype(np.float32) / 255, style)
    ref_u8 = np.floor(np.clip(ref_u8, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    value, value_u8 = psnr(out, ref), psnr(u8_out, ref_u8)
    return {"device": engine.info.device, "precision": engine.info.precision, "size": f"{width}x{height}",
            "batch": batch, "psnr_db": round(value, 2), "psnr_uint8_db": round(value_u8, 2),
            "max_abs_diff": float(np.abs(out - ref).max()), "min_psnr_db": min_psnr,
            "passed": bool(value >= min_psnr and value_u8 >= min_psnr)}
