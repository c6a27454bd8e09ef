"""Frame sources: video files through PyAV (threaded decode), and still images.

A source yields :class:`~streamer.pipeline.Frame` objects with HxWx3 uint8 RGB pixels and the
decoder's own timestamps.  Every way a file can be unusable becomes a one-line
:class:`~streamer.errors.InputError` naming the file.  A file that is usable but damaged (cut off, corrupt
frames in the middle) gives every frame that decodes and says what it lost in :class:`Damage`; with
``strict=True`` the first sign of damage is an InputError instead.  Live sources (cameras, URLs) plug into the
same runner with the ``drop_oldest`` policy; they only need ``name``, ``frames()`` and ``close()``.
"""
from __future__ import annotations

import os
import time
import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from streamer.errors import InputError, one_line
from streamer.media_files import MP4_EXTENSIONS, check_readable
from streamer.pipeline import Frame


@dataclass(frozen=True)
class ColourTags:
    """How a video's pixels are to be read: FFmpeg's numbers for colour primaries, transfer characteristic, YUV matrix
    and range (AVCOL_PRI_*, AVCOL_TRC_*, AVCOL_SPC_*, AVCOL_RANGE_*; 2, 2, 2 and 0 mean unspecified)."""

    primaries: int = 2
    transfer: int = 2
    matrix: int = 2
    range: int = 0


def av_problem(exc: BaseException) -> str:
    """A short description of a PyAV/FFmpeg error."""
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or one_line(exc)
        return text[0].lower() + text[1:] if text else type(exc).__name__
    return one_line(exc)


def unfinished_mp4(path: Path) -> bool:
    """An MP4/MOV whose top-level boxes hold media data but no index (``moov``): a recording cut off before its
    writer finalized it. FFmpeg says only "invalid data"; the top-level box headers are read, nothing more."""
    if path.suffix.lower() not in MP4_EXTENSIONS:
        return False
    kinds, offset, size = set(), 0, path.stat().st_size
    with path.open("rb") as f:
        while offset + 8 <= size and len(kinds) < 64:
            f.seek(offset)
            head = f.read(16)
            length, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if length == 1 and len(head) == 16:          # a 64-bit size follows the type
                length = int.from_bytes(head[8:16], "big")
            elif length == 0:                            # the box runs to the end of the file
                length = size - offset
            if length < 8 or not kind.isalnum():
                break
            kinds.add(kind)
            offset += length
    return b"ftyp" in kinds and b"mdat" in kinds and b"moov" not in kinds


@dataclass
class Damage:
    """What a damaged file lost, filled in by :meth:`VideoFileSource.frames` (complete once it has ended).

    ``frames_expected``: the frame count the file declares (its index, or its declared duration at its frame rate),
    None when it declares none and nothing was lost; ``frames_converted``: frames delivered; ``frames_skipped``: frames
    in the middle that did not decode (decoder errors, frames flagged corrupt, packets that gave no frame, gaps in a
    regular timeline); ``frames_missing``: frames cut off at the end.  ``problems`` are short phrases for the report.
    """

    frames_expected: int | None = None
    frames_converted: int = 0
    frames_skipped: int = 0
    frames_missing: int = 0
    truncated: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return self.truncated or self.frames_skipped > 0 or bool(self.problems)

    def summary(self) -> str:
        """The problem in a few words, without the file name: ``truncated: 68 of 444 frames present``."""
        parts = []
        if self.truncated and self.frames_expected:
            parts.append(f"{self.frames_expected - self.frames_missing} of {self.frames_expected} frames present")
        if self.frames_skipped:
            parts.append(f"{self.frames_skipped} corrupt frame{'s' * (self.frames_skipped != 1)} skipped")
        parts += self.problems
        return f"{'truncated' if self.truncated else 'damaged'}: {', '.join(parts)}"

    def message(self) -> str:
        """The warning: ``truncated: 68 of 444 frames present; converted 68``."""
        expected = self.frames_expected
        of = f" of {expected}" if expected and expected != self.frames_converted and not self.truncated else ""
        return f"{self.summary()}; converted {self.frames_converted}{of}"

    def as_dict(self) -> dict:
        return {"truncated": self.truncated, "damaged": self.damaged, "frames_expected": self.frames_expected,
                "frames_skipped": self.frames_skipped, "frames_missing": self.frames_missing}


# Formats without a frame index: frames lost to damage leave no count behind, only a gap in the timestamps.
UNINDEXED_FORMATS = ("mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v", "flv", "rawvideo", "mjpeg")
REGULAR_SHARE = 0.9        # a timeline is regular (gaps in it are lost frames) when this share of its steps are equal
                           # (to a tick: 30 fps in milliseconds steps 33, 33, 34)


def declared_end(container, stream) -> float | None:
    """When the video stream ends (seconds) as the file declares it: its own start and duration, Matroska's DURATION
    tag (FFmpeg writes the end time there), or the container's span when the video is its only stream; None when
    the file declares nothing.  Where a declaration is ambiguous the earlier end is taken: a false alarm is worse."""
    if stream.duration and stream.time_base:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", str(tag or "").strip())
    if m:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    if container.duration and len(container.streams) == 1:
        return ((container.start_time or 0) + container.duration) / 1e6
    return None


def timeline_gaps(pts: list[int]) -> int:
    """Frames missing from gaps in a regular timeline (most steps equal); 0 for an irregular (VFR) one."""
    steps = [b - a for a, b in zip(pts, pts[1:]) if b > a]
    if len(steps) < 3:
        return 0
    step = Counter(steps).most_common(1)[0][0]
    tick = 1 if step >= 10 else 0     # rounding jitter, where one tick is a small part of a step
    if step <= 0 or sum(abs(d - step) <= tick for d in steps) < REGULAR_SHARE * len(steps):
        return 0
    return sum(round(d / step) - 1 for d in steps if d > 1.5 * step)


class VideoFileSource:
    """Decodes the first video stream of a file with PyAV's frame threading; never drops a frame that decodes.

    Opening probes the file, so bad input fails here, before any output exists.
    Attributes after opening: width, height, time_base, rate, frame_count (estimate, may be 0),
    codec, pix_fmt, audio (number of audio streams), colour (:class:`ColourTags` as the file declares them, for the
    output to carry).  ``rotation`` (degrees counter-clockwise, from
    the display matrix) is known once the first frame is decoded; every frame carries it.

    Damage (a file cut off, corrupt packets or frames, frames the decoder could not produce, frames missing from a
    regular timeline) is skipped and counted in ``damage`` (:class:`Damage`, complete once ``frames()`` has ended);
    with ``strict=True`` the first sign of it raises :class:`~streamer.errors.InputError` instead.  Lost frames are
    found four ways: the decoder's errors and corrupt flags, video packets against the frame count the index declares
    (a cut-off file), packets against decoded frames (a frame-threaded decoder can drop a frame without an error),
    and the last timestamp against the declared duration or gaps in a regular timeline (files without an index).
    """

    name = "decode"

    def __init__(self, path: str | os.PathLike, *, threads: int = 0, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self.damage = Damage()
        check_readable(self.path)
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            if unfinished_mp4(self.path):
                raise InputError(f"{self.path}: an MP4/MOV without its index (moov atom): cut off or never finalized "
                                 "by its writer, so no frame can be located (a tool such as untrunc rebuilds it "
                                 "from a good file of the same camera)") from exc
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
        self.colour = ColourTags(int(ctx.color_primaries), int(ctx.color_trc), int(ctx.colorspace),
                                 int(ctx.color_range))
        self.time_base = stream.time_base or Fraction(1, 90000)
        self.rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        if not (0 < self.rate < 1000):
            self.rate = Fraction(25)
        self.declared_frames = stream.frames or 0      # from the container's index (MP4/MOV/AVI), 0 if unknown
        self.declared_end = declared_end(self._container, stream)
        self.frame_count = self.declared_frames
        if not self.frame_count and stream.duration and stream.time_base:
            self.frame_count = int(round(float(stream.duration * stream.time_base * self.rate)))
        elif not self.frame_count and self._container.duration:
            self.frame_count = int(round(self._container.duration / 1e6 * float(self.rate)))
        self.audio = len(self._container.streams.audio)

    def _lost(self, what: str) -> None:
        """A sign of damage (counted by the caller).  Under ``strict`` it becomes the error as soon as more data
        follows it; a sign in the last packet is a file cut off, which the end-of-file summary names."""
        if self.strict and self._pending is None:
            self._pending = what

    def _refuse(self, what: str) -> None:
        raise InputError(f"{self.path}: {what} (--strict)")

    def frames(self) -> Iterator[Frame]:
        self.damage = d = Damage()
        self._seq = self._decoded = self._corrupt_skipped = 0
        self._last_pts: int | None = None
        self._raw_pts: list[int] = []
        self._end_pts: tuple[int, int] | None = None      # (pts, duration) of the latest frame
        self._pending: str | None = None                  # strict: the first sign of damage, raised if data follows
        packets = shown = 0                 # video packets with data; those the decoder is to show (not discarded)
        corrupt_packets = decode_errors = 0
        read_error: str | None = None
        demux = self._container.demux(self._stream)
        try:
            while True:
                try:
                    packet = next(demux)
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError) as exc:      # the rest of the file cannot be read
                    read_error = av_problem(exc)
                    if not self.strict:
                        yield from self._decoded_frames(None)     # what the decoder still holds
                    break
                if packet.size:
                    if self._pending is not None:
                        self._refuse(self._pending)
                    packets += 1
                    shown += not packet.is_discard
                if packet.is_corrupt:
                    corrupt_packets += 1
                    self._lost(f"corrupt video data at packet {packets - 1}")
                try:
                    yield from self._decoded_frames(packet)
                except av.error.FFmpegError as exc:
                    decode_errors += 1
                    self._lost(f"corrupt video data at frame {self._seq} ({av_problem(exc)})")
        except InputError:
            raise
        except (ValueError, MemoryError, OverflowError) as exc:
            raise InputError(f"{self.path}: corrupt or truncated video at frame {self._seq} ({av_problem(exc)})") from exc
        if self._seq == 0:
            raise InputError(f"{self.path}: no decodable video frames (corrupt or truncated)")
        self._account(d, packets, shown, corrupt_packets, decode_errors, read_error)
        if d.damaged and self.strict:
            self._refuse(d.summary())

    def _decoded_frames(self, packet) -> Iterator[Frame]:
        step = max(1, round(1 / (self.rate * self.time_base))) if self.time_base else 1
        vframes = packet.decode() if packet is not None else self._stream.decode(None)
        for vf in vframes:
            self._decoded += 1
            if vf.pts is not None:
                self._raw_pts.append(vf.pts)
                if self._end_pts is None or vf.pts > self._end_pts[0]:
                    self._end_pts = (vf.pts, int(vf.duration or 0))
            if vf.is_corrupt:
                self._lost(f"corrupt video frame {self._seq}")
                self._corrupt_skipped += 1
                continue
            pts = vf.pts
            if pts is None:
                pts = 0 if self._last_pts is None else self._last_pts + step
            elif self._last_pts is not None and pts <= self._last_pts:   # broken timestamps: keep them increasing
                pts = self._last_pts + 1
            self._last_pts = pts
            rgb = vf.to_ndarray(format="rgb24")
            if self._seq == 0:
                self.rotation = int(vf.rotation or 0)
            frame = Frame(self._seq, pts, self.time_base, time.perf_counter(), rgb, rotation=self.rotation)
            self._seq += 1
            yield frame

    def _account(self, d: Damage, packets: int, shown: int, corrupt_packets: int, decode_errors: int,
                 read_error: str | None) -> None:
        """Fill in ``d`` once decoding has ended: what was converted, skipped in the middle and cut off at the end."""
        d.frames_converted = self._seq
        undecodable = max(0, shown - self._decoded)       # packets that gave no frame (errors a thread swallowed)
        raw = sorted(self._raw_pts)
        steps = Counter(b - a for a, b in zip(raw, raw[1:]) if b > a)
        step = steps.most_common(1)[0][0] if steps else 0
        fmt = self._container.format.name
        evidence = corrupt_packets or decode_errors or undecodable or read_error
        gaps = timeline_gaps(raw) if evidence or fmt in UNINDEXED_FORMATS else 0
        d.frames_skipped = self._corrupt_skipped + max(undecodable, gaps)
        present = d.frames_converted + d.frames_skipped
        if self.declared_frames:
            # AVI counts frame slots, and an empty chunk (a repeated frame) is a slot without a packet
            held = packets if fmt != "avi" or not raw else max(packets, raw[-1] - raw[0] + 1)
            if held < self.declared_frames:              # an index that outlived its data
                d.truncated, d.frames_missing = True, self.declared_frames - held
            d.frames_expected = max(self.declared_frames, present)
        elif self.declared_end and self._end_pts is not None:
            last_pts, last_duration = self._end_pts
            step_s = float(step * self.time_base) if step else 1 / float(self.rate)     # one frame: the rate's step
            end = float(last_pts * self.time_base) + (float(last_duration * self.time_base) if last_duration else step_s)
            missing_s = self.declared_end - end
            if missing_s > 0.5 * step_s:                  # the timeline stops before the declared end
                # and frames shown before the last one decoded can be gone too: B-frames whose packets came after
                # the cut leave gaps in the timeline's last stretch
                behind = timeline_gaps(raw) if not gaps else 0
                d.truncated, d.frames_missing = True, max(1, round(missing_s * float(self.rate))) + behind
            if d.truncated or d.frames_skipped:
                d.frames_expected = present + d.frames_missing
        elif d.frames_skipped:
            d.frames_expected = present
        if fmt == "mpegts" and not d.damaged and all(self.path.stat().st_size % n for n in (188, 192, 204)):
            d.truncated = True                            # cut off inside a transport packet
            d.problems.append("the file ends inside a transport packet")
        if read_error and not d.truncated:
            d.truncated = True
            d.problems.append(f"unreadable after frame {present} ({read_error})")
        if corrupt_packets and not (d.truncated or d.frames_skipped):
            d.problems.append(f"{corrupt_packets} corrupt packet{'s' * (corrupt_packets != 1)}")
        elif decode_errors and not (d.truncated or d.frames_skipped):
            d.problems.append(f"decoder errors in {decode_errors} packet{'s' * (decode_errors != 1)}")

    def close(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            try:
                container.close()
            except Exception:       # noqa: BLE001 - closing a broken file must not mask the real error
                pass
