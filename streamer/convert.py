"""The conversion API behind ``streamer convert``: one video, one image, or a directory of them.

    conv = Converter(ConvertOptions(style="starry_night"))
    result = conv.convert("in.mp4", "out.mp4")          # -> ConvertResult
    results = conv.convert_dir("clips/", "styled/")      # -> list of ConvertResult (ok or failed)

The engine and style vector are built once per Converter and reused for every file.  Every file
is written through :class:`~streamer.sinks.AtomicOutput`: complete at its final name, or absent.

A damaged input (cut off, corrupt frames in the middle) converts every frame that decodes; the result says so
(``truncated``/``damaged``, the counts, and a one-line warning in ``warnings``).  ``strict=True`` refuses it instead
(an InputError, nothing written).  In a directory, a full disk stops the batch after the file it hit.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from engines.base import Engine
from engines.carried_state import start_afresh
from streamer.assembly import RunOptions, assemble, engine_for_size, open_engine
from streamer.codecs import check_encoder_options, pick_encoder
from streamer.errors import EXIT_USAGE, InputError, StreamerError, one_line
from streamer.pipeline import Frame, Runner, Stats
from streamer.processing import processing_size, stylize_image
from streamer.sinks import AtomicOutput, VideoFileSink, write_image
from streamer.media_files import is_image, is_video, read_image, same_file
from streamer.sources import Damage, VideoFileSource
from streamer.style_sources import FixedStyle
from streamer.styles import StyleEncoder


@dataclass
class ConvertOptions(RunOptions):
    codec: str = "auto"                # auto: h264_nvenc on a GPU engine when it opens, else libx264
    crf: int | None = 18
    preset: str | None = "veryfast"   # OBS's default: half the CPU of "fast" at 640x360, same size at crf 18
    overwrite: bool = False
    queue_size: int = 8
    strict: bool = False               # a damaged input (truncated, corrupt frames) is an error, not a warning

    def validate(self) -> None:
        super().validate()
        check_encoder_options(self.codec, self.preset, self.crf)


@dataclass
class ConvertResult:
    input: str
    output: str
    frames: int = 0
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    backend: str = ""
    model: str = ""
    device: str = ""                   # cpu, cuda, dml, ... (the execution provider on onnxruntime)
    style: str = ""
    status: str = "ok"                 # ok | skipped | failed | not_attempted (a batch stopped: the disk is full)
    error: str | None = None
    exit_code: int = 0
    processing: list[int] | None = None
    notices: list[str] = field(default_factory=list)
    audio: list[str] = field(default_factory=list)
    stage_ms_per_frame: dict[str, float] = field(default_factory=dict)
    # a damaged input: what it lost (see streamer.sources.Damage); warnings are one line each, naming the input
    truncated: bool = False
    damaged: bool = False
    frames_expected: int | None = None
    frames_skipped: int = 0
    frames_missing: int = 0
    warnings: list[str] = field(default_factory=list)
    node: str | None = None            # the Ray node that converted it (``--ray``; see streamer.ray_convert)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["seconds"], d["fps"] = round(self.seconds, 3), round(self.fps, 2)
        if d["node"] is None:            # a run without --ray: the JSON it always had
            del d["node"]
        return d


class VideoPart(Protocol):
    """A stretch of a video converted on its own (``streamer.ray_convert.Part``): it gives the source that decodes it
    and wraps the sink so that only its own frames are written."""

    def source(self, path: Path) -> VideoFileSource: ...

    def sink(self, inner: VideoFileSink) -> VideoFileSink: ...


def damage_fields(src: Path, damage: Damage) -> dict:
    """ConvertResult's fields for what a damaged input lost (nothing for an intact one)."""
    if not damage.damaged:
        return {}
    return dict(damage.as_dict(), warnings=[f"{src}: {damage.message()}"])


def disk_full(exc: BaseException) -> int:
    """The errno (ENOSPC, EDQUOT) when ``exc`` or what caused it is a full disk or quota, else 0."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return 0


def batch_jobs(input_dir: str | os.PathLike, output_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """The (input, output) pairs of a directory batch, the output directory made: one listing for convert_dir and
    for ``--ray`` (streamer.ray_convert), so both convert the same files to the same names.

    Videos are written as ``NAME.mp4``, images keep their extension."""
    src_dir, dst_dir = Path(input_dir), Path(output_dir)
    if not src_dir.is_dir():
        raise InputError(f"{src_dir}: not a directory")
    if dst_dir.exists() and not dst_dir.is_dir():
        raise InputError(f"{dst_dir}: batch mode needs an output directory")
    if same_file(src_dir, dst_dir):
        raise InputError(f"{dst_dir}: the output directory must differ from the input directory")
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{dst_dir}: cannot create output directory ({exc.strerror})") from exc
    files = sorted(p for p in src_dir.iterdir()
                   if p.is_file() and not p.name.startswith(".") and (is_video(p) or is_image(p)))
    if not files:
        raise InputError(f"{src_dir}: no videos or images inside")
    return [(f, dst_dir / (f.name if is_image(f) else f.stem + ".mp4")) for f in files]


class Converter:
    def __init__(self, options: ConvertOptions | None = None, *, engine: Engine | None = None,
                 encoder: StyleEncoder | None = None) -> None:
        self.options = options or ConvertOptions()
        self.options.validate()
        self._engine = engine
        self._encoder = encoder
        self._style = None

    # --- lazily built, shared across files ----------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.options)
        return self._engine

    def style_source(self) -> FixedStyle:
        """A fresh style source per file: with strength < 1 each file mixes in its own first frame's look."""
        if self._encoder is None:
            self._encoder = StyleEncoder(threads=self.options.threads)
        if self._style is None:
            self._style = self._encoder.encode(self.options.style)
        return FixedStyle(self._style, self.options.strength, self._encoder)

    # --- one file -------------------------------------------------------------------------
    def convert(self, input: str | os.PathLike, output: str | os.PathLike,
                on_start: Callable[[VideoFileSource, tuple[int, int]], None] | None = None,
                on_frame: Callable[[Frame], None] | None = None) -> ConvertResult:
        src, dst = Path(input), Path(output)
        if not src.exists():
            raise InputError(f"{src}: no such file")
        if same_file(src, dst):
            raise InputError(f"{dst}: OUTPUT is the same file as INPUT; refusing to overwrite the input")
        self._start_afresh()
        if is_image(src):
            if not is_image(dst):
                raise InputError(f"{dst}: an image input needs an image output (.png, .jpg, ...)")
            return self._convert_image(src, dst)
        if is_image(dst):
            raise InputError(f"{dst}: a video input needs a video output (.mp4, .mkv, ...)")
        if not is_video(dst):    # before the model loads: FFmpeg would say so only when the encoder opens
            raise InputError(f"{dst}: unknown video format {dst.suffix or '(no extension)'!r} "
                             "(use .mp4, .mkv, .mov, .webm, ...)")
        return self._convert_video(src, dst, on_start, on_frame)

    def _result(self, src: Path, dst: Path, *, notices: list[str] = (), **kw) -> ConvertResult:
        info = self.engine.info
        engine_notices = list(getattr(self.engine, "notices", []))     # e.g. an execution provider fell back to cpu
        return ConvertResult(input=str(src), output=str(dst), backend=info.backend, model=info.model,
                             device=info.device, style=self.options.style, notices=engine_notices + list(notices), **kw)

    def _convert_image(self, src: Path, dst: Path) -> ConvertResult:
        t0 = time.perf_counter()
        out = AtomicOutput(dst, overwrite=self.options.overwrite)
        rgb = read_image(src)
        engine, style = self.engine, self.style_source()
        h, w = rgb.shape[:2]
        size = processing_size(w, h, self.options.max_size, engine.info, name=str(src))
        engine = engine_for_size(engine, size, self.options)
        with out:
            img = stylize_image(engine, style, rgb, self.options.max_size, name=str(src))
            write_image(out.temp, img, dst)
            out.commit()
        secs = time.perf_counter() - t0
        return self._result(src, dst, frames=1, width=w, height=h, seconds=secs, fps=1 / secs if secs else 0.0,
                            processing=list(size))

    def convert_part(self, src: str | os.PathLike, dst: str | os.PathLike, part: VideoPart,
                     on_frame: Callable[[Frame], None] | None = None) -> ConvertResult:
        """One part of a long video (``--ray --segment``: a ``streamer.ray_convert.Part``, which gives the source and
        wraps the sink), video only, through the same engine, stages and encoder as a whole file; the parts are
        joined with the file's audio by ``streamer.ray_convert.join_parts``."""
        self._start_afresh()
        return self._convert_video(Path(src), Path(dst), None, on_frame, part=part)

    def _start_afresh(self) -> None:
        """Each file, or part of one, is its own video: a model that carries state from frame to frame (student-hq's
        whole-frame moments) must not bring the previous file's in."""
        start_afresh(self.engine)

    def _convert_video(self, src: Path, dst: Path, on_start, on_frame, part: VideoPart | None = None) -> ConvertResult:
        out = AtomicOutput(dst, overwrite=self.options.overwrite or part is not None)
        source = VideoFileSource(src, strict=self.options.strict) if part is None else part.source(src)
        try:
            run = assemble(self.engine, self.style_source(), source.width, source.height, self.options, name=str(src))
            enc = pick_encoder(self.options.codec, gpu=self.engine.info.device.startswith("cuda"),
                               preset=self.options.preset, default_preset=ConvertOptions.preset)
            notice = enc.notice
            sink = VideoFileSink(out.temp, width=source.width, height=source.height, time_base=source.time_base,
                                 rate=source.rate, codec=enc.codec, crf=self.options.crf, preset=enc.preset,
                                 threads=enc.threads, audio_from=src if source.audio and part is None else None,
                                 label=str(dst), codec_fallback=self.options.codec == "auto", colour=source.colour,
                                 audio_ends_with_video=lambda: bool(source.damage and source.damage.truncated))
            sink = sink if part is None else part.sink(sink)
            if on_start is not None:
                on_start(source, run.size)
        except BaseException:
            source.close()
            raise
        with out:
            stats = Runner(source, run.stages, sink, policy="block", queue_size=self.options.queue_size,
                           stats=Stats(), label=str(src), on_frame=on_frame).run()
            out.commit()
        frames = stats.frames_out if part is None else sink.frames       # a part: without its warm-up
        return self._result(src, dst, frames=frames, width=source.width, height=source.height,
                            seconds=stats.seconds, fps=stats.fps, processing=list(run.size), audio=sink.audio_modes,
                            notices=[notice] if notice else [], stage_ms_per_frame=stats.ms_per_frame(),
                            **damage_fields(src, source.damage))

    # --- a directory ----------------------------------------------------------------------
    def convert_dir(self, input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                    on_file: Callable[[ConvertResult], None] | None = None,
                    on_start: Callable[[VideoFileSource, tuple[int, int]], None] | None = None,
                    on_frame: Callable[[Frame], None] | None = None) -> list[ConvertResult]:
        """Every video and image in input_dir (not recursive) into output_dir; skips outputs that exist.

        Videos are written as ``NAME.mp4``, images keep their extension.  A failing file is recorded
        and the others go on, except when the disk is full: the files after it are recorded as
        ``not_attempted``.  Complete outputs exist only under their final names (atomic rename),
        so a re-run resumes where a killed one stopped.
        """
        jobs = batch_jobs(input_dir, output_dir)
        self.engine, self.style_source()          # a bad style or backend fails the run once, not per file
        results = []
        full: str | None = None                  # the disk filled up: the files after that one are not attempted
        for f, dst in jobs:
            if full is not None:
                r = self.batch_result(f, dst, "not_attempted", error=full, exit_code=EXIT_USAGE)
            elif dst.exists() and not self.options.overwrite:
                r = self.batch_result(f, dst, "skipped")
            else:
                r, full = self.convert_or_fail(f, dst, on_start=on_start, on_frame=on_frame)
            results.append(r)
            if on_file is not None:
                on_file(r)
        return results

    def batch_result(self, src: Path, dst: Path, status: str, *, error: str | None = None,
                     exit_code: int = 0) -> ConvertResult:
        """The result of a batch's file that was not converted (skipped, failed, not attempted)."""
        return ConvertResult(input=str(src), output=str(dst), status=status, error=error, exit_code=exit_code,
                             style=self.options.style)

    def convert_or_fail(self, src: Path, dst: Path,
                        on_start: Callable[[VideoFileSource, tuple[int, int]], None] | None = None,
                        on_frame: Callable[[Frame], None] | None = None) -> tuple[ConvertResult, str | None]:
        """One file of a batch, where a failure of its own is a result, not an exception, so the others go on.

        The second value says why the files after it are not attempted (its disk is full), else None."""
        try:
            return self.convert(src, dst, on_start=on_start, on_frame=on_frame), None
        except StreamerError as exc:
            r = self.batch_result(src, dst, "failed", error=one_line(exc), exit_code=exc.exit_code)
            full = disk_full(exc)
            return r, f"not attempted: {dst.parent} is full ({os.strerror(full).lower()})" if full else None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
