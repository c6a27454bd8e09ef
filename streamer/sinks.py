"""Frame sinks: an encoded video file (PyAV, audio copied from the source), and atomic output files.

Nothing is ever written at the destination itself: :class:`AtomicOutput` hands out a temporary
path beside it (``.NAME.streamer-tmp-PID.EXT``), renamed into place only by ``commit()``; any other
ending removes it, and :func:`remove_stale_temps` clears leftovers of runs that were killed.
Live sinks (window, UDP, virtual camera) implement the same ``write/finish/abort`` trio.
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamer.errors import InputError, PipelineError
from streamer.pipeline import Frame
from streamer.sources import av_problem

TEMP_MARK = ".streamer-tmp-"
_TEMP_RE = re.compile(r"^\..+\.streamer-tmp-(\d+)(\.[^.]*)?$")


def _pid_alive(pid: int) -> bool:
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
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


class AtomicOutput:
    """A temp path beside ``final``; ``commit()`` renames it into place, ``discard()`` removes it."""

    def __init__(self, final: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.final = Path(final)
        self.overwrite = overwrite
        parent = self.final.parent
        if not parent.exists():
            raise InputError(f"{self.final}: output directory {parent} does not exist")
        if not parent.is_dir():
            raise InputError(f"{self.final}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{self.final}: output directory {parent} is not writable")
        if self.final.is_dir():
            raise InputError(f"{self.final}: is a directory")
        if self.final.exists() and not overwrite:
            raise InputError(f"{self.final}: already exists (use -y to overwrite)")
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


class AudioCopier:
    """Copies the source file's audio packets into the output (remux), or re-encodes where the container refuses the codec.

    Reads the input through its own demuxer so the video stages never see audio; ``pump(t)``
    writes audio up to time t (seconds) so the file stays interleaved.
    """

    def __init__(self, src_path: Path, out: av.container.OutputContainer) -> None:
        self._in = av.open(str(src_path), metadata_errors="ignore")
        self._out = out
        self._map: dict[int, tuple] = {}
        self.modes: list[str] = []
        supported = out.supported_codecs
        for s in self._in.streams.audio:
            name = s.codec_context.name if s.codec_context else None
            if not name or not s.codec_context.sample_rate:
                continue
            if name in supported:
                o = out.add_stream_from_template(s)
                self._map[s.index] = ("copy", s, o)
                self.modes.append(f"copy {name}")
            else:
                target = "aac" if "aac" in supported else out.default_audio_codec
                if not target or target == "none":
                    continue
                rate = s.codec_context.sample_rate
                rates = av.codec.Codec(target, "w").audio_rates
                if rates and rate not in rates:              # e.g. Opus only takes 8/12/16/24/48 kHz
                    rate = min((r for r in rates if r >= rate), default=max(rates))
                o = out.add_stream(target, rate=rate)
                self._map[s.index] = ("encode", s, o)
                self.modes.append(f"{name} -> {target}")
        self._packets = self._in.demux(*[m[1] for m in self._map.values()]) if self._map else iter(())
        self._pending = None

    def pump(self, until: float | None) -> None:
        """Mux audio packets whose time is before ``until`` seconds (None: all that remain)."""
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
                    self._encode(pkt, index)
                continue
            t = pkt.dts if pkt.dts is not None else pkt.pts
            if until is not None and t is not None and pkt.time_base and float(t * pkt.time_base) > until:
                self._pending = pkt
                return
            mode, _, o = self._map[index]
            if mode == "copy":
                pkt.stream = o
                self._out.mux(pkt)
            else:
                self._encode(pkt, index)

    def _encode(self, pkt, index: int) -> None:
        _, _, o = self._map[index]
        for frame in pkt.decode():
            frame.pts = None
            self._out.mux(o.encode(frame))

    def finish(self) -> None:
        self.pump(None)
        for mode, _, o in self._map.values():
            if mode == "encode":
                self._out.mux(o.encode(None))

    def close(self) -> None:
        try:
            self._in.close()
        except Exception:   # noqa: BLE001
            pass


class VideoFileSink:
    """Encodes ``frame.output`` (the stylized HxWx3 uint8 RGB) with the source's timestamps into a temp file.

    The output stream keeps the input's time base and pts (so variable frame rate survives), its
    width and height, and its rotation (display matrix).  Opened lazily on the first frame, so a
    source that fails early leaves no file at all.
    """

    name = "encode"

    def __init__(self, path: Path, *, width: int, height: int, time_base: Fraction, rate: Fraction,
                 codec: str = "libx264", crf: int | None = 18, preset: str | None = "veryfast",
                 audio_from: Path | None = None, label: str | None = None, threads: int = 0,
                 codec_fallback: bool = False) -> None:
        self.path, self.width, self.height = Path(path), width, height
        self.time_base, self.rate = time_base, rate
        self.codec, self.crf, self.preset = codec, crf, preset
        self.audio_from, self.threads = audio_from, threads
        self.label = label or str(path)
        self.codec_fallback = codec_fallback       # codec was chosen automatically: the container's default may replace it
        self._out = None
        self._stream = None
        self._audio: AudioCopier | None = None
        self.audio_modes: list[str] = []
        self.frames = 0

    def _open(self, first: Frame) -> None:
        try:
            self._out = av.open(str(self.path), "w")
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
        if self.preset and self.codec in ("libx264", "libx265"):
            options["preset"] = str(self.preset)
        s = self._out.add_stream(self.codec, rate=self.rate, options=options)
        s.width, s.height = self.width, self.height
        s.pix_fmt = pick_pix_fmt(codec, self.width, self.height)
        s.time_base = self.time_base
        s.codec_context.time_base = self.time_base
        s.thread_type = "AUTO"
        s.thread_count = self.threads
        if first.rotation:
            s.set_display_rotation(first.rotation)
        self._stream = s
        if self.audio_from is not None:
            try:
                self._audio = AudioCopier(self.audio_from, self._out)
            except av.error.FFmpegError as exc:
                raise InputError(f"{self.audio_from}: cannot read audio ({av_problem(exc)})") from exc
            self.audio_modes = self._audio.modes

    def write(self, frame: Frame) -> None:
        if self._out is None:
            self._open(frame)
        img = frame.output
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        vf.pts, vf.time_base = frame.pts, frame.time_base
        try:
            self._out.mux(self._stream.encode(vf))
            if self._audio is not None:
                self._audio.pump(frame.seconds)
        except av.error.FFmpegError as exc:
            raise self._error(exc) from exc
        self.frames += 1

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
                self._audio.finish()
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

    def abort(self) -> None:
        try:
            self._close()
        except Exception:     # noqa: BLE001 - the file is discarded anyway
            pass
        try:
            self.path.unlink()
        except OSError:
            pass

