"""The GPU path's wiring, run on the CPU: ``streamer.inflight_stage`` driving ``engines.reference`` (the GPU engines'
uint8 in-flight contract with the CUDA kernels' NumPy twins around ONNX Runtime), through the real Runner,
Converter and LiveSession on real generated clips, against the CPU float path on the same clips.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import leftovers, make_clip, probe

from engines.base import EngineError, IdentityEngine
from engines.onnxruntime import OnnxRuntimeEngine
from engines.reference import ReferenceEngine
from engines.select import create_engine
from streamer.adaptive import ProcessingSize
from streamer.assembly import RunOptions, assemble
from streamer.convert import ConvertOptions, Converter
from streamer.errors import StreamerError
from streamer.inflight_stage import InFlightStage, runs_in_flight
from streamer.live import LiveOptions, LiveSession
from streamer.model_registry import resolve_model
from streamer.pipeline import Frame, Runner
from streamer.processing import stylize_stages
from streamer.sources import VideoFileSource
from streamer.style_sources import FixedStyle
from streamer.temporal import FlowSmoothing, SwitchableSmoother

FRAMES = 20
# The float path's flow smoothing uses cv2.remap: OpenCV 5 samples at the exact position, as the device blend does;
# OpenCV 4 rounds the position to 1/32 pixel first, a few gray levels at sharp edges.
FLOW_TOL = 1 if int(cv2.__version__.split(".")[0]) >= 5 else 3


@pytest.fixture(scope="module")
def student_onnx() -> Path:
    return resolve_model("student").onnx


@pytest.fixture(scope="module")
def clip96(tmp_path_factory) -> Path:
    """96x64, 20 frames of a slow pan (flow smoothing blends every frame after the first: no scene cut), with audio."""
    return make_clip(tmp_path_factory.mktemp("inflight") / "pan96.mp4", width=96, height=64, frames=FRAMES)


def student(onnx: Path) -> OnnxRuntimeEngine:
    # one session throughout: these tests compare two paths through the network to a grey level, and a style-baked
    # session sums in another order (its own test: test_style_baking.py), so where each path switched would show
    return OnnxRuntimeEngine(onnx, threads=1, bake_style=False)


class Spy(ReferenceEngine):
    """The reference engine, counting what the stage keeps in flight; optionally failing one batch."""

    def __init__(self, inner, *, fail_at: int | None = None, **kw) -> None:
        super().__init__(inner, **kw)
        self.outstanding, self.most, self.submits, self.fail_at = 0, 0, 0, fail_at
        self._count = threading.Lock()

    def submit_uint8(self, frames, style, **kw):
        ticket = super().submit_uint8(frames, style, **kw)
        with self._count:
            self.submits += 1
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)
        return ticket

    def collect(self, ticket):
        try:
            return super().collect(ticket)
        finally:
            with self._count:
                self.outstanding -= 1

    def _run(self, frames, *args):
        out = super()._run(frames, *args)
        self.fail_at = None if self.fail_at is None else self.fail_at - 1
        if self.fail_at == 0:
            raise RuntimeError("device fell over")
        return out


class ListSink:
    name = "list"

    def __init__(self, on_write=None) -> None:
        self.frames: list[Frame] = []
        self.finished = self.aborted = False
        self.on_write = on_write

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)
        if self.on_write is not None:
            self.on_write(len(self.frames))

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted = True


def our_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("streamer-")}


def convert_frames(engine, clip: Path, out: Path, encoder, **options) -> tuple[list[Frame], object]:
    got: list[Frame] = []
    options.setdefault("preset", "ultrafast")
    conv = Converter(ConvertOptions(overwrite=True, **options), engine=engine, encoder=encoder)
    result = conv.convert(clip, out, on_frame=got.append)
    return got, result


# ---------------------------------------------------------------- the assembly picks the path

def test_assemble_builds_one_inflight_stage_for_a_uint8_engine_and_the_float_path_otherwise(student_onnx, encoder):
    style = FixedStyle(encoder.encode("starry_night"))
    ref = ReferenceEngine(student(student_onnx))
    try:
        assert runs_in_flight(ref) and not runs_in_flight(IdentityEngine())
        run = assemble(ref, style, 96, 64, RunOptions(smooth="flow", batch=4))
        assert [s.name for s in run.stages] == ["infer"]
        assert run.stages[0].batch == 4 and run.stages[0].flush is not None
        float_run = assemble(student(student_onnx), style, 96, 64, RunOptions(smooth="flow", batch=4))
        assert [s.name for s in float_run.stages] == ["preprocess", "infer", "postprocess", "smooth"]
    finally:
        ref.close()
    spec = resolve_model("student")
    made = create_engine("reference", spec, threads=1)          # selectable by name, never by auto
    try:
        assert isinstance(made, ReferenceEngine) and made.info.uint8_io and made.info.backend == "reference"
    finally:
        made.close()


# ---------------------------------------------------------------- the wiring through the real Runner

def test_runner_gets_every_frame_in_order_with_pts_batches_in_flight_and_flush_at_the_end(clip96, student_onnx,
                                                                                           encoder):
    engine = Spy(student(student_onnx))
    style = FixedStyle(encoder.encode("starry_night"))
    stage = InFlightStage(engine, style, (96, 64), batch=2, smoother=SwitchableSmoother("ema", style), in_flight=2)
    flushed: list[int] = []

    def flush():
        frames = stage.flush()
        flushed.extend(f.seq for f in frames)
        return frames

    s = stage.stage()
    s.flush = flush
    sink = ListSink()
    try:
        Runner(VideoFileSource(clip96), [s], sink, policy="block").run()
    finally:
        engine.close()
    want_pts = probe(clip96)["pts"]
    assert sink.finished and not sink.aborted
    assert [f.seq for f in sink.frames] == list(range(FRAMES))
    assert [f.pts for f in sink.frames] == want_pts
    assert all(f.stylized.shape == (64, 96, 3) and f.stylized.dtype == np.uint8 for f in sink.frames)
    assert all(f.small is None and f.network_in is None for f in sink.frames)
    assert engine.submits == FRAMES // 2 and engine.most == 3          # 2 kept + 1 being submitted
    assert flushed == list(range(FRAMES - 4, FRAMES))                  # the last 2 batches of 2 came from flush()
    assert stage.held == 0 and engine.outstanding == 0


@pytest.mark.parametrize("smooth", ["off", "ema", "flow"])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_equals_the_float_path_within_one_gray_level(clip96, student_onnx, encoder, tmp_path, smooth, batch):
    want, float_result = convert_frames(student(student_onnx), clip96, tmp_path / "float.mp4", encoder,
                                        smooth=smooth, batch=batch)
    engine = Spy(student(student_onnx))
    try:
        got, result = convert_frames(engine, clip96, tmp_path / "inflight.mp4", encoder, smooth=smooth, batch=batch)
    finally:
        engine.close()
    assert list(result.stage_ms_per_frame) == ["decode", "infer", "encode"]      # one stage between the two
    assert float_result.frames == result.frames == FRAMES
    assert [f.seq for f in got] == list(range(FRAMES)) and [f.pts for f in got] == [f.pts for f in want]
    assert engine.most > 1                                                # batches were in flight
    diffs = [np.abs(a.stylized.astype(int) - b.stylized) for a, b in zip(want, got)]
    assert max(d.max() for d in diffs) <= (FLOW_TOL if smooth == "flow" else 1)
    assert np.mean([(d == 0).mean() for d in diffs]) > 0.99
    assert probe(tmp_path / "inflight.mp4")["pts"] == probe(clip96)["pts"]


@pytest.mark.parametrize("smooth", ["off", "ema", "flow"])
def test_processed_smaller_and_enlarged_back_like_the_float_path(clip96, student_onnx, encoder, tmp_path, smooth):
    want, float_result = convert_frames(student(student_onnx), clip96, tmp_path / "float.mp4", encoder,
                                        smooth=smooth, batch=2, max_size=64)
    engine = ReferenceEngine(student(student_onnx))
    try:
        got, result = convert_frames(engine, clip96, tmp_path / "inflight.mp4", encoder, smooth=smooth, batch=2,
                                     max_size=64)
    finally:
        engine.close()
    assert result.processing == float_result.processing == [64, 43]
    assert all(f.stylized.shape == (64, 96, 3) for f in got)
    tol = FLOW_TOL if smooth == "flow" else 1
    assert max(np.abs(a.stylized.astype(int) - b.stylized).max() for a, b in zip(want, got)) <= tol


class EmaOnly(ReferenceEngine):
    """Blends the EMA on the "device" but not flow, as the TensorRT engine does for now."""

    device_smoothing = ("ema",)


def test_flow_falls_back_to_the_cpu_when_the_engine_cannot_blend_it(clip96, student_onnx, encoder, tmp_path):
    want, _ = convert_frames(student(student_onnx), clip96, tmp_path / "float.mp4", encoder, smooth="flow", batch=2)
    engine = EmaOnly(student(student_onnx))
    try:
        got, _ = convert_frames(engine, clip96, tmp_path / "inflight.mp4", encoder, smooth="flow", batch=2)
    finally:
        engine.close()
    assert max(np.abs(a.stylized.astype(int) - b.stylized).max() for a, b in zip(want, got)) <= 1   # the same cv2


class Switching:
    """A style source whose ``generation`` the test bumps (a live style switch)."""

    def __init__(self, vec: np.ndarray) -> None:
        self.vec, self.generation = vec, 0

    def for_frame(self, rgb):
        return self.vec


def drive(stages, frames, before_frame) -> list[np.ndarray]:
    """Each frame through every stage before the next frame comes (``before_frame(i)`` first), then whatever is
    still in flight; so a change made before frame i reaches both paths at frame i."""
    out = []
    for i, px in enumerate(frames):
        before_frame(i)
        batch = [Frame(i, i, None, 0.0, px)]
        for s in stages:
            batch = s.fn(batch)
        out += batch
    for k, s in enumerate(stages):
        rest = s.flush() if s.flush else []
        for later in stages[k + 1:]:
            rest = later.fn(rest) if rest else rest
        out += rest
    assert [f.seq for f in out] == list(range(len(frames)))
    return [f.stylized for f in out]


def test_toggles_and_style_switches_restart_the_device_blend_like_the_float_path(clip96, student_onnx, encoder):
    """The live hotkeys: smoothing off and on again, a mode switch, and a style switch, at the same frames."""
    frames = [f.pixels for f in VideoFileSource(clip96).frames()]
    est = FlowSmoothing()
    assert all(step is not None for step in [est.estimate(px) for px in frames][1:])   # no cut hides a restart

    def hotkeys(smoother, style):
        def before(i):
            if i in (4, 7):
                smoother.toggle()               # off, then on again: starts afresh
            elif i == 10:
                smoother.set_mode("flow")
            elif i == 15:
                style.generation += 1           # a style switch: starts afresh
        return before

    vec = encoder.encode("starry_night")
    style_a, style_b = Switching(vec), Switching(vec)
    smooth_a, smooth_b = SwitchableSmoother("ema", style_a), SwitchableSmoother("ema", style_b)
    want = drive(stylize_stages(student(student_onnx), style_a, (96, 64), smoother=smooth_a), frames,
                 hotkeys(smooth_a, style_a))
    engine = ReferenceEngine(student(student_onnx))
    try:
        got = drive([InFlightStage(engine, style_b, (96, 64), smoother=smooth_b, in_flight=2).stage()], frames,
                    hotkeys(smooth_b, style_b))
    finally:
        engine.close()
    assert len(got) == len(want) == FRAMES
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(want, got)) <= FLOW_TOL


@pytest.mark.parametrize("smooth", ["ema", "flow"])
def test_a_size_change_mid_run_restarts_the_device_blend_like_the_float_path(clip96, student_onnx, encoder, smooth):
    """Live's adaptive size: 96x64 -> 64x43 -> 96x64 between frames; no blend across sizes, on either path."""
    frames = [f.pixels for f in VideoFileSource(clip96).frames()]

    def sizes(control):
        def before(i):
            control.set((64, 43) if 6 <= i < 12 else (96, 64))
        return before

    style = FixedStyle(encoder.encode("starry_night"))
    size_a, size_b = ProcessingSize((96, 64)), ProcessingSize((96, 64))
    want = drive(stylize_stages(student(student_onnx), style, size_a, smoother=SwitchableSmoother(smooth, style)),
                 frames, sizes(size_a))
    engine = ReferenceEngine(student(student_onnx))
    try:
        got = drive([InFlightStage(engine, style, size_b, smoother=SwitchableSmoother(smooth, style),
                                   in_flight=2).stage()], frames, sizes(size_b))
    finally:
        engine.close()
    assert all(g.shape == (64, 96, 3) for g in got)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(want, got)) <= (FLOW_TOL if smooth == "flow" else 1)


# ---------------------------------------------------------------- errors and stopping

def test_engine_error_mid_run_is_one_error_naming_the_stage_and_leaves_nothing_behind(clip96, student_onnx,
                                                                                      encoder, tmp_path):
    before = our_threads()
    engine = Spy(student(student_onnx), fail_at=4)                    # the 4th batch fails on the "device"
    out = tmp_path / "out.mp4"
    try:
        with pytest.raises(StreamerError) as info:
            convert_frames(engine, clip96, out, encoder, smooth="ema", batch=2)
        assert info.value.stage == "infer"
        assert "infer stage failed" in str(info.value) and "device fell over" in str(info.value)
        assert "\n" not in str(info.value)
        assert not out.exists() and leftovers(tmp_path) == []
        assert our_threads() - before <= {"streamer-reference-stream_0"}   # the engine's own "stream" only
        # the failed run left batches in the engine; the next run collects them first and runs to the end
        got, result = convert_frames(engine, clip96, out, encoder, smooth="ema", batch=2)
        assert result.frames == FRAMES and [f.seq for f in got] == list(range(FRAMES))
    finally:
        engine.close()
    assert our_threads() - before == set()


def test_stop_with_batches_in_flight_exits_cleanly(clip96, encoder):
    before = our_threads()
    engine = Spy(IdentityEngine(delay_s=0.03))
    style = FixedStyle(encoder.encode("starry_night"))
    runner = None
    sink = ListSink(on_write=lambda n: runner.stop() if n == 3 else None)
    run = assemble(engine, style, 96, 64, RunOptions(smooth="flow", batch=2))
    runner = Runner(VideoFileSource(clip96), run.stages, sink, policy="block")
    try:
        t0 = time.perf_counter()
        stats = runner.run()                                          # returns, no error
        assert time.perf_counter() - t0 < 5
        assert sink.aborted and not sink.finished and 3 <= stats.frames_out < FRAMES
        assert engine.outstanding > 0                                 # the stop came with batches in flight
        assert our_threads() - before <= {"streamer-reference-stream_0"}
        again = ListSink()                                            # the same engine serves the next run
        Runner(VideoFileSource(clip96), assemble(engine, style, 96, 64, RunOptions(smooth="flow", batch=2)).stages,
               again, policy="block").run()
        assert [f.seq for f in again.frames] == list(range(FRAMES)) and again.finished
    finally:
        engine.close()
    assert our_threads() - before == set()
    with pytest.raises(EngineError, match="closed"):
        engine.submit_uint8(np.zeros((1, 64, 96, 3), np.uint8), np.zeros((1, 100), np.float32))


def test_live_session_runs_the_inflight_stage_and_stops_cleanly(tmp_path, student_onnx, encoder):
    clip = make_clip(tmp_path / "live.mp4", width=96, height=64, frames=30, audio=None)
    engine = Spy(student(student_onnx))
    try:
        session = LiveSession(LiveOptions(source=str(clip), sinks=["null"], smooth="ema", max_size=96),
                              engine=engine, encoder=encoder)
        try:
            r = session.run()
        finally:
            session.close()
        assert r.ended.startswith("end of source")
        assert r.frames_out + r.dropped == r.frames_in and r.frames_out > 5
        assert "infer" in r.stage_ms_per_frame and "preprocess" not in r.stage_ms_per_frame
        assert engine.most == 1 and engine.outstanding == 0            # live keeps nothing in flight: no added latency
        session = LiveSession(LiveOptions(source=str(clip), sinks=["null"], loop=True, smooth="flow", max_size=96),
                              engine=engine, encoder=encoder)
        threading.Timer(0.8, session.stop, args=("quit",)).start()
        try:
            r = session.run()
        finally:
            session.close()
        assert r.ended == "quit" and r.frames_out > 5
    finally:
        engine.close()


# ---------------------------------------------------------------- the torch engine's device blend, on the CPU

def test_torch_engine_blends_flow_like_the_reference_engine(student_onnx, clip96, encoder):
    pytest.importorskip("torch")
    from engines.torch import TorchEngine

    spec = resolve_model("student")
    if spec.weights is None:
        pytest.skip("no bundled student .pt for the torch backend")
    frames = np.stack([f.pixels for f in VideoFileSource(clip96).frames()])[:6]
    vec = encoder.encode("starry_night")
    est = FlowSmoothing()
    steps = [est.estimate(f) for f in frames]
    assert steps[0] is None and all(s is not None for s in steps[1:])
    torch_engine = TorchEngine(spec.weights, "cpu")
    ref = ReferenceEngine(student(student_onnx))
    try:
        t = [torch_engine.collect(torch_engine.submit_uint8(frames[i:i + 3], vec, flow=steps[i:i + 3])) for i in (0, 3)]
        r = [ref.collect(ref.submit_uint8(frames[i:i + 3], vec, flow=steps[i:i + 3])) for i in (0, 3)]
    finally:
        torch_engine.close()
        ref.close()
    assert np.abs(np.concatenate(t).astype(int) - np.concatenate(r)).max() <= 1


@pytest.mark.gpu
@pytest.mark.parametrize("smooth", ["off", "ema", "flow"])
def test_torch_cuda_runs_the_inflight_stage_like_the_reference_engine(clip96, student_onnx, encoder, tmp_path,
                                                                       smooth):
    torch = pytest.importorskip("torch", reason="torch not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    from engines.torch import TorchEngine

    spec = resolve_model("student")
    engine = TorchEngine(spec.weights, "cuda")                        # fp16, CUDA graphs, 3 slots
    ref = ReferenceEngine(student(student_onnx))
    try:
        assert runs_in_flight(engine)
        got, result = convert_frames(engine, clip96, tmp_path / "cuda.mp4", encoder, smooth=smooth, batch=2)
        want, _ = convert_frames(ref, clip96, tmp_path / "ref.mp4", encoder, smooth=smooth, batch=2)
    finally:
        engine.close()
        ref.close()
    assert list(result.stage_ms_per_frame) == ["decode", "infer", "encode"] and result.frames == FRAMES
    assert [f.seq for f in got] == list(range(FRAMES))
    for a, b in zip(want, got):                                       # fp16 on the GPU against fp32 on the CPU
        mse = np.mean((a.stylized.astype(np.float64) - b.stylized) ** 2)
        assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 35.0
