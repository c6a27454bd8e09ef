"""A camera, stream or file stylized live into a window, a virtual camera, a UDP stream or a file.

    session = LiveSession(LiveOptions(source="0", sinks=["window", "virtualcam"], styles=["kandinsky"]))
    result = session.run()          # until the source ends, q, `duration`, stop() or a signal
    session.close()

The run comes from the one assembly (:func:`streamer.assembly.assemble`) with policy ``drop_oldest``:

    live source ──► preprocess ──► infer ──► postprocess ──► smooth ──► MultiSink(window, virtualcam, udp, file)
    (never waits)    queues of one frame that drop their oldest frame when full (counted in ``dropped``)

* The style source is a :class:`~streamer.style_sources.StyleBank`: the infer stage reads the current
  vector with one attribute read; switching with n/p never restarts the engine nor stalls a frame.
* The main thread pumps preview windows (HighGUI wants one thread), prints the stats line each second
  and takes the signals: Ctrl-C/SIGTERM halt the source, stop the runner, and every sink releases its
  device (a recording is finalized) within a second.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engines.base import Engine
from streamer.adaptive import AdaptiveSize
from streamer.assembly import RunOptions, assemble, open_engine
from streamer.codecs import check_encoder_options
from streamer.errors import InputError, Interrupted
from streamer.live_sinks import MultiSink, open_live_sink
from streamer.live_sources import open_live_source
from streamer.live_stats import LiveResult, LiveStats
from streamer.media_files import same_file
from streamer.pipeline import Runner
from streamer.style_sources import StyleBank
from streamer.styles import StyleEncoder
from streamer.temporal import SwitchableSmoother

STRENGTH_STEP = 0.1
JOIN_AFTER_STOP_S = 0.9            # how long the front end waits for the runner after a stop


def _say(message: str) -> None:
    print(f"streamer: {message}", file=sys.stderr, flush=True)


@dataclass
class LiveOptions(RunOptions):
    purpose: str = "live"
    source: str = "0"
    sinks: list[str] = field(default_factory=lambda: ["window"])
    styles: list[str] = field(default_factory=list)      # hotkey cycle (n/p); --style is added first if missing
    width: int | None = None                              # requested camera size and rate
    height: int | None = None
    fps: float | None = None
    loop: bool = False
    reconnect: bool = False
    queue_size: int = 1
    overwrite: bool = False
    duration: float | None = None                         # stop after this many seconds
    stream_preset: str = "ultrafast"
    adaptive: bool = True                                 # with max_size None: the size follows the machine's speed

    def fixed_style(self) -> str | None:
        """None with a style cycle: n/p would hand a tuned model styles it was not tuned for. (The +/- keys still
        mix the style with the camera's own look in a tuned model, as in the arbitrary one.)"""
        return super().fixed_style() if set(self.styles) <= {self.style} else None

    def validate(self) -> None:
        super().validate()
        if self.duration is not None and self.duration <= 0:
            raise InputError(f"--duration {self.duration}: must be positive")
        check_encoder_options("libx264", self.stream_preset, None, preset_flag="--stream-preset")
        for sink in self.sinks:   # a recording of a file source over that very file would destroy the source
            if "://" not in sink and Path(sink).suffix and same_file(sink, self.source):
                raise InputError(f"{sink}: is the source; refusing to record over it")
        for name, v in (("--width", self.width), ("--height", self.height), ("--fps", self.fps)):
            if v is not None and v <= 0:
                raise InputError(f"{name} {v}: must be positive")


class LiveSession:
    """Opens source, engine, styles and sinks (bad input fails here, exit 2), then runs until the
    source ends, a quit key, ``duration``, :meth:`stop` or a signal."""

    def __init__(self, options: LiveOptions, *, engine: Engine | None = None, encoder: StyleEncoder | None = None,
                 say: Callable[[str], None] = _say, stats_line: Callable[[str], None] | None = None) -> None:
        options.validate()
        self.options, self.say, self.stats_line = options, say, stats_line
        self.interrupted: BaseException | None = None
        self.error: BaseException | None = None
        self.ended = ""
        self.engine = engine
        self._own_engine = engine is None
        self._quit = threading.Event()
        self.stats = LiveStats()
        self.source = self.bank = self.smoother = self.sink = self.runner = None
        try:
            self._open(encoder or StyleEncoder(threads=1))
        except BaseException:
            self.close()
            raise

    def _open(self, encoder: StyleEncoder) -> None:
        o = self.options
        self.bank = StyleBank(encoder, [o.style] + [s for s in o.styles if s != o.style], o.strength, say=self.say)
        self.source = src = open_live_source(o.source, width=o.width, height=o.height, fps=o.fps, loop=o.loop,
                                             reconnect=o.reconnect, say=self.say)
        if self.engine is None:
            self.engine = open_engine(o)
        # smoothing "off" still builds a (disabled) smoother, so the s hotkey can turn it on
        self.smoother = SwitchableSmoother(o.smooth, self.bank)
        run = assemble(self.engine, self.bank, src.width, src.height, o, name=src.label, smoother=self.smoother)
        self.adaptive = None
        if o.adaptive and o.max_size is None:
            self.adaptive = AdaptiveSize(src.width, src.height, src.fps or 30, start_long_side=max(run.size),
                                         smooth=o.smooth if o.smooth != "off" else "flow",
                                         min_side=self.engine.info.min_side, control=run.size_control)
        self.size_control = run.size_control
        sinks = []
        try:
            for spec in o.sinks or ["window"]:
                sinks.append(open_live_sink(spec, width=src.width, height=src.height, fps=src.fps or 30,
                                            overwrite=o.overwrite, on_key=self.key, overlay=self.overlay,
                                            stream_preset=o.stream_preset))
        except BaseException:
            MultiSink(sinks).abort() if sinks else None
            raise
        self.sink = MultiSink(sinks, say=self.say)
        self.engine.warmup(self.size[1], self.size[0], 1)
        self.runner = Runner(self.source, run.stages, self.sink, policy="drop_oldest", queue_size=o.queue_size,
                             stats=self.stats.runner, label=src.label, on_frame=self.stats.on_frame)

    # --- hotkeys and the overlay (window thread) --------------------------------------------------
    def key(self, action: str) -> None:
        """A hotkey's action: next, prev, stronger, weaker, smooth, quit."""
        if action in ("next", "prev"):
            self.bank.step(+1 if action == "next" else -1)
        elif action in ("stronger", "weaker"):
            self.bank.change_strength(STRENGTH_STEP if action == "stronger" else -STRENGTH_STEP)
        elif action == "smooth":
            self.smoother.toggle()
        elif action == "quit":
            self._quit.set()

    @property
    def size(self) -> tuple[int, int]:
        """The processing size now (live adapts it to the machine unless --max-size fixes it)."""
        return self.size_control.value

    def overlay(self) -> str:
        w, h = self.size
        return (f"{self.stats.shown_fps:4.1f} fps  {self.stats.shown_p50:3.0f} ms  {w}x{h}  {self.bank.name} "
                f"x{self.bank.strength:.1f}  smooth {self.smoother.label}\nn/p style  +/- strength  s smooth  q quit")

    def _adapt(self, now: float) -> None:
        """Once a second: what the size-dependent stages cost per frame, and the drops, go to the controller."""
        work, drops = self.stats.window_cost(("infer", "smooth"))
        change = self.adaptive.update(work, drops, now)
        if change is not None:
            if change.smooth != self.smoother.mode:
                self.smoother.set_mode(change.smooth)
            self.say(f"live: processing {change.size[0]}x{change.size[1]}, smooth {change.smooth} ({change.reason})")

    # --- running ------------------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        if not self.ended:
            self.ended = reason
        if self.source is not None:
            self.source.halt()
        if self.runner is not None:
            self.runner.stop()

    def run(self) -> LiveResult:
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

        self.stats.start()
        threading.Thread(target=target, name="streamer-live-runner", daemon=True).start()
        try:
            self._supervise(done)
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

    def _supervise(self, done: threading.Event) -> None:
        """The main thread's loop: windows, the stats line each second, the duration and the quit key."""
        windows = self.sink.windows()
        start = time.perf_counter()
        next_line = start + 1.0
        deadline = start + self.options.duration if self.options.duration else None
        while not done.is_set():
            if windows:
                for w in windows:
                    w.pump(5)
            else:
                done.wait(0.05)
            now = time.perf_counter()
            if now >= next_line:
                if self.adaptive is not None:
                    self._adapt(now)
                text = self.stats.line(now, self.bank.name, self.bank.strength, self.smoother.label, self.size)
                if self.stats_line is not None:
                    self.stats_line(text)
                next_line += 1.0
                if next_line < now:        # the loop fell behind (a slow window): no burst of lines
                    next_line = now + 1.0
            if deadline is not None and now >= deadline:
                self.stop("duration")
            if self._quit.is_set():
                self.stop("quit")

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
        if not self.stats.runner.finished:
            self.stats.runner.finished = time.perf_counter()

    def result(self) -> LiveResult:
        s, src, info = self.stats.runner, self.source, self.engine.info
        secs = s.seconds
        return LiveResult(source=self.options.source, sinks=list(self.options.sinks), width=src.width,
                          height=src.height, source_fps=round(src.fps, 3), processing=list(self.size),
                          backend=info.backend, model=info.model, style=self.bank.name, strength=self.bank.strength,
                          smooth=self.smoother.label, seconds=round(secs, 3),
                          input_fps=round(s.frames_in / secs, 2) if secs else 0.0,
                          output_fps=round(s.frames_out / secs, 2) if secs else 0.0,
                          frames_in=s.frames_in, frames_out=s.frames_out, dropped=s.dropped,
                          skipped=getattr(src, "skipped", 0), reconnects=getattr(src, "reconnects", 0),
                          latency_ms=self.stats.latency_ms(), stage_ms_per_frame=s.ms_per_frame(), ended=self.ended,
                          adaptive=[c.as_dict() for c in self.adaptive.changes] if self.adaptive else [],
                          failed_sinks=list(self.sink.failed))

    def close(self) -> None:
        if self.sink is not None:
            for w in self.sink.windows():
                w.close()
        if self.bank is not None:
            self.bank.close()
        if self.source is not None:
            self.source.halt()
            if self.runner is None or not self.stats.runner.started:
                self.source.close()
        if self.engine is not None and self._own_engine:
            try:
                self.engine.close()
            except Exception:   # noqa: BLE001
                pass
