"""``streamer live``: a camera, stream or file stylized live into a window, a virtual camera, a UDP stream or a file.

    streamer live --source 0 --sink window --sink virtualcam --style starry_night --styles kandinsky,mona_lisa

Assembly (one :class:`~streamer.pipeline.Runner`, policy ``drop_oldest``, the file pipeline's stages):

    live source ──► preprocess ──► infer ──► postprocess ──► smooth ──► MultiSink(window, virtualcam, udp, file)
    (never waits)    queues of 1-2 frames that drop their oldest frame when full (counted in ``dropped``)

* The infer stage reads the current style vector from :class:`StyleBank` with one attribute read;
  vectors for ``--styles`` are computed on a side thread (at start, and again when the strength
  changes), so switching with n/p never restarts the engine nor stalls a frame.
* Latency is ``time.perf_counter()`` at the sink minus the frame's capture time; a stats line each
  second on stderr (unless ``--quiet``), and with ``--json`` one object on stdout at exit.
* The main thread pumps preview windows (HighGUI wants one thread), prints the stats, and takes the
  signals: Ctrl-C/SIGTERM halt the source, stop the runner, and every sink releases its device
  (a recording is finalized) within a second; the exit codes are 130/143 as everywhere in streamer.

Python use: ``LiveSession(LiveOptions(source=..., sinks=[...]), engine=...).run()`` -> :class:`LiveResult`.
"""
from __future__ import annotations

import json
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from streamer.errors import InputError, Interrupted, StreamerError, one_line
from streamer.pipeline import Frame, Runner, Stats

STRENGTH_STEP = 0.1
LATENCY_KEEP = 200_000             # latencies kept for the exit percentiles (~2 h at 30 fps)
JOIN_AFTER_STOP_S = 0.9            # how long the front end waits for the runner after a stop


def _say(message: str) -> None:
    print(f"streamer: {message}", file=sys.stderr, flush=True)


@dataclass
class LiveOptions:
    source: str = "0"
    sinks: list[str] = field(default_factory=lambda: ["window"])
    style: str = "starry_night"
    styles: list[str] = field(default_factory=list)      # hotkey cycle (n/p); --style is added first if missing
    width: int | None = None                              # requested camera size and rate
    height: int | None = None
    fps: float | None = None
    loop: bool = False
    reconnect: bool = False
    max_size: int | None = None
    backend: str = "auto"
    model: str | None = None
    smooth: str | None = None                             # off | ema | flow (None: temporal.DEFAULT_SMOOTH)
    strength: float = 1.0
    threads: int | None = None
    queue_size: int = 1
    overwrite: bool = False
    duration: float | None = None                         # stop after this many seconds
    stream_preset: str = "ultrafast"


@dataclass
class LiveResult:
    source: str
    sinks: list[str]
    width: int = 0
    height: int = 0
    source_fps: float = 0.0
    processing: list[int] | None = None
    backend: str = ""
    model: str = ""
    style: str = ""
    strength: float = 1.0
    smooth: str = "off"
    seconds: float = 0.0
    input_fps: float = 0.0
    output_fps: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    skipped: int = 0                                      # frames a file source skipped to keep its clock
    reconnects: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    ended: str = ""                                       # end of source | quit | duration | interrupted | error

    def as_dict(self) -> dict:
        return asdict(self)


def percentiles(values_s: list[float]) -> dict[str, float]:
    """{p50, p95, p99, max} in milliseconds (empty -> zeros)."""
    if not values_s:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    a = np.asarray(values_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1),
            "max": round(float(a.max()), 1)}


# --- styles ------------------------------------------------------------------------------------
class StyleBank:
    """The current style vector, swapped atomically; encoding and strength mixing on a side thread.

    ``for_frame(rgb)`` is what the infer stage calls (the StyleVector interface of
    :func:`streamer.processing.stylize_stages`): it returns the current [1,100] vector with no wait.
    """

    def __init__(self, encoder, names: list[str], strength: float = 1.0, *,
                 on_switch: Callable[[str], None] | None = None) -> None:
        from streamer.styles import StyleError, resolve_style

        if not 0.0 <= strength <= 1.0:
            raise InputError(f"--strength {strength}: must be between 0 and 1")
        for name in names:                          # a typo fails at start, not when its key is pressed
            try:
                resolve_style(name)
            except StyleError as exc:
                raise InputError(one_line(exc)) from exc
        self.encoder, self.names = encoder, list(names)
        self.on_switch = on_switch
        self._vectors: dict[str, np.ndarray] = {}
        self._content: np.ndarray | None = None
        self._content_asked = False
        self._index = 0
        self._strength = strength
        self.generation = 0                         # +1 per style switch (the smoother resets on it)
        first = self._encode(self.names[0])
        self._state = (self.names[0], strength, first)   # (name, strength, vector): replaced, never mutated
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="streamer-styles", daemon=True)
        self._thread.start()
        for name in self.names[1:]:
            self._jobs.put(("encode", name))

    def _encode(self, name: str) -> np.ndarray:
        from streamer.styles import StyleError

        if name not in self._vectors:
            try:
                self._vectors[name] = self.encoder.encode(name)
            except StyleError as exc:
                raise InputError(one_line(exc)) from exc
        return self._vectors[name]

    # --- read by the infer stage (any thread) --------------------------------------------
    def for_frame(self, rgb: np.ndarray) -> np.ndarray:
        if self._strength < 1.0 and not self._content_asked:
            self._content_asked = True
            self._jobs.put(("content", rgb.copy()))
        return self._state[2]

    @property
    def name(self) -> str:
        return self._state[0]

    @property
    def strength(self) -> float:
        return self._state[1]

    # --- requests (any thread; applied on the side thread) -----------------------------------
    def step(self, delta: int) -> None:
        self._jobs.put(("step", delta))

    def select(self, name: str) -> None:
        self._jobs.put(("select", name))

    def change_strength(self, delta: float) -> None:
        self._jobs.put(("strength", delta))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every request so far has been applied (tests, benchmarks)."""
        done = threading.Event()
        self._jobs.put(("mark", done))
        return done.wait(timeout)

    def close(self) -> None:
        self._jobs.put(None)

    # --- side thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            kind, arg = job
            try:
                if kind == "encode":
                    self._encode(arg)
                elif kind == "content":
                    self._content = self.encoder.encode_image(arg)
                    self._publish(self._state[0])
                elif kind == "step":
                    self._index = (self._index + arg) % len(self.names)
                    self._publish(self.names[self._index], switched=True)
                elif kind == "select":
                    if arg not in self.names:
                        self.names.append(arg)
                    self._index = self.names.index(arg)
                    self._publish(arg, switched=True)
                elif kind == "strength":
                    self._strength = round(min(1.0, max(0.0, self._strength + arg)), 3)
                    self._publish(self._state[0])         # below 1: mixed with the content vector once it exists
                elif kind == "mark":
                    arg.set()
            except Exception as exc:   # noqa: BLE001 - a style that fails to load must not stop the show
                _say(f"style: {one_line(exc)}")

    def _publish(self, name: str, switched: bool = False) -> None:
        from streamer.processing import mix_style

        vec = mix_style(self._encode(name), self._content, self._strength)
        if switched:
            self.generation += 1
        self._state = (name, self._strength, vec)
        if switched and self.on_switch is not None:
            self.on_switch(name)


class LiveSmoother:
    """The smoothing stage's callable: on/off at run time (hotkey s), reset after a style switch."""

    def __init__(self, mode: str, bank: StyleBank | None = None) -> None:
        from streamer.temporal import DEFAULT_SMOOTH, make_smoother

        self.mode = mode if mode != "off" else (DEFAULT_SMOOTH if DEFAULT_SMOOTH != "off" else "flow")
        self.enabled = mode != "off"
        self._impl = make_smoother(self.mode) if self.enabled else None
        self._bank = bank
        self._generation = bank.generation if bank else 0
        self._reset = False

    def toggle(self) -> bool:
        self.enabled = not self.enabled
        self._reset = True
        return self.enabled

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return stylized
        if self._impl is None:
            from streamer.temporal import make_smoother

            self._impl = make_smoother(self.mode)
        gen = self._bank.generation if self._bank else 0
        if self._reset or gen != self._generation:
            self._impl.reset()
            self._reset, self._generation = False, gen
        return self._impl(frame, stylized)

    @property
    def label(self) -> str:
        return self.mode if self.enabled else "off"


# --- the session ---------------------------------------------------------------------------------
class LiveSession:
    """Opens source, engine, styles and sinks (bad input fails here, exit 2), then runs until the
    source ends, a quit key, ``duration``, :meth:`stop` or a signal."""

    def __init__(self, options: LiveOptions, *, engine=None, encoder=None, say: Callable[[str], None] = _say,
                 stats_line: Callable[[str], None] | None = None) -> None:
        self.options = o = options
        self.say = say
        self.stats_line = stats_line
        if o.max_size is not None and o.max_size < 16:
            raise InputError(f"--max-size {o.max_size}: too small")
        if o.duration is not None and o.duration <= 0:
            raise InputError(f"--duration {o.duration}: must be positive")
        for name, v in (("--width", o.width), ("--height", o.height), ("--fps", o.fps)):
            if v is not None and v <= 0:
                raise InputError(f"{name} {v}: must be positive")
        self.interrupted: BaseException | None = None
        self.error: BaseException | None = None
        self.ended = ""
        self._engine, self._encoder = engine, encoder
        self._own_engine = engine is None
        self._latencies: list[float] = []
        self._recent: list[float] = []
        self._quit = threading.Event()
        self.source = self.bank = self.smoother = self.sink = self.runner = None
        self.stats = Stats()
        self._last_line = (0.0, 0, 0, 0)
        self._shown_fps = 0.0
        self._shown_p50 = 0.0
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # --- assembly -----------------------------------------------------------------------------
    def _open(self) -> None:
        from engines.base import EngineError
        from streamer.live_sinks import MultiSink, open_live_sink
        from streamer.live_sources import open_live_source
        from streamer.model_registry import resolve_model
        from streamer.processing import processing_size, stylize_stages
        from streamer.temporal import DEFAULT_SMOOTH

        o = self.options
        names = [o.style] + [s for s in o.styles if s != o.style]
        if self._encoder is None:
            from streamer.styles import StyleEncoder

            self._encoder = StyleEncoder(threads=1)
        self.smoother = None
        self.bank = StyleBank(self._encoder, names, o.strength)
        self.source = open_live_source(o.source, width=o.width, height=o.height, fps=o.fps, loop=o.loop,
                                       reconnect=o.reconnect, say=self.say)
        if self._engine is None:
            from engines.select import create_engine

            try:
                self._engine = create_engine(o.backend, resolve_model(o.model), threads=o.threads)
            except EngineError as exc:
                raise InputError(one_line(exc)) from exc
        src = self.source
        self.size = processing_size(src.width, src.height, o.max_size, self._engine.info, name=src.label)
        self.smoother = LiveSmoother(o.smooth or DEFAULT_SMOOTH, self.bank)
        stages = stylize_stages(self._engine, self.bank, self.size, batch=1, smoother=self.smoother)
        sinks = []
        try:
            for spec in o.sinks or ["window"]:
                sinks.append(open_live_sink(spec, width=src.width, height=src.height, fps=src.fps or 30,
                                            overwrite=o.overwrite, on_key=self.key, overlay=self.overlay,
                                            stream_preset=o.stream_preset))
        except BaseException:
            MultiSink(sinks).abort() if sinks else None
            raise
        self.sink = MultiSink(sinks)
        self._engine.warmup(self.size[1], self.size[0], 1)
        self.runner = Runner(self.source, stages, self.sink, policy="drop_oldest", queue_size=o.queue_size,
                             stats=self.stats, label=src.label, on_frame=self._on_frame)

    @property
    def engine(self):
        return self._engine

    # --- callbacks ------------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:          # sink thread, after every sink wrote the frame
        latency = time.perf_counter() - frame.capture_time
        if len(self._latencies) >= LATENCY_KEEP:
            del self._latencies[: LATENCY_KEEP // 2]
        self._latencies.append(latency)
        self._recent.append(latency)

    def key(self, action: str) -> None:
        """A hotkey's action: next, prev, stronger, weaker, smooth, quit."""
        if action == "next":
            self.bank.step(+1)
        elif action == "prev":
            self.bank.step(-1)
        elif action == "stronger":
            self.bank.change_strength(+STRENGTH_STEP)
        elif action == "weaker":
            self.bank.change_strength(-STRENGTH_STEP)
        elif action == "smooth":
            self.smoother.toggle()
        elif action == "quit":
            self._quit.set()

    def overlay(self) -> str:
        return (f"{self._shown_fps:4.1f} fps  {self._shown_p50:3.0f} ms  {self.bank.name} x{self.bank.strength:.1f}"
                f"  smooth {self.smoother.label}\nn/p style  +/- strength  s smooth  q quit")

    # --- running --------------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        if not self.ended:
            self.ended = reason
        if self.source is not None:
            self.source.halt()
        if self.runner is not None:
            self.runner.stop()

    def run(self) -> "LiveResult":
        """Run to the end; a signal (Interrupted/KeyboardInterrupt) stops it and is kept in ``interrupted``."""
        box: dict = {}
        done = threading.Event()     # not Thread.is_alive(): a signal arriving inside Thread.join() (< 3.13) can
                                     # leave the thread marked as finished while it still runs

        def target() -> None:
            try:
                box["stats"] = self.runner.run()
            except BaseException as exc:   # noqa: BLE001 - handed to the main thread
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=target, name="streamer-live-runner", daemon=True)
        windows = self.sink.windows()
        start = time.perf_counter()
        next_line = start + 1.0
        deadline = start + self.options.duration if self.options.duration else None
        self._last_line = (start, 0, 0, 0)
        thread.start()
        try:
            while not done.is_set():
                if windows:
                    for w in windows:
                        w.pump(5)
                else:
                    done.wait(0.05)
                now = time.perf_counter()
                if now >= next_line:
                    self._line(now)
                    next_line += 1.0
                    if next_line < now:
                        next_line = now + 1.0
                if deadline is not None and now >= deadline:
                    self.stop("duration")
                if self._quit.is_set():
                    self.stop("quit")
        except (Interrupted, KeyboardInterrupt) as exc:
            self.interrupted = exc
            self.stop("interrupted")
        self._join(done)
        if "error" in box and not self.interrupted:
            self.error = box["error"]
            self.ended = self.ended or "error"
        if not self.ended:
            self.ended = f"end of source ({self.source.ended})" if getattr(self.source, "ended", None) else "end of source"
        if self.error is not None:
            raise self.error
        return self.result()

    def _join(self, done: threading.Event) -> None:
        deadline = time.perf_counter() + (JOIN_AFTER_STOP_S if self.ended else 30.0)
        while not done.is_set() and time.perf_counter() < deadline:
            try:
                done.wait(0.05)
            except (Interrupted, KeyboardInterrupt) as exc:      # a second Ctrl-C: leave now
                self.interrupted = self.interrupted or exc
                self.stop("interrupted")
                deadline = min(deadline, time.perf_counter() + 0.3)
        if not done.is_set():                                   # a thread stuck in native code: release the sinks anyway
            self.sink.abort()
        if not self.stats.finished:
            self.stats.finished = time.perf_counter()

    def _line(self, now: float) -> None:
        t0, fin, fout, drop = self._last_line
        dt = max(now - t0, 1e-6)
        recent, self._recent = self._recent, []
        s = self.stats
        lat = percentiles(recent)
        self._shown_fps = (s.frames_out - fout) / dt
        self._shown_p50 = lat["p50"]
        self._last_line = (now, s.frames_in, s.frames_out, s.dropped)
        if self.stats_line is not None:
            self.stats_line(f"in {(s.frames_in - fin) / dt:5.1f} fps  out {self._shown_fps:5.1f} fps  "
                            f"dropped {s.dropped - drop:3d} ({s.dropped} total)  latency p50 {lat['p50']:5.0f} ms "
                            f"p95 {lat['p95']:5.0f} ms  style {self.bank.name} x{self.bank.strength:.1f}  "
                            f"smooth {self.smoother.label}")

    def result(self) -> LiveResult:
        s, src, info = self.stats, self.source, self._engine.info
        secs = s.seconds
        stage_ms = {k: round(1000 * v / max(s.calls.get(k, 1), 1), 2) for k, v in s.busy.items()}
        return LiveResult(source=self.options.source, sinks=list(self.options.sinks), width=src.width,
                          height=src.height, source_fps=round(src.fps, 3), processing=list(self.size),
                          backend=info.backend, model=info.model, style=self.bank.name, strength=self.bank.strength,
                          smooth=self.smoother.label, seconds=round(secs, 3),
                          input_fps=round(s.frames_in / secs, 2) if secs else 0.0,
                          output_fps=round(s.frames_out / secs, 2) if secs else 0.0,
                          frames_in=s.frames_in, frames_out=s.frames_out, dropped=s.dropped,
                          skipped=getattr(src, "skipped", 0), reconnects=getattr(src, "reconnects", 0),
                          latency_ms=percentiles(self._latencies), stage_ms=stage_ms, ended=self.ended)

    def close(self) -> None:
        if self.sink is not None:
            for w in self.sink.windows():
                w.close()
        if self.bank is not None:
            self.bank.close()
        if self.source is not None:
            self.source.halt()
            if self.runner is None or not self.stats.started:
                self.source.close()
        if self._engine is not None and self._own_engine:
            try:
                self._engine.close()
            except Exception:   # noqa: BLE001
                pass


# --- command line ---------------------------------------------------------------------------------
def register(sub) -> None:
    from streamer.processing import DEFAULT_MAX_SIZE
    from streamer.temporal import DEFAULT_SMOOTH, SMOOTH_MODES

    p = sub.add_parser(
        "live", help="stylize a camera, stream or file live into a window, virtual camera, UDP stream or file",
        description="Stylize a live source. SRC: a camera index or /dev/videoN, a URL (rtsp://, http://, udp://, ...), "
                    "or a video file played at its own frame rate. SINK (repeatable): window, virtualcam[:/dev/videoN], "
                    "udp://HOST:PORT or srt://... (H.264 in MPEG-TS), null, or a video file to record. "
                    "Window hotkeys: n/p style, +/- strength, s smoothing, q or Esc quit.")
    p.add_argument("--source", "-i", default="0", metavar="SRC", help="camera index, /dev/videoN, URL or file (default 0)")
    p.add_argument("--sink", "-o", action="append", default=None, metavar="SINK",
                   help="window (default), virtualcam, udp://HOST:PORT, srt://..., null, or FILE; repeat for several")
    p.add_argument("--style", "-s", default="starry_night", help="image path or bundled style name (default starry_night)")
    p.add_argument("--styles", default="", help="comma-separated styles to cycle with n/p (the --style comes first)")
    p.add_argument("--width", type=int, default=None, help="requested camera width")
    p.add_argument("--height", type=int, default=None, help="requested camera height")
    p.add_argument("--fps", type=float, default=None, help="requested camera frame rate")
    p.add_argument("--loop", action="store_true", help="a file source starts over at its end")
    p.add_argument("--reconnect", action="store_true", help="wait for an unplugged camera or ended stream to come back")
    p.add_argument("--max-size", type=int, default=None,
                   help=f"longer side of the processing resolution (default {DEFAULT_MAX_SIZE}, capped by the model)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    p.add_argument("--model", default=None, help="student | teacher | identity | PATH (default: student if bundled)")
    p.add_argument("--smooth", default=None, choices=SMOOTH_MODES,
                   help=f"temporal smoothing (default {DEFAULT_SMOOTH}; toggle with s)")
    p.add_argument("--strength", type=float, default=1.0, help="0..1 (default 1; +/- in the window)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--stream-preset", default="ultrafast", help="x264 preset for udp/srt sinks (ultrafast, veryfast, ...)")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace a recording FILE that exists")
    p.add_argument("--json", action="store_true", help="print one JSON object with the run's stats at exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no stats line each second")
    p.add_argument("--debug", action="store_true", help="show tracebacks and FFmpeg's log")
    p.set_defaults(func=cmd_live)


def options_from_args(args) -> LiveOptions:
    styles = [s.strip() for s in (args.styles or "").split(",") if s.strip()]
    return LiveOptions(source=args.source, sinks=args.sink or ["window"], style=args.style, styles=styles,
                       width=args.width, height=args.height, fps=args.fps, loop=args.loop, reconnect=args.reconnect,
                       max_size=args.max_size, backend=args.backend, model=args.model, smooth=args.smooth,
                       strength=args.strength, threads=args.threads, overwrite=args.overwrite,
                       duration=args.duration, stream_preset=args.stream_preset)


def cmd_live(args) -> int:
    opts = options_from_args(args)
    line = None if args.quiet else (lambda text: print(f"streamer live: {text}", file=sys.stderr, flush=True))
    session = LiveSession(opts, stats_line=line)
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


__all__ = ["LiveOptions", "LiveResult", "LiveSession", "StyleBank", "LiveSmoother", "register", "cmd_live"]
