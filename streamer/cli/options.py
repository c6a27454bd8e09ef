"""Option groups that several commands share, declared once (as polygraphy's argument groups are).

Each ``add_*`` adds one group of flags to a parser; :func:`run_options` turns the parsed run flags
into the keyword arguments of :class:`streamer.assembly.RunOptions` (and its subclasses). Library
code never sees an ``argparse.Namespace``.
"""
from __future__ import annotations

import argparse

from engines.onnxruntime import PROVIDERS
from engines.select import BACKENDS
from streamer.processing import DEFAULT_MAX_SIZE
from streamer.temporal import DEFAULT_SMOOTH, SMOOTH_MODES


def add_report_flags(p: argparse.ArgumentParser, *, json_help: str = "print one JSON object instead of text",
                     quiet_help: str = "no progress bar, no summary") -> None:
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--quiet", "-q", action="store_true", help=quiet_help)
    add_debug_flag(p)


def add_debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks and FFmpeg's log")


def add_engine_flags(p: argparse.ArgumentParser, *, backends: tuple[str, ...] | None = BACKENDS,
                     backend_default: str = "auto", backend_help: str | None = None) -> None:
    """--model, --backend, --threads: which network runs where (``backends=None``: the library checks the name)."""
    p.add_argument("--model", default=None,
                   help="student (the tier for the job) | student-live | student-hq | teacher-video | TIER/STYLE (a tier "
                        "tuned for a bundled style) | teacher | identity | PATH.onnx|.pt (default: student if bundled, "
                        "else teacher)")
    p.add_argument("--backend", default=backend_default, choices=backends, help=backend_help)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--provider", default="auto", metavar="NAME",
                   help=f"ONNX Runtime execution provider: auto (the best installed) or one of {', '.join(PROVIDERS)}; "
                        "one that is missing or fails falls back to cpu with a notice")


def max_size_or_auto(text: str) -> int | str:
    """``--max-size`` for live: a number of pixels, or ``auto`` (follow the machine's speed)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of pixels or auto") from None


def add_size_and_smoothing_flags(p: argparse.ArgumentParser, *, smooth_help: str = "", adaptive: bool = False,
                                 tile: bool = True) -> None:
    """--max-size and --smooth: the processing resolution and the temporal smoothing."""
    if adaptive:
        p.add_argument("--max-size", type=max_size_or_auto, default="auto", metavar="N|auto",
                       help=f"longer side of the processing resolution; auto (default) starts at {DEFAULT_MAX_SIZE} "
                            "and steps down and up a ladder to hold the source's frame rate, a number fixes it")
    else:
        p.add_argument("--max-size", type=int, default=None,
                       help=f"longer side of the processing resolution (default {DEFAULT_MAX_SIZE}; 0: the input's own "
                            "size; capped by the model: the teacher takes 384)")
    if tile:
        p.add_argument("--tile", type=int, default=None, metavar="N",
                       help="run frames whose longer side exceeds N in overlapping N x N tiles, blended without "
                            "seams (default: 1024-px tiles past 2048 px; 0: never)")
    p.add_argument("--smooth", default=DEFAULT_SMOOTH, choices=SMOOTH_MODES,
                   help=f"temporal smoothing between frames (default {DEFAULT_SMOOTH}: flow-guided){smooth_help}")


def add_style_flags(p: argparse.ArgumentParser, *, strength_help: str = "0..1, mix of style and the clip's own look "
                                                                         "(default 1)") -> None:
    p.add_argument("--style", "-s", default="starry_night",
                   help="image path or bundled style name (see `streamer styles`; default starry_night)")
    p.add_argument("--strength", type=float, default=1.0, help=strength_help)


def add_run_flags(p: argparse.ArgumentParser, *, adaptive: bool = False, **style_kw) -> None:
    """Everything :class:`~streamer.assembly.RunOptions` holds except --batch (only convert offers it)."""
    add_style_flags(p, **style_kw)
    add_engine_flags(p)
    p.add_argument("--arbitrary", action="store_true",
                   help="run the arbitrary student even where the bundled --style ships tuned (streamer styles)")
    add_size_and_smoothing_flags(p, adaptive=adaptive)


def run_options(args: argparse.Namespace) -> dict:
    """The RunOptions fields from parsed run flags."""
    max_size = None if args.max_size == "auto" else args.max_size
    return {"style": args.style, "strength": args.strength, "max_size": max_size, "backend": args.backend,
            "model": args.model, "smooth": args.smooth, "tile": getattr(args, "tile", None), "threads": args.threads, "provider": args.provider,
            "batch": getattr(args, "batch", 1), "tuned": not getattr(args, "arbitrary", False)}
