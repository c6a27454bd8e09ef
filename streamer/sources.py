"""Frame sources: video files through PyAV (threaded decode), and still images.

A source yields :class:`~streamer.pipeline.Frame` objects with HxWx3 uint8 RGB pixels and the
decoder's own timestamps.  Every way a file can be unusable becomes a one-line
:class:`~streamer.errors.InputError` naming the file.  Live sources (cameras, URLs) plug into the
same runner with the ``drop_oldest`` policy; they only need ``name``, ``frames()`` and ``close()``.
"""
from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from streamer.errors import InputError, one_line
from streamer.media_files import check_readable
from streamer.pipeline import Frame

def av_problem(exc: BaseException) -> str:
    """A short description of a PyAV/FFmpeg error."""
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or one_line(exc)
        return text[0].lower() + text[1:] if text else type(exc).__name__
    return one_line(exc)


class VideoFileSource:
    """Decodes the first video stream of a file with PyAV's frame threading; never drops a frame.

    Opening probes the file, so bad input fails here, before any output exists.
    Attributes after opening: width, height, time_base, rate, frame_count (estimate, may be 0),
    codec, pix_fmt, audio (number of audio streams).  ``rotation`` (degrees counter-clockwise, from
    the display matrix) is known once the first frame is decoded; every frame carries it.
    """

    name = "decode"

    def __init__(self, path: str | os.PathLike, *, threads: int = 0) -> None:
        self.path = Path(path)
        check_readable(self.path)
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: not a readable video ({av_problem(exc)})") from exc
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: cannot open ({one_line(exc)})") from exc
        try:
            self._init_stream(threads)
        except BaseException:
            self.close()
            raise
        self.rotation = 0

    def _init_stream(self, threads: int) -> None:
        if not self._container.streams.video:
            raise InputError(f"{self.path}: no video stream")
        stream = self._container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or stream.codec_context.codec is None:
            raise InputError(f"{self.path}: unsupported video codec")
        self.codec = ctx.name
        if not self.codec or self.codec == "none":
            raise InputError(f"{self.path}: unsupported video codec")
        self.width, self.height = ctx.width, ctx.height
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"{self.path}: video has no frame size (corrupt header?)")
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        self._stream = stream
        self.pix_fmt = ctx.pix_fmt
        self.time_base = stream.time_base or Fraction(1, 90000)
        self.rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        if not (0 < self.rate < 1000):
            self.rate = Fraction(25)
        self.declared_frames = stream.frames or 0      # from the container's index (MP4/MOV), 0 if unknown
        self.frame_count = self.declared_frames
        if not self.frame_count and stream.duration and stream.time_base:
            self.frame_count = int(round(float(stream.duration * stream.time_base * self.rate)))
        elif not self.frame_count and self._container.duration:
            self.frame_count = int(round(self._container.duration / 1e6 * float(self.rate)))
        self.audio = len(self._container.streams.audio)

    def frames(self) -> Iterator[Frame]:
        seq = packets = 0
        last_pts: int | None = None
        step = max(1, round(1 / (self.rate * self.time_base))) if self.time_base else 1
        try:
            for packet in self._container.demux(self._stream):
                if packet.is_corrupt:
                    raise InputError(f"{self.path}: corrupt video data at packet {seq}")
                if packet.size:
                    packets += 1
                for vf in packet.decode():
                    if vf.is_corrupt:
                        raise InputError(f"{self.path}: corrupt video frame {seq}")
                    pts = vf.pts
                    if pts is None:
                        pts = 0 if last_pts is None else last_pts + step
                    elif last_pts is not None and pts <= last_pts:   # broken timestamps: keep them increasing
                        pts = last_pts + 1
                    last_pts = pts
                    rgb = vf.to_ndarray(format="rgb24")
                    if seq == 0:
                        self.rotation = int(vf.rotation or 0)
                    frame = Frame(seq, pts, self.time_base, time.perf_counter(), rgb, rotation=self.rotation)
                    seq += 1
                    yield frame
        except InputError:
            raise
        except (av.error.FFmpegError, ValueError, MemoryError, OverflowError) as exc:
            raise InputError(f"{self.path}: corrupt or truncated video at frame {seq} ({av_problem(exc)})") from exc
        if seq == 0:
            raise InputError(f"{self.path}: no decodable video frames (corrupt or truncated)")
        # A cut-off file whose index survived (MP4 with the index first) decodes without error, just fewer
        # frames.  Packets, not frames, are compared: an edit list may legitimately discard decoded frames.
        if self.declared_frames and packets < self.declared_frames:
            raise InputError(f"{self.path}: truncated: {packets} of {self.declared_frames} video frames present")

    def close(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            try:
                container.close()
            except Exception:       # noqa: BLE001 - closing a broken file must not mask the real error
                pass
