"""Frame sinks: an encoded video file (PyAV, audio copied from the source), and atomic output files.

Nothing is ever written at the destination itself: :class:`AtomicOutput` hands out a temporary
path beside it (``.NAME.streamer-tmp-PID.EXT``), renamed into place only by ``commit()``; any other
ending removes it, and :func:`remove_stale_temps` clears leftovers of runs that were killed.
Live sinks (window, UDP, virtual camera) implement the same ``write/finish/abort`` trio.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamer.errors import InputError, PipelineError
from streamer.pipeline import Frame
from streamer.sources import ColourTags, av_problem

TEMP_MARK = ".streamer-tmp-"
_TEMP_RE = re.compile(r"^\..+\.streamer-tmp-(\d+)(\.[^.]*)?$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary outputs in directory left by streamer processes that no longer run."""
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def check_output(final: Path, overwrite: bool) -> None:
    """InputError naming ``final`` where no output can be written there, or one exists and ``overwrite`` is off."""
    parent = final.parent
    if not parent.exists():
        raise InputError(f"{final}: output directory {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{final}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{final}: output directory {parent} is not writable")
    if final.is_dir():
        raise InputError(f"{final}: is a directory")
    if final.exists() and not overwrite:
        raise InputError(f"{final}: already exists (use -y to overwrite)")


class AtomicOutput:
    """A temp path beside ``final``; ``commit()`` renames it into place, ``discard()`` removes it."""

    def __init__(self, final: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.final = Path(final)
        self.overwrite = overwrite
        parent = self.final.parent
        check_output(self.final, overwrite)
        remove_stale_temps(parent)
        self.temp = parent / f".{self.final.stem}{TEMP_MARK}{os.getpid()}{self.final.suffix}"

    def commit(self) -> Path:
        if self.final.exists() and not self.overwrite:
            raise InputError(f"{self.final}: appeared while converting; kept it (use -y to overwrite)")
        os.replace(self.temp, self.final)
        return self.final

    def discard(self) -> None:
        try:
            self.temp.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass

    def __enter__(self) -> "AtomicOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.temp.exists():
            self.discard()


def write_image(path: Path, rgb: np.ndarray, fmt_path: Path) -> None:
    """Encode by fmt_path's extension (path may be a temp name with the same extension)."""
    ok, buf = cv2.imencode(fmt_path.suffix.lower() or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"{fmt_path}: cannot encode an image with this extension")
    buf.tofile(str(path))


def pick_pix_fmt(codec: av.codec.Codec, width: int, height: int) -> str:
    """yuv420p when the size allows it (plays everywhere); odd sizes keep their exact size with yuv444p."""
    formats = [f.name for f in (codec.video_formats or [])]
    even = width % 2 == 0 and height % 2 == 0
    for name in (["yuv420p"] if even else []) + ["yuv444p", "yuv420p"]:
        if not formats or name in formats:
            return name
    return formats[0]


# A layout per channel count (FFmpeg's defaults) for streams that give only a count ("2 channels", e.g. PCM in MKV).
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Encoders by codec, best first (FFmpeg's native Opus and Vorbis encoders are experimental).
ENCODERS = {"opus": ("libopus", "opus"), "vorbis": ("libvorbis", "vorbis"), "mp3": ("libmp3lame", "mp3")}
GAP_S = 0.03          # a jump in the source's audio timestamps larger than this is filled with silence


def copy_refused(container: str, codec: str) -> str | None:
    """Why audio in ``codec`` is re-encoded although FFmpeg's muxer for ``container`` accepts it, or None."""
    if container == "mp4" and codec.startswith("pcm_"):
        return "FFmpeg writes PCM in MP4 as ISO 23003-5 'ipcm', which most players cannot play"
    return None


def copy_layout(template, out_stream) -> None:
    """Name the channels of a copied stream that only gives a count ("2 channels"): muxers such as MP4's need them."""
    layout = template.codec_context.layout
    if not named_layout(layout) and layout.nb_channels in DEFAULT_LAYOUTS:
        out_stream.codec_context.layout = DEFAULT_LAYOUTS[layout.nb_channels]


def copy_works(src_path: Path, index: int, container: str, packets: int = 4) -> bool:
    """Whether the muxer for ``container`` takes the stream's packets as they are: a trial remux of its first packets
    into memory.  FFmpeg's list of codecs a container can hold is not the last word (MOV lists Opus, then refuses
    it)."""
    try:
        with av.open(str(src_path), metadata_errors="ignore") as src:
            stream = src.streams[index]
            trial = av.open(io.BytesIO(), "w", format=container)
            try:
                o = trial.add_stream_from_template(stream)
                copy_layout(stream, o)
                sent = 0
                for pkt in src.demux(stream):
                    if pkt.size == 0 or (pkt.dts is None and pkt.pts is None):
                        continue
                    pkt.stream = o
                    trial.mux(pkt)
                    sent += 1
                    if sent >= packets:
                        break
            finally:
                trial.close()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def named_layout(layout: av.AudioLayout) -> str | None:
    """The layout's name when its channels are named (stereo, 5.1(side), ...), else None ("2 channels")."""
    if any(ch.name == "NONE" for ch in layout.channels):
        return None
    return layout.name


def audio_encoder(codec: str) -> str | None:
    """The name of an encoder for ``codec`` that this FFmpeg has, or None."""
    for name in ENCODERS.get(codec, (codec,)):
        try:
            if av.codec.Codec(name, "w").type == "audio":
                return name
        except Exception:   # noqa: BLE001 - UnknownCodecError
            continue
    return None


def pick_sample_format(source: str | None, accepted: list[str]) -> str:
    """The source's sample format when the encoder takes it, else the nearest in depth (float first when deep)."""
    if not accepted:
        return source or "s16"
    deep = source is not None and source.rstrip("p") in ("s32", "flt", "dbl", "s64")
    order = [source, source[:-1] if source and source.endswith("p") else f"{source}p"] if source else []
    order += ["fltp", "flt", "s32p", "s32", "s16p", "s16"] if deep else ["s16p", "s16", "fltp", "flt", "s32p", "s32"]
    return next((f for f in order if f in accepted), accepted[0])


def pick_sample_rate(rate: int, accepted: list[int] | None) -> int:
    """The source's rate when the encoder takes it, else the next higher one it takes (Opus: 8/12/16/24/48 kHz)."""
    if not accepted or rate in accepted:
        return rate
    return min((r for r in accepted if r >= rate), default=max(accepted))


def open_probe(encoder: str, rate: int, fmt: str, layout: str) -> int | None:
    """Frame size (samples) when ``encoder`` opens with these settings, 0 for any size, None when it refuses them."""
    ctx = av.CodecContext.create(encoder, "w")
    ctx.sample_rate, ctx.format, ctx.layout, ctx.time_base = rate, fmt, layout, Fraction(1, rate)
    try:
        ctx.open()
    except (av.error.FFmpegError, ValueError):
        return None
    return ctx.frame_size


def trim_front(frame: av.AudioFrame, skip: int) -> av.AudioFrame | None:
    """The frame without its first ``skip`` samples (None when nothing is left)."""
    return _samples(frame, skip, frame.samples)


def trim_back(frame: av.AudioFrame, keep: int) -> av.AudioFrame | None:
    """The frame's first ``keep`` samples (None when nothing is left)."""
    return _samples(frame, 0, min(keep, frame.samples))


def _samples(frame: av.AudioFrame, start: int, stop: int) -> av.AudioFrame | None:
    if stop <= start:
        return None
    arr = frame.to_ndarray()
    channels = 1 if frame.format.is_planar else frame.layout.nb_channels
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr[:, start * channels:stop * channels]),
                                     format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def silence(like: av.AudioFrame, samples: int) -> av.AudioFrame:
    """``samples`` of silence in the format, layout and rate of ``like``."""
    f = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=samples)
    fill = b"\x80" if like.format.name.startswith("u8") else b"\x00"
    for plane in f.planes:
        plane.update(fill * plane.buffer_size)
    f.sample_rate = like.sample_rate
    return f


# YUV matrices swscale converts to (AVCOL_SPC_* -> its coefficient set; SMPTE 170M and BT.470BG are both BT.601).
SWS_MATRICES = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9}
UNTAGGED = (0, 2, 3)                 # reserved, unspecified, reserved
BT709, LIMITED, FULL, RGB_MATRIX = 1, 1, 2, 0


def output_colour(tags: ColourTags | None, pix_fmt: str) -> ColourTags:
    """The tags an output carries: the input's, each missing one as BT.709 limited range (what players assume for
    untagged video); a matrix swscale cannot produce becomes BT.709 too (the pixels are converted with it)."""
    tags = tags or ColourTags()
    primaries = BT709 if tags.primaries in UNTAGGED else tags.primaries
    transfer = BT709 if tags.transfer in UNTAGGED else tags.transfer
    if av.VideoFormat(pix_fmt).is_rgb:
        return ColourTags(primaries, transfer, RGB_MATRIX, FULL)
    matrix = tags.matrix if tags.matrix in SWS_MATRICES else BT709
    full = tags.range == FULL or pix_fmt.startswith("yuvj")
    return ColourTags(primaries, transfer, matrix, FULL if full else LIMITED)


class AudioEncoder:
    """Re-encodes one decoded audio stream: resampled to a sample format, layout and rate the encoder takes, re-chunked
    to its frame size (AAC: 1024 samples), with timestamps counted in samples from the first decoded frame's time, so
    a track that starts late still starts late.  A jump forward in the source's timestamps is filled with silence
    (the output stays in step with the video); samples before time 0 are dropped."""

    def __init__(self, src: av.audio.stream.AudioStream, out: av.container.OutputContainer, encoder: str) -> None:
        sctx = src.codec_context
        codec = av.codec.Codec(encoder, "w")
        self.rate = pick_sample_rate(sctx.sample_rate, codec.audio_rates)
        fmt = pick_sample_format(sctx.format.name if sctx.format else None, [f.name for f in codec.audio_formats or []])
        n = sctx.layout.nb_channels
        candidates = [named_layout(sctx.layout), DEFAULT_LAYOUTS.get(n), "stereo" if n > 1 else "mono", "stereo"]
        for layout in dict.fromkeys(c for c in candidates if c):
            frame_size = open_probe(encoder, self.rate, fmt, layout)
            if frame_size is not None:
                break
        else:
            raise ValueError(f"the {encoder} encoder takes none of the layouts {candidates}")
        self.stream = out.add_stream(encoder, rate=self.rate)
        ctx = self.stream.codec_context
        ctx.format, ctx.layout, ctx.time_base = fmt, layout, Fraction(1, self.rate)
        self.layout = layout
        self._out = out
        self._resample = lambda: av.AudioResampler(format=fmt, layout=layout, rate=self.rate,
                                                   frame_size=frame_size or None)
        self._resampler = None
        self._setup: tuple | None = None       # (format, layout, rate) the resampler was built for
        self._in_end: float | None = None      # source time (s) where the samples given so far end
        self._next_pts: int | None = None      # next output pts, in samples at self.rate
        self._flushed = False

    def push(self, frame: av.AudioFrame, until: float | None = None) -> None:
        """Encode the frame's samples, those before ``until`` seconds only when it is given."""
        t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else self._in_end
        if t is None:
            t = 0.0
        skipped = self._in_end is not None and t - self._in_end > GAP_S
        if until is not None:    # the frame starts at t after a gap or at the start, else where the last one ended
            start = self._in_end if self._in_end is not None and not skipped else t
            frame = trim_back(frame, round((until - start) * frame.sample_rate))
            if frame is None:
                return
        if self._in_end is not None:
            if skipped:                                     # the source skipped: keep the output in step
                gap = round((t - self._in_end) * frame.sample_rate)
                for done in range(0, gap, frame.sample_rate):   # a second at a time: memory stays small
                    self._resampled(silence(frame, min(frame.sample_rate, gap - done)))
            t = self._in_end                                # else continuous: timestamps rounded by the container
        elif t < 0:                                         # before the start (priming): not played
            trimmed = trim_front(frame, round(-t * frame.sample_rate))
            if trimmed is None:
                return
            frame, t = trimmed, 0.0
        if self._next_pts is None:
            self._next_pts = round(t * self.rate)
        self._in_end = t + frame.samples / frame.sample_rate
        self._resampled(frame)

    def _resampled(self, frame: av.AudioFrame) -> None:
        setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is not None and setup != self._setup:   # the source changed format mid-stream
            self._encode(self._resampler.resample(None))
            self._resampler = None
        if self._resampler is None:
            self._resampler, self._setup = self._resample(), setup
        frame.pts = None                                     # timed here, not by the filter graph
        self._encode(self._resampler.resample(frame))

    def _encode(self, frames: list) -> None:
        for f in frames:
            f.pts, f.time_base = self._next_pts, Fraction(1, self.rate)
            self._next_pts += f.samples
            self._out.mux(self.stream.encode(f))

    def flush(self) -> None:
        if self._flushed:
            return
        self._flushed = True
        if self._resampler is not None:
            self._encode(self._resampler.resample(None))
        self._out.mux(self.stream.encode(None))


class AudioCopier:
    """Copies the source file's audio packets into the output (remux), or re-encodes where the container refuses the
    codec (see :class:`AudioEncoder`: any audio FFmpeg decodes, with its start time kept).

    Reads the input through its own demuxer so the video stages never see audio; ``pump(t)``
    writes audio up to time t (seconds) so the file stays interleaved.
    """

    def __init__(self, src_path: Path, out: av.container.OutputContainer) -> None:
        self._in = av.open(str(src_path), metadata_errors="ignore")
        self._out = out
        self._map: dict[int, tuple] = {}
        self.modes: list[str] = []
        supported = out.supported_codecs
        container = out.format.name
        for s in self._in.streams.audio:
            name = s.codec_context.name if s.codec_context else None
            if not name or not s.codec_context.sample_rate:
                continue
            codec = s.codec_context.codec.canonical_name if s.codec_context.codec else name
            name = codec                                              # mp3, not its decoder mp3float
            if codec in supported and not copy_refused(container, codec) and copy_works(src_path, s.index, container):
                o = out.add_stream_from_template(s)
                copy_layout(s, o)
                self._map[s.index] = ("copy", s, o)
                self.modes.append(f"copy {name}")
                continue
            target = "aac" if "aac" in supported else out.default_audio_codec
            encoder = audio_encoder(target) if target and target != "none" else None
            if encoder is None:
                continue
            enc = AudioEncoder(s, out, encoder)
            self._map[s.index] = ("encode", s, enc)
            self.modes.append(f"{name} -> {encoder}")
        self._packets = self._in.demux(*[m[1] for m in self._map.values()]) if self._map else iter(())
        self._pending = None

    def pump(self, until: float | None, trim: bool = False) -> None:
        """Mux audio packets whose time is before ``until`` seconds (None: all that remain); with ``trim`` the audio
        ends at ``until``: re-encoded audio within a packet, copied packets at the boundary nearest to it."""
        while True:
            pkt = self._pending
            self._pending = None
            if pkt is None:
                pkt = next(self._packets, None)
                if pkt is None:
                    return
            index = pkt.stream.index if pkt.stream is not None else pkt.stream_index   # flush packets: index 0
            if index not in self._map:
                continue
            if pkt.dts is None and pkt.pts is None:
                if pkt.size == 0 and self._map[index][0] == "encode":   # end-of-stream marker: drain the decoder
                    self._decode(pkt, index)
                continue
            t = pkt.dts if pkt.dts is not None else pkt.pts
            mode, _, o = self._map[index]
            if trim and mode == "copy" and pkt.duration and t is not None:
                t += pkt.duration // 2                      # a packet cannot be cut: end at the boundary nearest
            if until is not None and t is not None and pkt.time_base and float(t * pkt.time_base) > until:
                self._pending = pkt
                return
            if mode == "copy":
                pkt.stream = o
                self._out.mux(pkt)
            else:
                self._decode(pkt, index, until if trim else None)

    def _decode(self, pkt, index: int, until: float | None = None) -> None:
        _, _, enc = self._map[index]
        for frame in pkt.decode():
            enc.push(frame, until)

    def finish(self, until: float | None = None) -> None:
        """The rest of the audio, or only what comes before ``until`` seconds."""
        self.pump(until, trim=until is not None)
        for mode, _, enc in self._map.values():
            if mode == "encode":          # the decoder was drained by the demuxer's end-of-stream packet (or,
                enc.flush()               # cut at `until`, holds at most a frame that is not wanted)

    def close(self) -> None:
        try:
            self._in.close()
        except Exception:   # noqa: BLE001
            pass


class VideoFileSink:
    """Encodes ``frame.output`` (the stylized HxWx3 uint8 RGB) with the source's timestamps into a temp file.

    The output stream keeps the input's time base and pts (so variable frame rate survives), its
    width and height, its rotation (display matrix) and its colour tags (primaries, transfer, matrix, range; BT.709
    limited where the input has none), the pixels converted to YUV with that matrix and range.  Opened lazily on the
    first frame, so a source that fails early leaves no file at all.
    """

    name = "encode"

    def __init__(self, path: Path, *, width: int, height: int, time_base: Fraction, rate: Fraction,
                 codec: str = "libx264", crf: int | None = 18, preset: str | None = "veryfast",
                 audio_from: Path | None = None, label: str | None = None, threads: int = 0,
                 codec_fallback: bool = False, colour: ColourTags | None = None,
                 container_options: dict[str, str] | None = None, gop: int | None = None,
                 audio_ends_with_video: Callable[[], bool] | None = None) -> None:
        self.path, self.width, self.height = Path(path), width, height
        # asked at the end: True when the audio must stop where the video does (a source cut off: the audio it
        # holds runs on past the last frame that decodes)
        self.audio_ends_with_video = audio_ends_with_video
        self._video_end: float | None = None        # seconds: the end of the last frame written
        self.container_options, self.gop = container_options or {}, gop
        self.time_base, self.rate = time_base, rate
        self.codec, self.crf, self.preset = codec, crf, preset
        self.audio_from, self.threads = audio_from, threads
        self.label = label or str(path)
        self.codec_fallback = codec_fallback       # codec was chosen automatically: the container's default may replace it
        self.colour_in = colour                    # the input's tags; self.colour: what the output carries
        self.colour: ColourTags | None = None
        self._out = None
        self._stream = None
        self._audio: AudioCopier | None = None
        self.audio_modes: list[str] = []
        self.frames = 0
        self.bytes = 0                             # video bytes handed to the muxer (some still in its buffer)

    def _open(self, first: Frame) -> None:
        try:
            self._out = av.open(str(self.path), "w", options=self.container_options)
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{self.label}: cannot create output ({av_problem(exc)})") from exc
        try:
            codec = av.codec.Codec(self.codec, "w")
        except Exception as exc:   # noqa: BLE001 - UnknownCodecError and friends
            raise InputError(f"{self.label}: no video encoder named {self.codec!r}") from exc
        if codec.type != "video":
            raise InputError(f"{self.label}: {self.codec} is not a video encoder")
        if codec.canonical_name not in self._out.supported_codecs and self.codec_fallback:
            default = self._out.default_video_codec                 # e.g. .webm: libvpx-vp9
            codec = av.codec.Codec(default, "w") if default and default != "none" else codec
            self.codec = codec.name
        if codec.canonical_name not in self._out.supported_codecs:
            raise InputError(f"{self.label}: this container cannot hold {codec.canonical_name} video")
        options = {}
        if self.crf is not None and self.codec in ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"):
            options["crf"] = str(self.crf)
            if self.codec == "libvpx-vp9":
                options["b"] = "0"
        if self.preset and self.codec in ("libx264", "libx265", "h264_nvenc", "hevc_nvenc"):
            options["preset"] = str(self.preset)
        s = self._out.add_stream(self.codec, rate=self.rate, options=options)
        s.width, s.height = self.width, self.height
        s.pix_fmt = pick_pix_fmt(codec, self.width, self.height)
        s.time_base = self.time_base
        s.codec_context.time_base = self.time_base
        s.thread_type = "AUTO"
        s.thread_count = self.threads
        if self.gop:
            s.codec_context.gop_size = self.gop
        self.colour = c = output_colour(self.colour_in, s.pix_fmt)
        ctx = s.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = c.primaries, c.transfer, c.matrix, c.range
        if first.rotation:
            s.set_display_rotation(first.rotation)
        self._stream = s
        if self.audio_from is not None:
            try:
                self._audio = AudioCopier(self.audio_from, self._out)
            except (av.error.FFmpegError, ValueError) as exc:
                raise InputError(f"{self.audio_from}: cannot read or re-encode its audio ({av_problem(exc)})") from exc
            self.audio_modes = self._audio.modes

    def write(self, frame: Frame) -> None:
        if self._out is None:
            self._open(frame)
        img = frame.output
        vf = self._to_yuv(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"))
        vf.pts, vf.time_base = frame.pts, frame.time_base
        try:
            packets = self._stream.encode(vf)
            self._out.mux(packets)
            self.bytes += sum(p.size for p in packets)
            if self._audio is not None:
                self._audio.pump(frame.seconds)
        except av.error.FFmpegError as exc:
            raise self._error(exc) from exc
        if frame.seconds is not None:                     # frames come in pts order: the last one ends the video
            self._video_end = frame.seconds + 1 / float(self.rate)
        self.frames += 1

    def _to_yuv(self, rgb: av.VideoFrame) -> av.VideoFrame:
        """The encoder's pixel format, converted with the matrix and range the output is tagged with (the encoder's own
        conversion would use BT.601 limited whatever the tags say)."""
        c, pix_fmt = self.colour, self._stream.pix_fmt
        if c.matrix == RGB_MATRIX:
            out = rgb.reformat(format=pix_fmt)
        else:
            out = rgb.reformat(format=pix_fmt, dst_colorspace=SWS_MATRICES[c.matrix], dst_color_range=c.range)
        out.color_primaries, out.color_trc, out.colorspace, out.color_range = c.primaries, c.transfer, c.matrix, c.range
        return out

    def _error(self, exc: Exception) -> Exception:
        if isinstance(exc, av.error.InvalidDataError) and self.audio_from is not None:
            return InputError(f"{self.audio_from}: corrupt audio ({av_problem(exc)})")
        if isinstance(exc, OSError) and not isinstance(exc, av.error.InvalidDataError):
            return InputError(f"{self.label}: cannot write ({av_problem(exc)})")
        return PipelineError(f"{self.label}: encoding failed ({av_problem(exc)})")

    def finish(self) -> None:
        if self._out is None:
            raise InputError(f"{self.label}: no video frames to write")
        try:
            self._out.mux(self._stream.encode(None))
            if self._audio is not None:
                cut = self.audio_ends_with_video is not None and self.audio_ends_with_video()
                self._audio.finish(self._video_end if cut else None)
            self._close()
        except av.error.FFmpegError as exc:
            raise self._error(exc) from exc

    def _close(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        out, self._out = self._out, None
        if out is not None:
            out.close()

    def abort(self, keep_file: bool = False) -> None:
        try:
            self._close()
        except Exception:     # noqa: BLE001 - the file is discarded anyway (or kept as it is)
            pass
        if keep_file:
            return
        try:
            self.path.unlink()
        except OSError:
            pass

