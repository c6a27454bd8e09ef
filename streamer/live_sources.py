"""Live sources for ``streamer live``: a camera (OpenCV), a network stream (PyAV), or a file played as a camera.

    source = open_live_source("0" | "/dev/video2" | "rtsp://..." | "clip.mp4", width=..., height=..., fps=...,
                              loop=False, reconnect=False)

Every source plugs into :class:`streamer.pipeline.Runner` (``name``, ``frames()``, ``close()``) with
the ``drop_oldest`` policy, so the source thread never waits on the pipeline: it yields a frame as
soon as the device (or the wall clock, for a file) has one.  Frames carry:

* ``capture_time``: ``time.perf_counter()`` when the frame was captured (latency is measured from it);
* ``pts`` in :data:`LIVE_TIME_BASE` (1/90000 s, MPEG-TS's clock) from the capture time, strictly
  increasing, so sinks that encode keep real timing even where frames were dropped.

Ending: a camera that stops delivering frames (unplugged) or a stream that ends prints one clear
line; with ``reconnect=True`` the source retries (1 s, then up to 5 s apart) until it comes back or
:meth:`LiveSource.halt` is called, else ``frames()`` ends and the run finishes cleanly.  Opening
failures at start are :class:`~streamer.errors.InputError` (exit code 2).

A halt is honoured within :data:`HALT_POLL_S` whatever the source is doing: a network stream is read by a
thread of its own, so a read waiting for data (up to URL_READ_TIMEOUT_S) or a reopen waiting for a server
(up to URL_OPEN_TIMEOUT_S) is abandoned, and that thread closes the stream when FFmpeg gives it back.
"""
from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

from streamer.errors import InputError, one_line
from streamer.pipeline import Frame
from streamer.sources import VideoFileSource, av_problem

LIVE_TIME_BASE = Fraction(1, 90000)
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 5.0
URL_OPEN_TIMEOUT_S = 10.0
URL_READ_TIMEOUT_S = 2.0          # a read that waits longer counts as "the stream stopped"
HALT_POLL_S = 0.05                # how often a source waiting for its reader thread looks at the halt event
URL_QUEUE = 4                     # decoded frames waiting for the pipeline; more: the oldest is dropped (skipped)


def _say(message: str) -> None:
    print(f"streamer: {message}", file=sys.stderr, flush=True)


def is_url(spec: str) -> bool:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", spec)
    return bool(m) and m.group(1).lower() in URL_SCHEMES


def camera_device(spec: str) -> int | str | None:
    """``"0"`` -> 0, ``"/dev/video2"`` -> ``"/dev/video2"``; None when spec is not a camera."""
    if re.fullmatch(r"\d{1,3}", spec):
        return int(spec)
    if re.fullmatch(r"/dev/video\d+", spec):
        return spec
    return None


class LiveSource:
    """Base: the timestamp clock, the halt event and the reconnect loop shared by every live source."""

    name = "capture"

    def __init__(self, label: str, *, reconnect: bool = False, say: Callable[[str], None] = _say) -> None:
        self.label = label
        self.reconnect = reconnect
        self.say = say
        self.reconnects = 0            # times the source came back after an outage
        self.skipped = 0               # frames a file source skipped to keep pace with the clock
        self.ended: str | None = None  # why frames() ended ("end of file", "stream ended", ...)
        self.width = self.height = 0
        self.fps = 0.0
        self._halt = threading.Event()
        self._seq = 0
        self._t0: float | None = None
        self._last_pts = -1

    # --- for the front end -----------------------------------------------------------------
    def halt(self) -> None:
        """Leave any wait (pacing, reconnect back-off) at once; safe from any thread."""
        self._halt.set()

    @property
    def halted(self) -> bool:
        return self._halt.is_set()

    # --- for subclasses --------------------------------------------------------------------
    def _frame(self, rgb: np.ndarray, capture_time: float | None = None) -> Frame:
        t = time.perf_counter() if capture_time is None else capture_time
        if self._t0 is None:
            self._t0 = t
        pts = max(round((t - self._t0) / LIVE_TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        frame = Frame(self._seq, pts, LIVE_TIME_BASE, t, rgb)
        self._seq += 1
        return frame

    def _wait_to_reconnect(self, why: str, attempt: int) -> bool:
        """Print why and wait before the next attempt; False when the run should end instead."""
        if not self.reconnect:
            if attempt == 0:
                self.say(f"{self.label}: {why}; stopping (use --reconnect to wait for it to come back)")
            return False
        delay = min(RECONNECT_FIRST_S * (attempt + 1), RECONNECT_MAX_S)
        if attempt == 0:
            self.say(f"{self.label}: {why}; reconnecting...")
        return not self._halt.wait(delay)


# --- camera -----------------------------------------------------------------------------------
def _fourcc_text(value: float) -> str:
    v = int(value)
    text = "".join(chr((v >> 8 * i) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else ""


class CameraSource(LiveSource):
    """An OpenCV camera (V4L2 on Linux): requested size and rate, MJPG when the camera offers it.

    MJPG is asked for first (USB cameras deliver 720p/1080p at 30 fps only compressed), then the
    size and rate; what the camera actually gives is read back (``width``, ``height``, ``fps``,
    ``fourcc``).  The driver's queue is set to one buffer so a frame is never stale.
    """

    def __init__(self, device: int | str, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, reconnect: bool = False, say: Callable[[str], None] = _say) -> None:
        label = f"camera {device}"
        super().__init__(label, reconnect=reconnect, say=say)
        self.device = device
        self.requested = (width, height, fps)
        self.fourcc = ""
        self._cap = None
        self._first: np.ndarray | None = None
        self._open(first=True)

    def _open(self, first: bool = False) -> None:
        dev = self.device
        if isinstance(dev, str) and not os.path.exists(dev):
            raise InputError(f"{dev}: no such camera device")
        if isinstance(dev, int) and sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{dev}"):
            raise InputError(f"camera {dev}: no such camera (/dev/video{dev} does not exist)")
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(dev, api)
        if not cap.isOpened():
            cap.release()
            raise InputError(f"{self.label}: cannot open (in use by another program, no permission, or not a camera)")
        width, height, fps = self.requested
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))   # kept only where the camera offers it
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise InputError(f"{self.label}: opened, but it delivers no frames")
        self._cap = cap
        self.height, self.width = bgr.shape[:2]
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or float(fps or 30)
        self.fourcc = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        self._first = bgr
        if first and (width and width != self.width or height and height != self.height):
            self.say(f"{self.label}: asked for {width or self.width}x{height or self.height}, "
                     f"the camera gives {self.width}x{self.height}")

    def _to_rgb(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def frames(self) -> Iterator[Frame]:
        attempt = 0
        while not self.halted:
            if self._cap is None:
                try:
                    self._open()
                except InputError:
                    if not self._wait_to_reconnect("still not available", attempt):
                        return
                    attempt += 1
                    continue
                self.reconnects += 1
                self.say(f"{self.label}: back ({self.width}x{self.height})")
                attempt = 0
            if self._first is not None:
                bgr, self._first = self._first, None
                yield self._frame(self._to_rgb(bgr))
                continue
            ok, bgr = self._cap.read()
            if not (ok and bgr is not None) and not self.halted and os.path.exists(self._device_path()):
                ok, bgr = self._cap.read()           # one retry: a single failed grab is not an unplug
            if ok and bgr is not None:
                yield self._frame(self._to_rgb(bgr))
                continue
            if self.halted:
                return
            self._release()
            self.ended = "camera stopped delivering frames (unplugged?)"
            if not self._wait_to_reconnect(self.ended, 0):
                return
            attempt = 1

    def _device_path(self) -> str:
        return self.device if isinstance(self.device, str) else f"/dev/video{self.device}"

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def close(self) -> None:
        self._release()


# --- network stream ----------------------------------------------------------------------------
class UrlSource(LiveSource):
    """A network stream (rtsp, http(s), udp, tcp, rtmp, srt where FFmpeg has it) decoded by PyAV.

    Low-latency demuxing (no input buffering, small probe) and slice threading only (frame threading
    holds one frame per thread).  A read that waits more than URL_READ_TIMEOUT_S ends the stream (or, with
    ``reconnect``, starts the reconnect loop).

    The first open happens in the constructor (a bad URL fails before anything runs).  After that a reader thread
    owns the stream: it reads, decodes and reconnects, and hands frames over through a short queue, so
    ``frames()`` leaves within HALT_POLL_S of :meth:`halt` even while FFmpeg blocks in a read or a reopen; the
    reader closes the stream when FFmpeg returns.
    """

    def __init__(self, url: str, *, reconnect: bool = False, say: Callable[[str], None] = _say) -> None:
        super().__init__(url, reconnect=reconnect, say=say)
        self.url = url
        self._container = None
        self._stream = None
        self._open()
        self._queue: queue.Queue = queue.Queue(maxsize=URL_QUEUE)
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()          # the container is closed once, by whoever holds it last

    def _options(self) -> dict[str, str]:
        opts = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "500000", "analyzeduration": "1000000"}
        scheme = self.url.split("://", 1)[0].lower()
        if scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = "tcp"
        if scheme == "udp":
            opts.update({"overrun_nonfatal": "1", "fifo_size": "1000000"})
        return opts

    def _open(self) -> None:
        try:
            container = av.open(self.url, options=self._options(), timeout=(URL_OPEN_TIMEOUT_S, URL_READ_TIMEOUT_S))
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.url}: cannot open stream ({self._problem(exc)})") from exc
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.url}: cannot open stream ({one_line(exc)})") from exc
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.url}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        self._container, self._stream = container, stream
        ctx = stream.codec_context
        self.width, self.height = ctx.width, ctx.height
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate and 0 < rate < 1000 else 30.0

    @staticmethod
    def _problem(exc: BaseException) -> str:
        if isinstance(exc, av.error.ExitError):        # PyAV's timeout interrupted FFmpeg
            return "no data within the timeout"
        return av_problem(exc)

    # --- the pipeline's side -----------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="streamer-url-reader", daemon=True)
            self._reader.start()
        while not self.halted:
            try:
                item = self._queue.get(timeout=HALT_POLL_S)
            except queue.Empty:
                continue
            if item is None:                            # the reader ended (self.ended says why)
                return
            rgb, captured = item
            yield self._frame(rgb, captured)

    def _hand_over(self, item) -> None:
        """Queue a frame (or the end marker) for frames(); when the queue is full the oldest frame is dropped."""
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    if self._queue.get_nowait() is not None:
                        self.skipped += 1
                except queue.Empty:
                    pass

    # --- the reader thread -------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            self._read_loop()
        finally:
            self._close_container()
            self._hand_over(None)

    def _read_loop(self) -> None:
        attempt = 0
        while not self.halted:
            if self._container is None:
                try:
                    self._open()
                except InputError as exc:
                    if self.halted or not self._wait_to_reconnect(f"cannot reconnect ({one_line(exc)})", attempt):
                        return
                    attempt += 1
                    continue
                if self.halted:                         # the stop came while FFmpeg was opening
                    return
                self.reconnects += 1
                self.say(f"{self.url}: reconnected")
                attempt = 0
            why = "stream ended"
            try:
                for packet in self._container.demux(self._stream):
                    if self.halted:
                        return
                    for vf in packet.decode():
                        rgb = vf.to_ndarray(format="rgb24")
                        self.width, self.height = rgb.shape[1], rgb.shape[0]
                        self._hand_over((rgb, time.perf_counter()))
            except av.error.ExitError:
                why = f"no data for {URL_READ_TIMEOUT_S:g} s"
            except av.error.FFmpegError as exc:
                why = f"stream interrupted ({av_problem(exc)})"
            self._close_container()
            if self.halted:
                return
            self.ended = why
            if not self._wait_to_reconnect(why, 0):
                return
            attempt = 1

    def _close_container(self) -> None:
        with self._lock:
            container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:   # noqa: BLE001 - a dead connection may fail to close cleanly
                pass

    def close(self) -> None:
        """Halt; the reader (when it runs) closes the stream as soon as FFmpeg hands control back."""
        self.halt()
        reader = self._reader
        if reader is None:
            self._close_container()
        else:
            reader.join(HALT_POLL_S)


# --- a file played as a camera -------------------------------------------------------------------
class FileLiveSource(LiveSource):
    """A video file delivered at its native frame rate, as a camera would: frames are due on the wall
    clock; when decoding falls behind by more than a frame, late frames are skipped (counted in
    ``skipped``) rather than delivered late.  ``loop=True`` starts over at the end, forever."""

    def __init__(self, path: str | os.PathLike, *, loop: bool = False, reconnect: bool = False,
                 say: Callable[[str], None] = _say) -> None:
        super().__init__(str(path), reconnect=reconnect, say=say)
        self.path = Path(path)
        self.loop = loop
        probe = VideoFileSource(self.path)          # validates now: a bad file is exit 2 before anything runs
        self.width, self.height = probe.width, probe.height
        self.fps = float(probe.rate)
        self._decoder = probe
        self.loops = 0

    def frames(self) -> Iterator[Frame]:
        start: float | None = None          # wall time of media time 0 of the current pass
        offset = 0.0                        # media seconds of previous passes
        interval = 1.0 / self.fps if self.fps else 1 / 30
        while not self.halted:
            decoder = self._decoder or VideoFileSource(self.path)
            self._decoder = decoder
            first: float | None = None
            last = 0.0
            try:
                for f in decoder.frames():
                    t_media = f.seconds if f.seconds is not None else f.seq * interval
                    if first is None:
                        first = t_media
                    t_media = t_media - first + offset
                    last = t_media
                    now = time.perf_counter()
                    if start is None:
                        start = now - t_media
                    due = start + t_media
                    if now > due + interval:           # decoding fell behind: a camera would have moved on
                        self.skipped += 1
                        continue
                    if due > now and self._halt.wait(due - now):
                        return
                    yield self._frame(f.pixels)
            finally:
                decoder.close()
                self._decoder = None
            if not self.loop or self.halted:
                self.ended = "end of file"
                return
            self.loops += 1
            offset = last + interval

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


# --- dispatch ----------------------------------------------------------------------------------
def open_live_source(spec: str, *, width: int | None = None, height: int | None = None, fps: float | None = None,
                     loop: bool = False, reconnect: bool = False, say: Callable[[str], None] = _say) -> LiveSource:
    """A camera index or /dev/videoN, a stream URL, or a video file (played at its native rate)."""
    spec = str(spec).strip()
    if not spec:
        raise InputError("--source: empty")
    device = camera_device(spec)
    if device is not None:
        if loop:
            say("--loop applies to files only; ignored for a camera")
        return CameraSource(device, width=width, height=height, fps=fps, reconnect=reconnect, say=say)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        if not is_url(spec):
            raise InputError(f"{spec}: unsupported source URL scheme (use one of {', '.join(URL_SCHEMES)})")
        return UrlSource(spec, reconnect=reconnect, say=say)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file, camera index or /dev/videoN device")
    return FileLiveSource(path, loop=loop, reconnect=reconnect, say=say)
