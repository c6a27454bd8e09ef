"""Live sinks for ``streamer live``: preview window, virtual camera, network stream, recording, null.

    sink = open_live_sink("window" | "virtualcam[:/dev/videoN]" | "udp://host:port" | "srt://..." |
                          "out.mp4" | "null", width=..., height=..., fps=...)
    sinks = MultiSink([sink, ...])        # several at once, one runner sink

Every sink has the runner's ``write/finish/abort`` trio and shows ``frame.output``
(HxWx3 uint8 RGB).  They are opened when built, so a missing device, an unusable URL or a
GUI-less OpenCV fails the command at once (exit code 2) with one line that says what to do.

* :class:`WindowSink`: ``write()`` (sink thread) only stores the newest frame; the front end's
  main thread calls :meth:`WindowSink.pump` to draw it with an FPS/latency overlay and read hotkeys
  (HighGUI wants one thread, and the main thread gets the signals).
* :class:`VirtualCamSink`: pyvirtualcam (v4l2loopback on Linux, OBS Virtual Camera on Windows and
  macOS): RGB frames at an even size; frames are sent as they come and the last one is repeated
  when the pipeline falls below the camera's rate, so apps watching the camera never see it stall.
* :class:`StreamSink`: H.264 in MPEG-TS over UDP (or SRT where FFmpeg has libsrt), x264 with
  ``tune=zerolatency``, no B-frames, a keyframe every second, the muxer flushing every packet.
* :class:`RecordSink`: a video file through the file pipeline's encoder; kept (finalized) when the
  run is stopped by Ctrl-C or a quit key, since that is how a live recording ends.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from fractions import Fraction
from urllib.parse import urlsplit
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

from streamer.errors import InputError, PipelineError, one_line
from streamer.live_sources import LIVE_TIME_BASE
from streamer.pipeline import Frame
from streamer.media_files import MP4_EXTENSIONS, is_video
from streamer.sinks import VideoFileSink, check_output
from streamer.sources import av_problem

MODPROBE_HINT = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=streamer"
KEYS = {"n": "next", "p": "prev", "+": "stronger", "=": "stronger", "-": "weaker", "_": "weaker",
        "s": "smooth", "q": "quit", "\x1b": "quit"}
TS_PACKET = 1316      # 7 x 188-byte MPEG-TS packets per UDP datagram (fits any MTU)
DISK_RESERVE = 512 << 10   # free bytes a recording keeps beyond its buffered data, pending frames and index
# A recording's MP4 survives a kill: its index up front, a fragment from each keyframe on (RecordSink)
FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"
KEYFRAME_S = 2.0           # ...and a keyframe every 2 s: a kill loses at most about that much


def even_size(width: int, height: int) -> tuple[int, int]:
    """4:2:0 video (H.264, I420/NV12 cameras) needs even sides: round down, at least 2."""
    return max(2, width - width % 2), max(2, height - height % 2)


def fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """HxWx3 uint8 at exactly width x height: crop a leftover odd row/column, else resize."""
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    if 0 <= w - width <= 1 and 0 <= h - height <= 1:
        return rgb[:height, :width]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if w > width else cv2.INTER_LINEAR)


# --- null ------------------------------------------------------------------------------------
class NullSink:
    """Discards frames (benchmarks; a run that only measures)."""

    name = "null"
    label = "null"

    def write(self, frame: Frame) -> None:
        pass

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


# --- window ----------------------------------------------------------------------------------
def opencv_has_gui() -> tuple[bool, str]:
    """(True, backend) when this OpenCV build can open windows."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            value = value.strip()
            return (value.upper() not in ("", "NONE")), value
    return True, "unknown"


def _display_problem() -> str | None:
    """Why no window can open here (Linux without a display), or None."""
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("WAYLAND_DISPLAY"):
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "no display (DISPLAY is not set)"
    if display.startswith(":"):                   # a local X server: its socket must exist, else Qt aborts the process
        number = display[1:].split(".")[0]
        if number.isdigit() and not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return f"no X server on display {display}"
    return None


class WindowSink:
    """OpenCV preview window with an overlay and hotkeys (n/p style, +/- strength, s smoothing, q/Esc quit)."""

    name = "window"

    def __init__(self, title: str = "streamer live", *, on_key: Callable[[str], None] | None = None,
                 overlay: Callable[[], str] | None = None) -> None:
        ok, backend = opencv_has_gui()
        if not ok:
            raise InputError("window sink: this OpenCV build has no GUI (opencv-python-headless?); "
                             "install it with windows: pip uninstall -y opencv-python-headless && "
                             "pip install --force-reinstall opencv-python")
        problem = _display_problem()
        if problem:
            raise InputError(f"window sink: {problem}; run it in a desktop session, or use --sink virtualcam / udp://HOST:PORT")
        self.title = title
        self.label = "window"
        self.on_key = on_key
        self.overlay = overlay
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as exc:
            raise InputError(f"window sink: cannot open a window ({one_line(exc)})") from exc
        self.backend = backend
        self.shown = 0
        self.closed = False                 # the user closed the window or pressed q/Esc
        self._slot: np.ndarray | None = None
        self._lock = threading.Lock()
        self._sized = False

    # sink thread
    def write(self, frame: Frame) -> None:
        with self._lock:
            self._slot = frame.output

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass

    # main thread
    def render(self, rgb: np.ndarray) -> np.ndarray:
        """The BGR image shown: the frame with the overlay text (shadowed, readable on any picture)."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        text = self.overlay() if self.overlay is not None else ""
        if text:
            scale = max(0.45, min(bgr.shape[1] / 1280, 1.2) * 0.7)
            for i, line in enumerate(text.split("\n")):
                org = (8, int(22 * scale / 0.7) * (i + 1))
                cv2.putText(bgr, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(bgr, line, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return bgr

    def pump(self, wait_ms: int = 1) -> None:
        """Show the newest frame and handle keys; call often from the main thread."""
        with self._lock:
            rgb, self._slot = self._slot, None
        if rgb is not None:
            if not self._sized:
                cv2.resizeWindow(self.title, rgb.shape[1], rgb.shape[0])
                self._sized = True
            cv2.imshow(self.title, self.render(rgb))
            self.shown += 1
        key = cv2.waitKey(wait_ms)
        if key >= 0:
            action = KEYS.get(chr(key & 0xFF))
            if action == "quit":
                self.closed = True
            if action and self.on_key is not None:
                self.on_key(action)
        if self.shown:
            try:
                visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
            except cv2.error:
                visible = 0
            if visible < 1:                 # closed with the window manager's button
                self.closed = True
                if self.on_key is not None:
                    self.on_key("quit")

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


# --- virtual camera ------------------------------------------------------------------------------
def virtualcam_error(exc: BaseException, device: str | None) -> InputError:
    """pyvirtualcam's failure as one actionable line (the modprobe command on Linux)."""
    text = " / ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    if sys.platform.startswith("linux"):
        where = f"{device}" if device else "no v4l2loopback device"
        return InputError(f"virtualcam: {where} ({text}); load the v4l2loopback module "
                          f"(sudo apt install v4l2loopback-dkms) with: {MODPROBE_HINT}")
    return InputError(f"virtualcam: {text}; install OBS Studio (28 or newer) and start its Virtual Camera once, "
                      "then stop it so streamer can use it")


class VirtualCamSink:
    """Frames into a virtual camera through pyvirtualcam.

    Format: RGB uint8 at an even size (pyvirtualcam converts to the device's I420/NV12/YUYV natively;
    odd sources lose their last row/column).  Pacing: each frame is sent when it arrives (no added
    latency); when nothing arrives for ``repeat_after`` frame intervals (slow model, a style loading)
    a keep-alive thread sends the last frame again, so the camera keeps its rate for the apps reading it.
    """

    name = "virtualcam"

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None,
                 backend: str | None = None, repeat_after: float = 2.0) -> None:
        try:
            import pyvirtualcam   # optional (the live extra): only this sink needs it
        except ImportError as exc:
            raise InputError("virtualcam: pyvirtualcam is not installed (pip install pyvirtualcam, "
                             "or pip install 'streamer[live]')") from exc
        self.width, self.height = even_size(width, height)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.label = f"virtualcam {device}" if device else "virtualcam"
        try:
            self.cam = pyvirtualcam.Camera(self.width, self.height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                           device=device, backend=backend)
        except Exception as exc:   # noqa: BLE001 - pyvirtualcam raises RuntimeError/ValueError per backend
            raise virtualcam_error(exc, device) from exc
        self.device = self.cam.device
        self.sent = 0                 # frames from the pipeline
        self.repeated = 0             # keep-alive repeats of the last frame
        self._lock = threading.Lock()
        self._last: np.ndarray | None = None
        self._last_sent = 0.0
        self._repeat_after = repeat_after / self.fps
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_alive, name="streamer-virtualcam-keepalive", daemon=True)
        self._keeper.start()

    def convert(self, rgb: np.ndarray) -> np.ndarray:
        """Any HxWx{1,3,4} uint8 frame -> C-contiguous HxWx3 RGB at the camera's size."""
        if rgb.dtype != np.uint8:
            rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        if rgb.ndim == 2 or rgb.shape[2] == 1:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        elif rgb.shape[2] == 4:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_RGBA2RGB)
        return np.ascontiguousarray(fit(rgb, self.width, self.height))

    def _send(self, img: np.ndarray) -> None:
        self.cam.send(img)
        self._last_sent = time.perf_counter()

    def write(self, frame: Frame) -> None:
        img = self.convert(frame.output)
        with self._lock:
            if self.cam is None:
                return
            try:
                self._send(img)
            except Exception as exc:   # noqa: BLE001 - pyvirtualcam raises per backend (OSError, RuntimeError)
                raise PipelineError(f"{self.label}: the virtual camera went away ({one_line(exc)})") from exc
            self._last = img
            self.sent += 1

    def _keep_alive(self) -> None:
        while not self._stop.wait(self._repeat_after / 2):
            with self._lock:
                if self.cam is None or self._last is None:
                    continue
                if time.perf_counter() - self._last_sent >= self._repeat_after:
                    try:
                        self._send(self._last)
                    except Exception:   # noqa: BLE001 - the sink thread reports real failures
                        continue
                    self.repeated += 1

    def finish(self) -> None:
        self.close()

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            cam, self.cam = self.cam, None
        if cam is not None:
            try:
                cam.close()
            except Exception:   # noqa: BLE001 - a device that is gone cannot be closed cleanly; nothing is lost
                pass
        if self._keeper.is_alive() and threading.current_thread() is not self._keeper:
            self._keeper.join(1.0)


# --- network stream ----------------------------------------------------------------------------
def stream_url(url: str) -> str:
    """udp:// gets pkt_size=1316 (whole TS packets per datagram) unless the URL sets it."""
    if url.lower().startswith("udp://") and "pkt_size=" not in url:
        url += ("&" if "?" in url else "?") + f"pkt_size={TS_PACKET}"
    return url


class StreamSink:
    """H.264 in MPEG-TS through PyAV to udp:// (or srt:// when FFmpeg has libsrt): ffplay, VLC and OBS's
    Media Source open it (``ffplay -fflags nobuffer -flags low_delay udp://127.0.0.1:PORT``).

    Zero latency: x264 ``tune=zerolatency`` (no lookahead, sliced threads), ``preset`` ultrafast by
    default, no B-frames, a keyframe every ``gop_seconds`` (a player joining mid-stream waits at most
    that), the TS muxer with no mux delay/preload and the I/O flushed after every packet.  Timestamps
    are the capture times (1/90000 s), so players see real timing even where frames were dropped.
    """

    name = "stream"

    def __init__(self, url: str, width: int, height: int, fps: float, *, preset: str = "ultrafast",
                 crf: int = 23, gop_seconds: float = 1.0) -> None:
        self.url = url
        self.label = url
        self.width, self.height = even_size(width, height)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        scheme = url.split("://", 1)[0].lower()
        try:
            self._out = av.open(stream_url(url), "w", format="mpegts", timeout=5.0,
                                container_options={"flush_packets": "1", "muxdelay": "0", "muxpreload": "0"})
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{url}: cannot open output stream ({av_problem(exc)})") from exc
        gop = max(1, round(self.fps * gop_seconds))
        self._key_every = gop_seconds          # keyframes by time as well: when frames are dropped, a GOP
        self._last_key: float | None = None    # counted in frames would stretch past gop_seconds
        bits = int(self.width * self.height * self.fps * 0.15)       # ~0.15 bit/pixel: a cap, CRF decides below it
        options = {"preset": preset, "tune": "zerolatency", "crf": str(crf), "bf": "0",
                   "maxrate": str(bits), "bufsize": str(bits // 2),
                   "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"}
        try:
            s = self._out.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001), options=options)
            s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
            s.time_base = LIVE_TIME_BASE
            s.codec_context.time_base = LIVE_TIME_BASE
            s.codec_context.max_b_frames = 0
            s.codec_context.gop_size = gop
            self._stream = s
            self._out.start_encoding()                     # opens the network output now: errors show at start
        except av.error.ProtocolNotFoundError as exc:
            self._close()
            if scheme == "srt":
                raise InputError(f"{url}: this FFmpeg build (PyAV's) has no SRT support; use udp://HOST:PORT, "
                                 "or install PyAV built against an FFmpeg with libsrt") from exc
            raise InputError(f"{url}: protocol not supported by this FFmpeg build") from exc
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._close()
            raise InputError(f"{url}: cannot open output stream ({av_problem(exc)})") from exc
        self.frames = 0
        self._last_pts = -1

    def write(self, frame: Frame) -> None:
        img = np.ascontiguousarray(fit(frame.output, self.width, self.height))
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        pts = frame.pts if frame.pts is not None and frame.time_base == LIVE_TIME_BASE else \
            round((frame.capture_time or time.perf_counter()) / LIVE_TIME_BASE)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        vf.pts, vf.time_base = pts, LIVE_TIME_BASE
        t = pts * float(LIVE_TIME_BASE)
        if self._last_key is None or t - self._last_key >= self._key_every:
            vf.pict_type = av.video.frame.PictureType.I     # libx264 makes a forced I frame an IDR (closed GOP)
            self._last_key = t
        try:
            self._out.mux(self._stream.encode(vf))
        except (av.error.FFmpegError, OSError) as exc:
            raise PipelineError(f"{self.url}: sending failed ({av_problem(exc)})") from exc
        self.frames += 1

    def finish(self) -> None:
        try:
            self._out.mux(self._stream.encode(None))
        except Exception:   # noqa: BLE001 - the receiver may be gone; nothing to keep
            pass
        self._close()

    def abort(self) -> None:
        self.finish()

    def _close(self) -> None:
        out, self._out = getattr(self, "_out", None), None
        if out is not None:
            try:
                out.close()
            except Exception:   # noqa: BLE001
                pass


# --- recording ----------------------------------------------------------------------------------
class RecordSink:
    """Records the stylized stream to a video file, written in place as it goes, as OBS does.

    Unlike a file conversion, whose output appears only once complete, a recording is worth having in part: a
    process that is killed outright (SIGKILL, a power cut) cannot finalize it, so it is written to survive that. An
    MP4/MOV is fragmented (an index up front, a fragment per keyframe, a keyframe every ``KEYFRAME_S`` seconds), and
    Matroska and MPEG-TS need no final index; what was written up to the last fragment plays.
    A stop (Ctrl-C, q) is the normal end of a recording: ``abort()`` finalizes what was recorded (or, where that
    fails, keeps what the fragments hold); a recording with no frames leaves no file.  A disk that fills is
    the same kind of end: the free space is checked before each frame and the recording is finalized
    while there is still room for the encoder's pending frames and the index (an MP4's moov).  Once a
    write has failed with ENOSPC the muxer cannot write a trailer any more, so waiting for it would lose
    the whole recording.
    """

    name = "record"

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, *, overwrite: bool = False,
                 codec: str = "libx264", preset: str = "veryfast", crf: int = 20) -> None:
        self.path = Path(path)
        self.label = str(path)
        if not is_video(self.path):
            raise InputError(f"{path}: not a sink: use window, virtualcam, null, udp://HOST:PORT, srt://..., "
                             "or a video file name (.mp4, .mkv, .ts, ...)")
        check_output(self.path, overwrite)
        self.width, self.height = even_size(width, height)
        rate = Fraction(fps if fps and fps > 0 else 30).limit_denominator(1001)
        # every packet handed to the file at once (one write a frame), not held in FFmpeg's 32 KiB buffer
        durable = {"flush_packets": "1"}
        if self.path.suffix.lower() in MP4_EXTENSIONS:
            durable["movflags"] = FRAGMENTED_MP4
        self._sink = VideoFileSink(self.path, width=self.width, height=self.height, time_base=LIVE_TIME_BASE,
                                   rate=rate, codec=codec, crf=crf, preset=preset, label=str(path),
                                   codec_fallback=True, container_options=durable,
                                   gop=max(1, round(KEYFRAME_S * float(rate))))
        self._lock = threading.Lock()
        self._done = False
        self.frames = 0

    def write(self, frame: Frame) -> None:
        self._check_room()
        img = fit(frame.output, self.width, self.height)
        if img is not frame.output:
            frame = dataclasses.replace(frame, stylized=img)
        self._sink.write(frame)
        self.frames += 1

    def _check_room(self) -> None:
        """Finalize and stop before the disk is full (see the class docstring)."""
        if not self.frames:
            return
        muxed = self._sink.bytes
        try:
            free = (st := os.statvfs(self.path.parent)).f_bavail * st.f_frsize
            on_disk = self.path.stat().st_size
        except OSError:
            return
        buffered = max(0, muxed - on_disk)                  # the muxer writes in blocks of up to 256 KiB
        pending = 40 * muxed // self.frames                 # frames inside the encoder (lookahead, threads)
        if free >= DISK_RESERVE + buffered + pending + muxed // 100:    # + the index, about 1% of the data
            return
        self.finish()
        raise PipelineError(f"{self.path}: disk nearly full ({free / 1e6:.1f} MB free): recording stopped and kept, "
                            f"{self.frames} frames")

    def finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            if self.frames:
                self._sink.finish()
            else:
                self._sink.abort()

    def abort(self) -> None:
        try:
            self.finish()
        except Exception:   # noqa: BLE001 - it could not be finalized: keep what its fragments hold, as after a kill
            with self._lock:
                self._done = True
            self._sink.abort(keep_file=self.frames > 0)


# --- several at once ------------------------------------------------------------------------------
class MultiSink:
    """One runner sink that writes every frame to each sink in turn; finish/abort reach all of them once.

    A sink that fails mid-run (a recording's disk fills, a virtual camera disappears) is ended and dropped
    with one line through ``say``, and the others go on; the run itself fails only when no sink is left.
    """

    name = "sinks"

    def __init__(self, sinks: list, *, say: Callable[[str], None] | None = None) -> None:
        if not sinks:
            raise InputError("--sink: at least one sink is needed")
        self.sinks = list(sinks)
        self.failed: list[str] = []          # "LABEL: problem" for each sink dropped mid-run
        self.say = say
        self._ended = False
        self._lock = threading.Lock()

    def write(self, frame: Frame) -> None:
        for sink in list(self.sinks):
            try:
                sink.write(frame)
            except Exception as exc:   # noqa: BLE001 - any sink failure: drop that sink, keep the others
                self._drop(sink, exc)

    def _drop(self, sink, exc: Exception) -> None:
        if len(self.sinks) == 1:
            raise exc
        self.sinks.remove(sink)
        problem = one_line(exc)
        self.failed.append(problem)
        try:
            sink.abort()                     # a recording keeps (finalizes) what it holds
        except Exception:   # noqa: BLE001 - it already failed; its message is the one that matters
            pass
        if self.say is not None:
            left = ", ".join(getattr(s, "label", s.name) for s in self.sinks)
            self.say(f"warning: {problem}; that sink stopped, still sending to {left}")

    def _end(self, method: str) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                getattr(sink, method)()
            except Exception as exc:   # noqa: BLE001 - every sink gets its chance to release its device
                first = first or exc
        if first is not None and method == "finish":
            raise first

    def finish(self) -> None:
        self._end("finish")

    def abort(self) -> None:
        self._end("abort")

    def windows(self) -> list[WindowSink]:
        return [s for s in self.sinks if isinstance(s, WindowSink)]


# --- dispatch ----------------------------------------------------------------------------------
def open_live_sink(spec: str, *, width: int, height: int, fps: float, overwrite: bool = False,
                   on_key: Callable[[str], None] | None = None, overlay: Callable[[], str] | None = None,
                   stream_preset: str = "ultrafast"):
    """window | virtualcam[:DEVICE] | null | udp://HOST:PORT | srt://... | a video file to record."""
    spec = str(spec).strip()
    low = spec.lower()
    if low == "window":
        return WindowSink(on_key=on_key, overlay=overlay)
    if low == "virtualcam" or low.startswith("virtualcam:"):
        device = spec.split(":", 1)[1] or None if ":" in spec else None
        return VirtualCamSink(width, height, fps, device=device)
    if low == "null":
        return NullSink()
    if low.startswith(("udp://", "srt://")):
        try:
            port = urlsplit(spec).port
        except ValueError:   # not a number, or out of range
            port = None
        if port is None:
            raise InputError(f"{spec}: no valid port (use {low[:3]}://HOST:PORT)")
        return StreamSink(spec, width, height, fps, preset=stream_preset)
    if "://" in spec:
        raise InputError(f"{spec}: unsupported sink URL (use udp://HOST:PORT or srt://HOST:PORT)")
    if not spec:
        raise InputError("--sink: empty")
    return RecordSink(spec, width, height, fps, overwrite=overwrite)
