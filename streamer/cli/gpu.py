"""``streamer build-engine``, ``validate-engine`` and ``validate-torch``: parse, call streamer.gpu_tools, print."""
from __future__ import annotations

import json

from streamer.cli.options import add_debug_flag
from streamer.errors import EXIT_FAILURE, EXIT_OK
from streamer.gpu_tools import DEFAULT_MIN_PSNR, build_engine, existing, parse_size, validate_engine, validate_torch


def _report(args, result: dict, line: str) -> None:
    print(json.dumps(result) if args.json else line)


def cmd_build_engine(args) -> int:
    result = build_engine(existing(args.onnx, "ONNX model"), precision=args.precision, min_size=args.min,
                          opt_size=args.opt, max_size=args.max, batch_opt=args.batch_opt, batch_max=args.batch_max,
                          cache_dir=args.cache_dir, rebuild=args.rebuild, log=(lambda *_: None) if args.json else print)
    _report(args, result, f"{'built' if result['built'] else 'cached'}: {result['engine']} ({result['seconds']} s)")
    return EXIT_OK


def cmd_validate_engine(args) -> int:
    r = validate_engine(existing(args.onnx, "ONNX model"), engine=args.engine, size=args.size, batch=args.batch,
                        precision=args.precision, cache_dir=args.cache_dir, min_psnr=args.min_psnr)
    _report(args, r, f"{'PASS' if r['passed'] else 'FAIL'}: TensorRT vs ONNX Runtime FP32 at {r['size']} "
                     f"batch {r['batch']}: PSNR {r['psnr_db']:.2f} dB (minimum {r['min_psnr_db']})")
    return EXIT_OK if r["passed"] else EXIT_FAILURE


def cmd_validate_torch(args) -> int:
    w, h = parse_size(args.size)
    r = validate_torch(existing(args.weights, "student weights"), existing(args.onnx, "ONNX model"), device=args.device,
                       precision=args.precision, width=w, height=h, batch=args.batch, min_psnr=args.min_psnr)
    _report(args, r, f"{'PASS' if r['passed'] else 'FAIL'}: torch {r['precision']} on {r['device']} vs ONNX Runtime "
                     f"FP32 at {w}x{h} batch {args.batch}: PSNR {r['psnr_db']:.2f} dB float, "
                     f"{r['psnr_uint8_db']:.2f} dB uint8 path (minimum {args.min_psnr})")
    return EXIT_OK if r["passed"] else EXIT_FAILURE


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
    _json_and_debug(p)
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


def _json_and_debug(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_debug_flag(p)


def _validation_args(p) -> None:
    p.add_argument("--size", default="1280x720", help="test frame WxH (default 1280x720)")
    p.add_argument("--batch", type=int, default=2, help="frames per batch (default 2)")
    p.add_argument("--min-psnr", type=float, default=DEFAULT_MIN_PSNR, help="pass mark in dB (default 40)")
    _json_and_debug(p)
