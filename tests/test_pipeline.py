"""The runner itself: order, batching, both queue policies, and that one failure stops every thread."""
from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from streamer.errors import InputError, PipelineError
from streamer.pipeline import Frame, Runner, Stage, Stats

PIX = np.zeros((4, 4, 3), np.uint8)


class ListSource:
    name = "decode"

    def __init__(self, n, fail_at=None, endless=False):
        self.n, self.fail_at, self.endless, self.closed = n, fail_at, endless, False

    def frames(self):
        i = 0
        while self.endless or i < self.n:
            if i == self.fail_at:
                raise InputError("clip.mp4: corrupt video at frame %d" % i)
            yield Frame(i, i * 512, Fraction(1, 15360), time.perf_counter(), PIX)
            i += 1

    def close(self):
        self.closed = True


class ListSink:
    name = "encode"

    def __init__(self, fail_at=None, delay=0.0, block_event=None):
        self.seqs, self.finished, self.aborted = [], False, False
        self.fail_at, self.delay, self.block_event = fail_at, delay, block_event

    def write(self, frame):
        if frame.seq == self.fail_at:
            raise OSError("disk full")
        if self.block_event is not None:
            self.block_event.wait()
        if self.delay:
            time.sleep(self.delay)
        self.seqs.append(frame.seq)

    def finish(self):
        self.finished = True

    def abort(self):
        self.aborted = True


def streamer_threads():
    return [t for t in threading.enumerate() if t.name.startswith("streamer-")]


def test_frames_pass_in_order_with_batches_and_flush():
    calls, held = [], []

    def infer(frames):                # keeps the last frame of every batch "in flight" until the next call
        calls.append([f.seq for f in frames])
        out = held + frames[:-1]
        held[:] = frames[-1:]
        return out

    def flush():
        out, held[:] = list(held), []
        return out

    sink = ListSink()
    stats = Runner(ListSource(23), [Stage.map("preprocess", lambda f: f), Stage("infer", infer, batch=4, flush=flush)],
                   sink, queue_size=2).run()
    assert sink.seqs == list(range(23)) and sink.finished and not sink.aborted
    assert all(len(c) == 4 for c in calls[:-1]) and sum(map(len, calls)) == 23
    assert stats.frames_in == stats.frames_out == 23 and stats.dropped == 0
    assert {"decode", "preprocess", "infer", "encode"} <= set(stats.busy)
    assert stats.frames["infer"] == stats.frames["preprocess"] == 23   # frames handled, counted per stage
    assert streamer_threads() == []


def test_drop_oldest_never_blocks_the_producer_and_counts_drops():
    sink = ListSink(delay=0.002)
    stats = Runner(ListSource(300), [Stage.map("preprocess", lambda f: f)], sink, policy="drop_oldest",
                   queue_size=2).run()
    assert stats.dropped > 0
    assert stats.frames_out + stats.dropped == 300
    assert sink.seqs == sorted(sink.seqs) and sink.seqs[-1] == 299        # newest frame always gets through
    assert streamer_threads() == []


@pytest.mark.parametrize("where", ["source", "stage", "sink"])
def test_first_error_stops_every_thread_and_names_the_stage(where):
    source = ListSource(10, endless=True, fail_at=40 if where == "source" else None)
    sink = ListSink(fail_at=30 if where == "sink" else None)

    def infer(frames):
        if where == "stage" and frames[0].seq == 20:
            raise ValueError("engine exploded")
        return frames

    with pytest.raises((InputError, PipelineError, OSError)) as info:
        Runner(source, [Stage.map("preprocess", lambda f: f), Stage("infer", infer, batch=2)], sink,
               label="clip.mp4").run()
    err = info.value
    if where == "source":
        assert isinstance(err, InputError) and err.stage == "decode" and "clip.mp4" in str(err)
    elif where == "stage":
        assert isinstance(err, PipelineError) and err.stage == "infer"
        assert str(err) == "clip.mp4: infer stage failed: ValueError: engine exploded"
    else:
        assert isinstance(err, PipelineError) and err.stage == "encode" and "disk full" in str(err)
    assert source.closed and sink.aborted and not sink.finished
    assert streamer_threads() == []


def test_stop_reaches_a_stage_blocked_on_a_full_queue():
    """The sink blocks; every other thread waits on a full queue; stop() from outside ends them all."""
    gate = threading.Event()
    sink = ListSink(block_event=gate)
    runner = Runner(ListSource(10, endless=True), [Stage.map("preprocess", lambda f: f)], sink, queue_size=2)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("stats", runner.run()))
    t.start()
    while runner.stats.frames_in < 4:       # queues are full now
        time.sleep(0.01)
    runner.stop()
    gate.set()
    t.join(30)
    assert not t.is_alive()
    assert streamer_threads() == []


def test_unknown_policy_rejected():
    with pytest.raises(ValueError):
        Runner(ListSource(1), [], ListSink(), policy="lossy")


def test_stage_times_are_milliseconds_per_frame_handled():
    s = Stats()
    s.add("infer", 0.5, frames=4)           # one batch of 4 frames took 0.5 s
    s.add("infer", 0.25, frames=1)
    s.add("encode", 0.01)
    assert s.as_dict()["stage_ms_per_frame"] == {"infer": 150.0, "encode": 10.0}
