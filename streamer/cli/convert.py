"""``streamer convert INPUT OUTPUT``: a video, an image, or a folder of them."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tqdm import tqdm

from streamer import ray_convert
from streamer.assembly import pinned_model
from streamer.cli.options import add_report_flags, add_run_flags, run_options
from streamer.convert import ConvertOptions, ConvertResult, Converter, batch_jobs
from streamer.errors import EXIT_FAILURE, EXIT_USAGE, InputError, StreamerError, one_line
from streamer.sources import VideoFileSource

PROG = "streamer"
SEGMENT_S = 60.0           # --segment's default


def register(sub) -> None:
    p = sub.add_parser("convert", help="stylize a video, an image, or a directory of them",
                       description="Stylize INPUT (video, image or directory) into OUTPUT. Video keeps its size, "
                                   "frame count, timestamps, rotation and audio.")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("output", metavar="OUTPUT")
    add_run_flags(p)
    p.add_argument("--crf", type=int, default=18, help="quality for x264/x265/vp9 (lower is better; default 18)")
    p.add_argument("--preset", default="veryfast", help="x264/x265 speed preset (default veryfast, as in OBS)")
    p.add_argument("--codec", default="auto",
                   help="video encoder: auto (h264_nvenc on the GPU path when it opens, else libx264), or any FFmpeg encoder")
    p.add_argument("--batch", type=int, default=1, help="frames per engine call (default 1)")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--strict", action="store_true",
                   help="refuse a damaged input (truncated, corrupt frames) instead of converting what it holds "
                        "with a warning")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="convert a directory's files on a Ray cluster: auto, HOST:PORT, ray://HOST:PORT, or local "
                        "(a cluster started in this process); every node must see INPUT and OUTPUT at the same paths "
                        "(pip install 'streamer[ray]')")
    p.add_argument("--segment", type=float, default=None, metavar="SECONDS",
                   help=f"with --ray: videos longer than this are cut at keyframes into parts converted in parallel "
                        f"and joined without re-encoding (default {SEGMENT_S:g}; 0: whole files only)")
    add_report_flags(p)
    p.set_defaults(func=cmd_convert)


class Progress:
    """tqdm bar on a terminal only: frames, fps, ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def start(self, source: VideoFileSource, size: tuple[int, int]) -> None:
        if not self.enabled:
            return
        self.close()
        self.bar = tqdm(total=source.frame_count or None, unit="frame", desc=f"{source.path.name} @{size[0]}x{size[1]}",
                        leave=False, dynamic_ncols=True, file=sys.stderr)

    def frame(self, _frame) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_convert(args) -> int:
    opts = ConvertOptions(**run_options(args), codec=args.codec, crf=args.crf, preset=args.preset,
                          overwrite=args.overwrite, strict=args.strict)
    if args.ray is not None:
        opts = dataclasses.replace(opts, model=pinned_model(opts))     # the same model on every Ray node
    progress = Progress(sys.stderr.isatty() and not args.quiet and not args.json)
    conv = Converter(opts)
    try:
        if args.ray is not None:
            return convert_dir_on_ray(conv, args)
        if args.segment is not None:
            raise InputError("--segment splits long videos across a Ray cluster: it needs --ray")
        if Path(args.input).is_dir():
            return convert_dir(conv, args, progress)
        try:
            result = conv.convert(args.input, args.output, on_start=progress.start, on_frame=progress.frame)
        except StreamerError as exc:
            if args.json:   # a script reads one object whether the file converted or not, as in batch mode
                print(json.dumps(conv.batch_result(Path(args.input), Path(args.output), "failed",
                                                   error=one_line(exc), exit_code=exc.exit_code).as_dict()))
            raise
    finally:
        progress.close()
        conv.close()
    for notice in result.notices:
        if not args.quiet:
            print(f"{PROG}: {notice}", file=sys.stderr)
    warn(result, args)
    if args.json:
        print(json.dumps(result.as_dict()))
    elif not args.quiet:
        print(f"{result.output}: {result.frames} frame{'s' * (result.frames != 1)}, {result.width}x{result.height}, "
              f"{result.fps:.1f} fps ({result.backend}/{result.model}, style {result.style})")
    return 0


def warn(result: ConvertResult, args) -> None:
    """A damaged input's one-line warning on stderr (``streamer: warning: clip.avi: truncated: ...``)."""
    if not args.quiet:
        for warning in result.warnings:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)


def file_printer(args, progress: Progress):
    """The line printed as each file of a batch ends (errors on stderr), after closing its progress bar."""
    def on_file(r: ConvertResult) -> None:
        progress.close()
        warn(r, args)
        if args.json or args.quiet and r.status != "failed" or r.status == "not_attempted":
            return
        if r.status == "failed":
            print(f"{PROG}: error: {r.error}", file=sys.stderr)
        else:
            extra = (f" ({r.frames} frame{'s' * (r.frames != 1)}, {r.fps:.1f} fps)" if r.status == "ok"
                     else " (exists)")
            print(f"{r.status:7} {r.output}{extra}")

    return on_file


def convert_dir(conv: Converter, args, progress: Progress) -> int:
    subfolders = [p for p in Path(args.input).iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subfolders and not (args.quiet or args.json):
        print(f"{PROG}: notice: {args.input}: {len(subfolders)} subfolder{'s' * (len(subfolders) != 1)} not "
              f"converted (a batch reads one folder, not its subfolders)", file=sys.stderr)
    results = conv.convert_dir(args.input, args.output, on_file=file_printer(args, progress), on_start=progress.start,
                               on_frame=progress.frame)
    return summarize(results, args)


class ClusterProgress:
    """tqdm bar on a terminal only, for --ray: files done across the cluster, and the frames converted so far."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def update(self, done: int, total: int, frames: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit="file", desc="ray", leave=False, dynamic_ncols=True, file=sys.stderr)
        self.bar.n = done
        self.bar.set_postfix(frames=frames, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def convert_dir_on_ray(conv: Converter, args) -> int:
    """The same batch as convert_dir, on a Ray cluster (streamer.ray_convert); each file's JSON names its node."""
    ray_convert.import_ray()                    # no Ray, or an address nothing answers at: one line, before
    ray_convert.check_reachable(args.ray)       # anything is created
    segment = SEGMENT_S if args.segment is None else args.segment
    if segment < 0:
        raise InputError(f"--segment {args.segment:g}: must be 0 (whole files) or more seconds")
    if not Path(args.input).is_dir():
        raise InputError(f"{args.input}: --ray converts a directory of videos and images; INPUT is not one")
    jobs = batch_jobs(args.input, args.output)
    bar = ClusterProgress(sys.stderr.isatty() and not args.quiet and not args.json)
    try:
        results = ray_convert.convert_on_ray(conv, jobs, args.ray, on_file=file_printer(args, Progress(False)),
                                             on_progress=bar.update, debug=args.debug, segment=segment)
    finally:
        bar.close()
    return summarize(results, args, nodes=True)


def summarize(results: list[ConvertResult], args, *, nodes: bool = False) -> int:
    """The batch's summary (text or --json) and its exit code: 0, or 2 when every failure is bad input, else 1."""
    counts = {k: sum(r.status == k for r in results) for k in ("ok", "skipped", "failed", "not_attempted")}
    damaged = [r for r in results if r.status == "ok" and r.damaged]
    if args.json:
        files = [dict(r.as_dict(), node=r.node) if nodes else r.as_dict() for r in results]
        print(json.dumps({"input": args.input, "output": args.output, **counts, "damaged": len(damaged),
                          "files": files}))
    elif not args.quiet:
        with_warning = f" ({len(damaged)} damaged)" if damaged else ""
        print(f"{len(results)} file{'s' * (len(results) != 1)}: {counts['ok']} converted{with_warning}, "
              f"{counts['skipped']} skipped, {counts['failed']} failed")
        for r in damaged:
            print(f"damaged {r.warnings[0] if r.warnings else r.input}")
        stopped = [r for r in results if r.status == "not_attempted"]
        if stopped:
            print(f"stopped: {len(stopped)} file{'s' * (len(stopped) != 1)} {stopped[0].error}")
    failed = [r.exit_code for r in results if r.status in ("failed", "not_attempted")]
    if not failed:
        return 0
    return EXIT_USAGE if all(c == EXIT_USAGE for c in failed) else EXIT_FAILURE
