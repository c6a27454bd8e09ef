"""``streamer build-engine``, ``validate-engine`` and ``validate-torch``: the GPU backends' commands.

Wired into ``streamer.cli`` through ``register(subparsers)``; each handler returns an exit code.

- ``build-engine MODEL.onnx``: build (or find in the cache) the TensorRT engine for this GPU.
- ``validate-engine MODEL.onnx``: polygraphy's Comparator runs the engine (TrtRunner) and ONNX
  Runtime FP32 (OnnxrtRunner) on the same real-image batch and checks PSNR (the right
  measure for images: a few fp16 LSBs of error in a 0..1 image are invisible, elementwise
  atol/rtol is not).
- ``validate-torch MODEL.pt MODEL.onnx``: the PyTorch backend (fp16 on CUDA by default)
  against ONNX Runtime FP32, with the same PSNR check (>= 40 dB by default).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from streamer.errors import EXIT_FAILURE, EXIT_OK, InputError, StreamerError

DEFAULT_MIN_PSNR = 40.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB between two images in 0..peak (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def sample_batch(width: int, height: int, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real image content (bundled paintings, resized) as [N,3,H,W] float32 0..1, and N style vectors."""
    import cv2

    from streamer.styles import bundled_styles, read_rgb

    rng = np.random.default_rng(seed)
    paths = list(bundled_styles().values())
    frames = []
    for i in range(batch):
        img = read_rgb(paths[i % len(paths)])
        frames.append(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA).transpose(2, 0, 1))
    style = (rng.standard_normal((batch, 100)) * 0.5).astype(np.float32)
    return np.stack(frames).astype(np.float32) / 255.0, style


def _size(text: str) -> tuple[int, int]:
    from engines.tensorrt import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: {what} not found")
    return p


def _profiles(args):
    from engines.tensorrt import make_profile

    try:
        return (make_profile(_size(args.min), _size(args.opt), _size(args.max), args.batch_opt, args.batch_max),)
    except ValueError as exc:
        raise InputError(f"profile: {exc}") from None


def _engine_error(exc: Exception) -> StreamerError:
    return StreamerError(str(exc))


def _report(args, result: dict, lines: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        print("\n".join(lines))


# ---------------------------------------------------------------- build-engine

def cmd_build_engine(args) -> int:
    from engines import tensorrt as trt_backend
    from engines.base import EngineError

    onnx_path = _existing(args.onnx, "ONNX model")
    profiles = _profiles(args)
    ok, why = trt_backend.availability()
    if not ok:
        raise StreamerError(f"cannot build a TensorRT engine: {why}")
    t0 = time.perf_counter()
    try:
        path, built = trt_backend.ensure_engine(onnx_path, precision=args.precision, profiles=profiles,
                                                cache_dir=args.cache_dir, rebuild=args.rebuild,
                                                log=(lambda *_: None) if args.json else print)
    except EngineError as exc:
        raise _engine_error(exc) from None
    result = {"engine": str(path), "built": built, "seconds": round(time.perf_counter() - t0, 2),
              "precision": args.precision, "profiles": [p.describe() for p in profiles]}
    _report(args, result, [f"{'built' if built else 'cached'}: {path} ({result['seconds']} s)"])
    return EXIT_OK


# ---------------------------------------------------------------- validate-engine

def compare_with_polygraphy(engine_bytes: bytes, onnx_path: Path, feed: dict, min_psnr: float) -> tuple[bool, float]:
    """TrtRunner vs OnnxrtRunner (CPU, FP32) through polygraphy's Comparator; (passed, PSNR of 'stylized')."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc

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


def cmd_validate_engine(args) -> int:
    from engines import tensorrt as trt_backend
    from engines.base import EngineError

    onnx_path = _existing(args.onnx, "ONNX model")
    w, h = _size(args.size)
    ok, why = trt_backend.availability()
    if not ok:
        raise StreamerError(f"cannot validate a TensorRT engine: {why}")
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        raise StreamerError("validate-engine needs polygraphy (pip install polygraphy)") from None
    try:
        engine = Path(args.engine) if args.engine else trt_backend.ensure_engine(
            onnx_path, precision=args.precision, cache_dir=args.cache_dir, log=print)[0]
    except EngineError as exc:
        raise _engine_error(exc) from None
    frames, style = sample_batch(trt_backend.round_up(w), trt_backend.round_up(h), args.batch)
    passed, value = compare_with_polygraphy(engine.read_bytes(), onnx_path, {"frame": frames, "style": style},
                                            args.min_psnr)
    result = {"engine": str(engine), "onnx": str(onnx_path), "psnr_db": round(value, 2), "min_psnr_db": args.min_psnr,
              "passed": passed, "size": f"{w}x{h}", "batch": args.batch}
    _report(args, result, [f"{'PASS' if passed else 'FAIL'}: TensorRT vs ONNX Runtime FP32 at {w}x{h} "
                           f"batch {args.batch}: PSNR {value:.2f} dB (minimum {args.min_psnr})"])
    return EXIT_OK if passed else EXIT_FAILURE


# ---------------------------------------------------------------- validate-torch

def validate_torch(weights: Path, onnx_path: Path, *, device: str = "cuda", precision: str | None = None,
                   width: int = 1280, height: int = 720, batch: int = 2, min_psnr: float = DEFAULT_MIN_PSNR) -> dict:
    """TorchEngine (float and uint8 paths) against ONNX Runtime FP32 on the same real-image batch."""
    from engines.onnxruntime import OnnxRuntimeEngine
    from engines.torch import TorchEngine

    frames, style = sample_batch(width, height, batch)
    ref = OnnxRuntimeEngine(onnx_path).infer(frames, style)
    engine = TorchEngine(weights, device, precision=precision)
    try:
        out = engine.infer(frames, style)
        u8_in = np.ascontiguousarray((frames * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))
        u8_out = engine.infer_uint8(u8_in, style)
    finally:
        engine.close()
    ref_u8 = OnnxRuntimeEngine(onnx_path).infer(u8_in.transpose(0, 3, 1, 2).astype(np.float32) / 255, style)
    value = psnr(out, ref)
    value_u8 = psnr(u8_out.astype(np.float32), np.floor(np.clip(ref_u8, 0, 1) * 255 + 0.5).transpose(0, 2, 3, 1),
                    peak=255.0)
    return {"device": engine.info.device, "precision": engine.info.precision, "size": f"{width}x{height}",
            "batch": batch, "psnr_db": round(value, 2), "psnr_uint8_db": round(value_u8, 2),
            "max_abs_diff": float(np.abs(out - ref).max()), "min_psnr_db": min_psnr,
            "passed": bool(value >= min_psnr and value_u8 >= min_psnr)}


def cmd_validate_torch(args) -> int:
    from engines.base import EngineError

    weights = _existing(args.weights, "student weights")
    onnx_path = _existing(args.onnx, "ONNX model")
    w, h = _size(args.size)
    try:
        result = validate_torch(weights, onnx_path, device=args.device, precision=args.precision, width=w, height=h,
                                batch=args.batch, min_psnr=args.min_psnr)
    except EngineError as exc:
        raise _engine_error(exc) from None
    _report(args, result, [f"{'PASS' if result['passed'] else 'FAIL'}: torch {result['precision']} on "
                           f"{result['device']} vs ONNX Runtime FP32 at {w}x{h} batch {args.batch}: "
                           f"PSNR {result['psnr_db']:.2f} dB float, {result['psnr_uint8_db']:.2f} dB uint8 path "
                           f"(minimum {args.min_psnr})"])
    return EXIT_OK if result["passed"] else EXIT_FAILURE


# ---------------------------------------------------------------- registration

def register(subparsers) -> None:
    p = subparsers.add_parser("build-engine", help="build the TensorRT engine for this GPU (cached)",
                              description="Build an FP16 (or FP32) TensorRT engine from the student ONNX with one "
                                          "optimization profile, reusing the timing cache; cached by ONNX hash, "
                                          "TensorRT version, GPU, precision and profile.")
    p.add_argument("onnx", metavar="MODEL.onnx")
    p.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    p.add_argument("--min", default="64x64", help="smallest frame WxH (default 64x64)")
    p.add_argument("--opt", default="1920x1080", help="frame size the kernels are tuned for (default 1920x1080)")
    p.add_argument("--max", default="3840x2160", help="largest frame WxH (default 3840x2160)")
    p.add_argument("--batch-opt", type=int, default=1, help="batch size the kernels are tuned for (default 1)")
    p.add_argument("--batch-max", type=int, default=4, help="largest batch (default 4)")
    p.add_argument("--cache-dir", default=None, help="engine cache (default $STREAMER_CACHE/tensorrt or ~/.cache/streamer/tensorrt)")
    p.add_argument("--rebuild", action="store_true", help="build even if a cached engine matches")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_build_engine)

    p = subparsers.add_parser("validate-engine", help="check a TensorRT engine against ONNX Runtime FP32 (polygraphy)")
    p.add_argument("onnx", metavar="MODEL.onnx")
    p.add_argument("--engine", default=None, help="engine file (default: the cached one, built if missing)")
    p.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    p.add_argument("--cache-dir", default=None)
    _validation_args(p)
    p.set_defaults(func=cmd_validate_engine)

    p = subparsers.add_parser("validate-torch", help="check the PyTorch backend against ONNX Runtime FP32")
    p.add_argument("weights", metavar="MODEL.pt")
    p.add_argument("onnx", metavar="MODEL.onnx")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--precision", default=None, choices=("fp16", "fp32"), help="default fp16 on CUDA, fp32 on CPU")
    _validation_args(p)
    p.set_defaults(func=cmd_validate_torch)


def _validation_args(p) -> None:
    p.add_argument("--size", default="1280x720", help="test frame WxH (default 1280x720)")
    p.add_argument("--batch", type=int, default=2, help="frames per batch (default 2)")
    p.add_argument("--min-psnr", type=float, default=DEFAULT_MIN_PSNR, help="pass mark in dB (default 40)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
