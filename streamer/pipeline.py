"""The one runner: a source, a chain of stages and a sink, each in its own thread, joined by bounded queues.

    source ──q──► stage ──q──► stage ──q──► ... ──q──► sink

* A :class:`Frame` travels through: sequence number, pts + time base, capture time, the decoded
  pixels, and one typed field per thing a stage hands to the next (network input and output, the
  stylized picture).
* Queue policy ``"block"`` (files): a full queue blocks its producer, nothing is ever dropped.
  Policy ``"drop_oldest"`` (live): the producer never blocks; a full queue drops its oldest frame
  and counts it in :attr:`Stats.dropped`.
* A stage maps a *list* of frames to a list of frames.  ``batch=N`` lets it collect up to N frames
  per call (the infer stage); it may also return fewer frames than it got and hand the rest back
  later from ``flush()`` (several batches in flight on CUDA streams).  Each stage is one thread,
  so frames stay in sequence order end to end; the sink checks it.
* Errors: the first exception in any thread sets one stop event; every thread polls it at least
  every :data:`POLL_S` seconds while waiting, so all exit within a second; :meth:`Runner.run`
  joins them all and re-raises that one error (a :class:`~streamer.errors.StreamerError` naming
  the stage).  KeyboardInterrupt and :class:`~streamer.errors.Interrupted` in the caller's thread
  stop the threads the same way before they propagate.
* :class:`Stats` keeps the seconds each stage spent busy (not waiting), for the benchmarks.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from streamer.errors import InputError, PipelineError, StreamerError, one_line

POLL_S = 0.05            # how often a waiting thread looks at the stop event
JOIN_TIMEOUT_S = 5.0     # after a stop, a thread that has not exited by then is reported
POLICIES = ("block", "drop_oldest")


@dataclass
class Frame:
    seq: int                              # 0, 1, 2, ... in source order (gaps only where a live queue dropped)
    pts: int | None                       # source timestamp in time_base units (None: unknown)
    time_base: Fraction | None
    capture_time: float                   # time.perf_counter() when the source produced it (latency)
    pixels: np.ndarray                    # HxWx3 uint8 RGB as decoded
    rotation: int = 0                     # display rotation in degrees (the source's display matrix)
    small: np.ndarray | None = None       # HxWx3 uint8 at the processing size (for the smoother)
    network_in: np.ndarray | None = None  # [3,h,w] float32 0..1, the network's input
    network_out: np.ndarray | None = None # [3,h,w] float32 0..1, the network's output
    stylized: np.ndarray | None = None    # HxWx3 uint8 RGB, what the sinks show and encode

    @property
    def seconds(self) -> float | None:
        return None if self.pts is None or self.time_base is None else float(self.pts * self.time_base)

    @property
    def output(self) -> np.ndarray:
        """The picture a sink writes: the stylized frame, or the decoded one when no stage made one."""
        return self.pixels if self.stylized is None else self.stylized


class Stats:
    """Counters shared by the threads of one run (each thread writes only its own keys)."""

    def __init__(self) -> None:
        self.busy: dict[str, float] = {}      # stage name -> seconds spent working
        self.frames: dict[str, int] = {}      # stage name -> frames it handled
        self.frames_in = 0                    # frames produced by the source
        self.frames_out = 0                   # frames consumed by the sink
        self.dropped = 0                      # frames dropped by drop_oldest queues
        self.started = 0.0
        self.finished = 0.0
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        with self._lock:
            self.busy[stage] = self.busy.get(stage, 0.0) + seconds
            self.frames[stage] = self.frames.get(stage, 0) + frames

    def ms_per_frame(self) -> dict[str, float]:
        """Busy milliseconds per frame handled, per stage: the one unit every report uses (stages run in
        parallel threads, so the largest of these bounds the frame rate)."""
        return {k: round(1000.0 * v / max(self.frames.get(k, 0), 1), 3) for k, v in self.busy.items()}

    def count_drop(self) -> None:
        with self._lock:
            self.dropped += 1

    @property
    def seconds(self) -> float:
        end = self.finished or time.perf_counter()
        return max(end - self.started, 0.0) if self.started else 0.0

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
                "seconds": round(self.seconds, 4), "fps": round(self.fps, 3),
                "stage_ms_per_frame": self.ms_per_frame()}


class _End:
    """Sentinel that follows the last frame through every queue."""


END = _End()


class Stopped(Exception):
    """Raised inside a thread when the stop event is set while it waits; not an error."""


class FrameQueue:
    """A bounded queue with a put policy and stop-aware waits."""

    def __init__(self, maxsize: int, policy: str, stop: threading.Event, stats: Stats) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown queue policy {policy!r}; use one of {', '.join(POLICIES)}")
        self._items: collections.deque = collections.deque()
        self._maxsize = max(1, maxsize)
        self._policy = policy
        self._stop = stop
        self._stats = stats
        self._cond = threading.Condition()

    def put(self, item) -> None:
        with self._cond:
            if item is not END and len(self._items) >= self._maxsize:
                if self._policy == "drop_oldest":
                    for i, old in enumerate(self._items):        # never drop the END marker
                        if old is not END:
                            del self._items[i]
                            self._stats.count_drop()
                            break
                else:
                    while len(self._items) >= self._maxsize:
                        if self._stop.is_set():
                            raise Stopped
                        self._cond.wait(POLL_S)
            self._items.append(item)
            self._cond.notify_all()

    def get(self, wait: bool = True):
        """The next item; with wait=False None when empty."""
        with self._cond:
            while not self._items:
                if self._stop.is_set():
                    raise Stopped
                if not wait:
                    return None
                self._cond.wait(POLL_S)
            item = self._items.popleft()
            self._cond.notify_all()
            return item


class Source(Protocol):
    """Produces frames; ``frames()`` is iterated in the source thread, ``close()`` is always called."""

    name: str

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Consumes frames in order. ``finish()`` after the last frame on success, ``abort()`` on any failure."""

    name: str

    def write(self, frame: Frame) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


@dataclass
class Stage:
    """A named step: ``fn(list[Frame]) -> list[Frame]`` on up to ``batch`` frames at a time.

    ``flush()`` (optional) returns frames the stage still holds after the last input
    (a stage that keeps batches in flight).  Use :meth:`map` for per-frame functions.
    """

    name: str
    fn: Callable[[list[Frame]], list[Frame]]
    batch: int = 1
    flush: Callable[[], list[Frame]] | None = None

    @classmethod
    def map(cls, name: str, fn: Callable[[Frame], Frame]) -> "Stage":
        return cls(name, lambda frames: [fn(f) for f in frames])


class Runner:
    """Runs source -> stages -> sink to the end, or to the first error, and leaves no thread behind."""

    def __init__(self, source: Source, stages: Iterable[Stage], sink: Sink, *, policy: str = "block",
                 queue_size: int = 8, stats: Stats | None = None, label: str = "",
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        self.source, self.stages, self.sink = source, list(stages), sink
        self.policy, self.label = policy, label
        self.stats = stats or Stats()
        self.on_frame = on_frame
        self._stop = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        n = len(self.stages) + 1
        # a batching stage needs room for one whole batch; no more, so a live run (queue_size 1) adds no latency
        self._queues = [FrameQueue(max(queue_size, s.batch), policy, self._stop, self.stats)
                        for s in self.stages] + [FrameQueue(queue_size, policy, self._stop, self.stats)]
        assert len(self._queues) == n
        self._threads: list[threading.Thread] = []

    # --- public -------------------------------------------------------------------------
    def run(self) -> Stats:
        self.stats.started = time.perf_counter()
        specs = [("source:" + self.source.name, self._run_source, ())]
        specs += [(s.name, self._run_stage, (s, self._queues[i], self._queues[i + 1])) for i, s in enumerate(self.stages)]
        specs += [("sink:" + self.sink.name, self._run_sink, ())]
        try:
            for name, target, args in specs:
                t = threading.Thread(target=self._guard, args=(name, target, args), name=f"streamer-{name}", daemon=True)
                self._threads.append(t)
                t.start()
            while any(t.is_alive() for t in self._threads):
                for t in self._threads:
                    t.join(POLL_S)
        except BaseException:                # KeyboardInterrupt / Interrupted in the caller's thread
            self.stop()
            self._join_all()
            self._abort_sink()
            raise
        self._join_all()
        self.stats.finished = time.perf_counter()
        if self._error is not None:
            self._abort_sink()
            self._raise()
        if self._stop.is_set():              # stop() from outside (live quit): the sink never saw END
            self._abort_sink()
        return self.stats

    def stop(self) -> None:
        """Ask every thread to exit (safe from any thread; used by live front-ends on quit)."""
        self._stop.set()

    # --- threads ------------------------------------------------------------------------
    def _guard(self, name: str, target, args) -> None:
        try:
            target(*args)
        except Stopped:
            pass
        except BaseException as exc:         # noqa: BLE001 - any failure stops the run and is re-raised
            with self._error_lock:
                if self._error is None:
                    self._error = (name, exc)
            self._stop.set()

    def _run_source(self) -> None:
        out = self._queues[0]
        try:
            it = iter(self.source.frames())
            name = self.source.name
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                self.stats.add(name, time.perf_counter() - t0)
                self.stats.frames_in += 1
                out.put(frame)
            else:
                raise Stopped
            out.put(END)
        finally:
            self.source.close()

    def _run_stage(self, stage: Stage, inq: FrameQueue, outq: FrameQueue) -> None:
        done = False
        while not done:
            batch = []
            item = inq.get()
            while True:
                if item is END:
                    done = True
                    break
                batch.append(item)
                if len(batch) >= stage.batch:
                    break
                # files: wait for a full batch; live: take only what is already there
                item = inq.get(wait=self.policy == "block")
                if item is None:
                    break
            if batch:
                self._call(stage.name, stage.fn, batch, outq)
        if stage.flush is not None:
            self._call(stage.name, lambda _: stage.flush(), [], outq)
        outq.put(END)

    def _call(self, name: str, fn, batch: list[Frame], outq: FrameQueue) -> None:
        if self._stop.is_set():
            raise Stopped
        t0 = time.perf_counter()
        result = fn(batch)
        self.stats.add(name, time.perf_counter() - t0, len(batch))
        for frame in result:
            outq.put(frame)

    def _run_sink(self) -> None:
        inq = self._queues[-1]
        name = self.sink.name
        last_seq = -1
        while True:
            item = inq.get()
            if item is END:
                break
            if item.seq <= last_seq:
                raise PipelineError(f"frames out of order: {item.seq} after {last_seq}", stage=name)
            last_seq = item.seq
            t0 = time.perf_counter()
            self.sink.write(item)
            self.stats.add(name, time.perf_counter() - t0)
            self.stats.frames_out += 1
            if self.on_frame is not None:
                self.on_frame(item)
        t0 = time.perf_counter()
        self.sink.finish()
        self.stats.add(name, time.perf_counter() - t0)

    # --- shutdown -----------------------------------------------------------------------
    def _join_all(self) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive and self._error is None:
            self._error = ("runner", PipelineError(f"threads did not stop: {', '.join(alive)}"))

    def _abort_sink(self) -> None:
        try:
            self.sink.abort()
        except Exception:                    # noqa: BLE001 - already failing; the first error wins
            pass

    def _raise(self) -> None:
        stage, exc = self._error
        stage = stage.split(":", 1)[-1]
        where = f"{self.label}: " if self.label else ""
        if isinstance(exc, StreamerError):
            if exc.stage is None:
                exc.stage = stage
            raise exc
        if isinstance(exc, (MemoryError, KeyboardInterrupt, SystemExit)):
            raise exc
        err = PipelineError(f"{where}{stage} stage failed: {type(exc).__name__}: {one_line(exc)}", stage=stage)
        raise err from exc


__all__ = ["Frame", "Stats", "Stage", "Runner", "FrameQueue", "Source", "Sink", "END", "Stopped", "InputError"]
