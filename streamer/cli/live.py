"""``streamer live``: parse the flags, run a :class:`~streamer.live.LiveSession`, print its stats."""
from __future__ import annotations

import json
import sys

from streamer.cli.options import add_report_flags, add_run_flags, run_options
from streamer.errors import InputError
from streamer.live import LiveOptions, LiveSession


def register(sub) -> None:
    p = sub.add_parser(
        "live", help="stylize a camera, stream or file live into a window, virtual camera, UDP stream or file",
        description="Stylize a live source. SRC: a camera index or /dev/videoN, a URL (rtsp://, http://, udp://, ...), "
                    "or a video file played at its own frame rate. SINK (repeatable): window, virtualcam[:/dev/videoN], "
                    "udp://HOST:PORT or srt://... (H.264 in MPEG-TS), null, or a video file to record. "
                    "Window hotkeys: n/p style, +/- strength, s smoothing, q or Esc quit.")
    p.add_argument("--source", "-i", default="0", metavar="SRC", help="camera index, /dev/videoN, URL or file (default 0)")
    p.add_argument("--sink", "-o", action="append", default=None, metavar="SINK",
                   help="window (default), virtualcam, udp://HOST:PORT, srt://..., null, or FILE; repeat for several")
    add_run_flags(p, adaptive=True, strength_help="0..1 (default 1; +/- in the window)")
    p.add_argument("--styles", default="", help="comma-separated styles to cycle with n/p (the --style comes first)")
    p.add_argument("--width", type=int, default=None, help="requested camera width")
    p.add_argument("--height", type=int, default=None, help="requested camera height")
    p.add_argument("--fps", type=float, default=None, help="requested camera frame rate")
    p.add_argument("--loop", action="store_true", help="a file source starts over at its end")
    p.add_argument("--reconnect", action="store_true", help="wait for an unplugged camera or ended stream to come back")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--stream-preset", default="ultrafast", help="x264 preset for udp/srt sinks (ultrafast, veryfast, ...)")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace a recording FILE that exists")
    add_report_flags(p, json_help="print one JSON object with the run's stats at exit",
                     quiet_help="no stats line each second")
    p.set_defaults(func=cmd_live)


def options_from_args(args) -> LiveOptions:
    styles = [s.strip() for s in (args.styles or "").split(",") if s.strip()]
    if args.styles and not styles:
        raise InputError(f"--styles {args.styles!r}: no style named (comma-separated names or image paths)")
    return LiveOptions(**run_options(args), source=args.source, sinks=args.sink or ["window"], styles=styles,
                       width=args.width, height=args.height, fps=args.fps, loop=args.loop, reconnect=args.reconnect,
                       overwrite=args.overwrite, duration=args.duration, stream_preset=args.stream_preset)


def cmd_live(args) -> int:
    line = None if args.quiet else (lambda text: print(f"streamer live: {text}", file=sys.stderr, flush=True))
    session = LiveSession(options_from_args(args), stats_line=line)
    try:
        result = session.run()
    finally:
        session.close()
    if args.json:
        print(json.dumps(result.as_dict()), flush=True)
    elif not args.quiet:
        lat = result.latency_ms
        print(f"streamer live: {result.frames_out} frames out of {result.frames_in} in {result.seconds:.1f} s "
              f"({result.output_fps:.1f} fps out, {result.dropped} dropped), latency p50 {lat['p50']:.0f} ms "
              f"p95 {lat['p95']:.0f} ms p99 {lat['p99']:.0f} ms; {result.ended}", file=sys.stderr, flush=True)
    if session.interrupted is not None:
        raise session.interrupted
    return 0
