"""``streamer`` command line: argument parsing and user-facing errors only; the work is in streamer.convert.

Subcommands register themselves: each module in :data:`SUBCOMMANDS` (built in) or
:data:`EXTENSIONS` (other work: live, bench, build-engine, ...; imported if present) has a
``register(subparsers)`` that adds a parser and sets ``func=handler(args) -> exit code``.

Errors are one line, ``streamer: error: FILE: problem``, with exit code 2 for bad input or usage,
130/143 for SIGINT/SIGTERM, 1 for anything else; ``--debug`` adds the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import traceback
from typing import Callable

from streamer.temporal import DEFAULT_SMOOTH, SMOOTH_MODES

from streamer import __version__
from streamer.errors import EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, Interrupted, StreamerError, one_line

PROG = "streamer"
# Modules of other work that add subcommands when they exist (each defines register(subparsers)).
EXTENSIONS = ("streamer.gpu_cli", "streamer.live", "streamer.bench")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    p.add_argument("--debug", action="store_true", help="show tracebacks and FFmpeg's log")


# --- convert ------------------------------------------------------------------------------------
def register_convert(sub) -> None:
    from streamer.processing import DEFAULT_MAX_SIZE

    p = sub.add_parser("convert", help="stylize a video, an image, or a directory of them",
                       description="Stylize INPUT (video, image or directory) into OUTPUT. Video keeps its size, "
                                   "frame count, timestamps, rotation and audio.")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("output", metavar="OUTPUT")
    p.add_argument("--style", "-s", default="starry_night",
                   help="image path or bundled style name (see `streamer styles`; default starry_night)")
    p.add_argument("--strength", type=float, default=1.0, help="0..1, mix of style and the clip's own look (default 1)")
    p.add_argument("--max-size", type=int, default=None,
                   help=f"longer side of the processing resolution (default {DEFAULT_MAX_SIZE}, "
                        "capped by the model: the teacher takes 384)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    p.add_argument("--model", default=None,
                   help="student | teacher | identity | PATH.onnx|.pt (default: student if bundled, else teacher)")
    p.add_argument("--smooth", default=DEFAULT_SMOOTH, choices=SMOOTH_MODES,
                   help=f"temporal smoothing between frames (default {DEFAULT_SMOOTH}: flow-guided, measured best)")
    p.add_argument("--crf", type=int, default=18, help="quality for x264/x265/vp9 (lower is better; default 18)")
    p.add_argument("--preset", default="veryfast", help="x264/x265 speed preset (default veryfast, as in OBS)")
    p.add_argument("--codec", default="auto",
                   help="video encoder: auto (h264_nvenc on the GPU path when it opens, else libx264), or any FFmpeg encoder")
    p.add_argument("--batch", type=int, default=1, help="frames per engine call (default 1)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace OUTPUT if it exists")
    _common(p)
    p.set_defaults(func=cmd_convert)


class _Progress:
    """tqdm bar on a terminal only: frames, fps, ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def start(self, source) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=source.frame_count or None, unit="frame", desc=source.path.name, leave=False,
                        dynamic_ncols=True, file=sys.stderr)

    def frame(self, _frame) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_convert(args) -> int:
    from pathlib import Path

    from streamer.convert import ConvertOptions, Converter

    opts = ConvertOptions(style=args.style, strength=args.strength, max_size=args.max_size, backend=args.backend,
                          model=args.model, smooth=args.smooth, codec=args.codec, crf=args.crf, preset=args.preset,
                          batch=args.batch, overwrite=args.overwrite, threads=args.threads)
    progress = _Progress(sys.stderr.isatty() and not args.quiet and not args.json)
    conv = Converter(opts)
    try:
        if Path(args.input).is_dir():
            return _convert_dir(conv, args, progress)
        result = conv.convert(args.input, args.output, on_start=progress.start, on_frame=progress.frame)
    finally:
        progress.close()
        conv.close()
    for notice in result.notices:
        if not args.quiet:
            print(f"{PROG}: {notice}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict()))
    elif not args.quiet:
        print(f"{result.output}: {result.frames} frame{'s' * (result.frames != 1)}, {result.width}x{result.height}, "
              f"{result.fps:.1f} fps ({result.backend}/{result.model}, style {result.style})")
    return 0


def _convert_dir(conv, args, progress) -> int:
    def on_file(r) -> None:
        progress.close()
        if args.json or args.quiet and r.status != "failed":
            return
        if r.status == "failed":
            print(f"{PROG}: error: {r.error}", file=sys.stderr)
        else:
            extra = f" ({r.frames} frames, {r.fps:.1f} fps)" if r.status == "ok" else " (exists)"
            print(f"{r.status:7} {r.output}{extra}")

    results = conv.convert_dir(args.input, args.output, on_file=on_file, on_start=progress.start,
                               on_frame=progress.frame)
    counts = {k: sum(r.status == k for r in results) for k in ("ok", "skipped", "failed")}
    if args.json:
        print(json.dumps({"input": args.input, "output": args.output, **counts,
                          "files": [r.as_dict() for r in results]}))
    elif not args.quiet:
        print(f"{len(results)} files: {counts['ok']} converted, {counts['skipped']} skipped, {counts['failed']} failed")
    failed = [r.exit_code for r in results if r.status == "failed"]
    if not failed:
        return 0
    return EXIT_USAGE if all(c == EXIT_USAGE for c in failed) else EXIT_FAILURE


# --- styles, info ----------------------------------------------------------------------------------
def register_styles(sub) -> None:
    p = sub.add_parser("styles", help="list the bundled styles")
    _common(p)
    p.set_defaults(func=cmd_styles)


def cmd_styles(args) -> int:
    from streamer.styles import bundled_styles

    styles = bundled_styles()
    if args.json:
        print(json.dumps({name: str(path) for name, path in styles.items()}))
    else:
        for name, path in styles.items():
            print(f"{name:24} {path}")
    return 0


def register_info(sub) -> None:
    p = sub.add_parser("info", help="versions, models and which backends can run here")
    _common(p)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    import platform

    import av
    import cv2
    import numpy
    import onnxruntime

    from engines.select import backend_report
    from streamer.model_registry import STUDENT_ONNX, default_model

    info = {
        "streamer": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "numpy": numpy.__version__, "av": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))) and
                  {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
        "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__,
        "default_model": default_model(), "student_onnx": str(STUDENT_ONNX) if STUDENT_ONNX.is_file() else None,
        "backends": [{"name": n, "available": ok, "reason": why} for n, ok, why in backend_report()],
    }
    if args.json:
        print(json.dumps(info))
        return 0
    for key in ("streamer", "python", "platform", "numpy", "av", "opencv", "onnxruntime", "default_model"):
        print(f"{key:14} {info[key]}")
    print(f"{'ffmpeg':14} libavcodec {info['ffmpeg'].get('libavcodec')}, libavformat {info['ffmpeg'].get('libavformat')}")
    print("backends:")
    for b in info["backends"]:
        print(f"  {b['name']:12} {'yes' if b['available'] else 'no ':3}  {b['reason']}")
    return 0


SUBCOMMANDS: list[Callable] = [register_convert, register_styles, register_info]


# --- entry point ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Real-time neural style transfer for video.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in SUBCOMMANDS:
        register(sub)
    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name != name:       # the module exists but is broken: say so instead of hiding it
                raise
            continue
        module.register(sub)
    return parser


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Console entry point. After an interrupt it exits at once (os._exit) once the temp output is gone:
    native thread pools (ONNX Runtime, FFmpeg) still winding down must not race interpreter shutdown."""
    code = run(argv)
    if code in (EXIT_SIGINT, EXIT_SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def run(argv: list[str] | None = None) -> int:
    """Parse argv, run the subcommand, map every error to its exit code; returns the code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if debug:
        import av

        av.logging.set_libav_level(av.logging.WARNING)   # FFmpeg prints straight to stderr (see streamer.sources)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return args.func(args)
    except (Interrupted, KeyboardInterrupt) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else EXIT_SIGINT
        if debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return code
    except StreamerError as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:   # noqa: BLE001 - the promise is one line, never a traceback
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
