"""GPU backends: what can be checked without a GPU (FP16 ONNX, cache keys, timing cache, profiles,
availability reasons and error messages, the in-flight bookkeeping, TensorRT teardown order with
stand-ins for pycuda, the PyTorch backend on CPU against ONNX Runtime, the CLI), and, marked ``gpu``,
the PyTorch CUDA backend and TensorRT on a GPU (skipped here with the reason).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import types
import weakref
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the student and the PyTorch backend need torch")

from engines.student import Student, StudentConfig, save_checkpoint_weights  # noqa: E402
from engines import fp16_onnx  # noqa: E402
from engines import tensorrt as trtb  # noqa: E402
from engines import tensorrt_build as trtbuild  # noqa: E402
from engines import torch as torchb  # noqa: E402
from engines.base import EngineError, EngineInfo  # noqa: E402
from engines.cuda_kernels import ref_to_u8hwc  # noqa: E402
from engines.inflight import GrowingBuffers, InFlight  # noqa: E402
from engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from streamer import codecs  # noqa: E402
from streamer.gpu_tools import sample_batch  # noqa: E402
from streamer.metrics import psnr  # noqa: E402
from streamer.temporal import EmaSmoothing  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

CUDA_OK, CUDA_WHY = torchb.availability("cuda")
needs_cuda = pytest.mark.skipif(not CUDA_OK, reason=f"PyTorch CUDA backend unavailable: {CUDA_WHY}")
TRT_OK, TRT_WHY = trtb.availability()
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f"TensorRT backend unavailable: {TRT_WHY}")


def export_onnx(model: Student, path) -> None:
    frame, style = torch.rand(1, 3, 64, 64), torch.randn(1, 100)
    torch.onnx.export(model, (frame, style), str(path), dynamo=False, opset_version=17,
                      input_names=["frame", "style"], output_names=["stylized"],
                      dynamic_axes={"frame": {0: "N", 2: "H", 3: "W"}, "style": {0: "N"},
                                    "stylized": {0: "N", 2: "H", 3: "W"}})


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A student with random weights (style MLP output too, so FiLM is active): (.pt path, .onnx path)."""
    torch.manual_seed(0)
    model = Student(StudentConfig()).eval()
    torch.nn.init.normal_(model.style_mlp[-1].weight, std=0.02)
    torch.nn.init.normal_(model.style_mlp[-1].bias, std=0.05)
    d = tmp_path_factory.mktemp("student")
    save_checkpoint_weights(model, d / "student.pt")
    export_onnx(model, d / "student.onnx")
    return d / "student.pt", d / "student.onnx"


# ---------------------------------------------------------------- strongly-typed FP16 ONNX

def test_fp16_onnx_is_valid_strongly_typed_and_close_to_fp32(student, tmp_path):
    _, onnx_path = student
    out = fp16_onnx.convert_file(onnx_path, tmp_path / "s16.onnx")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    assert fp16_onnx.is_fp16_model(model)
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer if t.data_type != onnx.TensorProto.INT64)
    assert [(i.name, i.type.tensor_type.elem_type) for i in g.input] == [("frame", 1), ("style", 1)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in g.output] == [("stylized", 1)]
    casts = [n for n in g.node if n.op_type == "Cast"]
    assert {n.input[0] for n in casts} >= {"frame", "style"} and any(n.output[0] == "stylized" for n in casts)
    resize = next(n for n in g.node if n.op_type == "Resize")     # its scales operand must stay float32
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    assert consts[resize.input[2]].attribute[0].t.data_type == onnx.TensorProto.FLOAT
    frames, style = sample_batch(128, 72, 2)
    ref = OnnxRuntimeEngine(onnx_path).infer(frames, style)
    got = OnnxRuntimeEngine(out).infer(frames, style)
    assert got.dtype == np.float32 and psnr(got, ref) >= 40.0


def test_fp16_convert_file_default_name_and_idempotent(student, tmp_path):
    _, onnx_path = student
    first = fp16_onnx.convert_file(onnx_path, tmp_path / "a.fp16.onnx")
    again = fp16_onnx.convert_file(first, tmp_path / "b.fp16.onnx")
    assert onnx.load(str(first)).graph == onnx.load(str(again)).graph
    assert fp16_onnx.convert_file(onnx_path).name == "student.fp16.onnx"


def test_fp16_refuses_weights_beyond_half_range():
    t = onnx.numpy_helper.from_array(np.array([1e6], np.float32), "w")
    with pytest.raises(ValueError, match="float16 range"):
        fp16_onnx._to_fp16_tensor(t)


# ---------------------------------------------------------------- TensorRT: versions, profiles, cache

@pytest.mark.parametrize("version,strong", [("10.0.1", False), ("10.11.0.33", False), ("10.12.0.36", True),
                                            ("10.13.2", True), ("11.0.0", True), ("11.2.1.post1", True)])
def test_fp16_mode_by_tensorrt_version(version, strong):
    assert trtbuild.fp16_strongly_typed(version) is strong


def test_make_profile_rounds_to_multiple_of_8_and_validates():
    p = trtbuild.make_profile((64, 60), (1920, 1080), (3840, 2160), batch_opt=2, batch_max=8)
    assert p.min == (1, 64, 64) and p.opt == (2, 1080, 1920) and p.max == (8, 2160, 3840)
    assert p.shapes()["frame"] == ((1, 3, 64, 64), (2, 3, 1080, 1920), (8, 3, 2160, 3840))
    assert p.shapes()["style"] == ((1, 100), (2, 100), (8, 100))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        trtbuild.make_profile((1920, 1080), (640, 480), (3840, 2160))
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        trtbuild.parse_size("1080p")


def test_select_profile_picks_a_containing_profile_nearest_its_opt():
    small = trtbuild.make_profile((64, 64), (640, 360), (1280, 720), batch_max=8)
    large = trtbuild.make_profile((64, 64), (1920, 1080), (3840, 2160), batch_max=4)
    profiles = [small, large]
    assert trtbuild.select_profile(profiles, 1, 368, 640) == 0
    assert trtbuild.select_profile(profiles, 1, 1080, 1920) == 1
    assert trtbuild.select_profile(profiles, 8, 720, 1280) == 0       # only the small one takes batch 8
    assert trtbuild.select_profile(profiles, 1, 720, 1280) == 0       # both fit; 1280x720 is nearer 640x360 than 1920x1080
    with pytest.raises(EngineError, match="outside the engine's profiles.*build-engine"):
        trtbuild.select_profile(profiles, 1, 4320, 7680)


def test_cache_key_changes_with_every_field_and_is_stable(tmp_path):
    base = dict(onnx_sha256="a" * 64, trt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0), precision="fp16", profiles=trtbuild.DEFAULT_PROFILES)
    key = trtbuild.cache_key(trtbuild.cache_fields(**base))
    assert key == trtbuild.cache_key(trtbuild.cache_fields(**base)) and len(key) == 20
    variants = [dict(onnx_sha256="b" * 64), dict(trt_version="11.0.0"), dict(gpu_name="NVIDIA H200"),
                dict(compute_capability=(8, 9)), dict(precision="fp32"),
                dict(profiles=(trtbuild.make_profile(batch_max=8),))]
    keys = {trtbuild.cache_key(trtbuild.cache_fields(**{**base, **v})) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    onnx_file = tmp_path / "student.onnx"
    onnx_file.write_bytes(b"not really onnx")
    assert trtbuild.sha256_file(onnx_file) == hashlib.sha256(b"not really onnx").hexdigest()
    assert trtbuild.engine_path_for(tmp_path, onnx_file, key).name == f"student-{key}.engine"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_CACHE", str(tmp_path))
    assert trtbuild.default_cache_dir() == tmp_path / "tensorrt"


def test_timing_cache_file_is_per_tensorrt_version_and_gpu(tmp_path):
    path = trtbuild.timing_cache_path(tmp_path, "10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0))
    assert path == tmp_path / "timing-10.13.0.35-nvidia-h100-80gb-hbm3-sm90.cache"
    others = {trtbuild.timing_cache_path(tmp_path, *args) for args in (
        ("11.0.0", "NVIDIA H100 80GB HBM3", (9, 0)),          # another TensorRT
        ("10.13.0.35", "NVIDIA H200", (9, 0)),                # another GPU of the same architecture
        ("10.13.0.35", "NVIDIA H100 80GB HBM3", (8, 9)))}     # same name string, other compute capability
    assert len(others) == 3 and path not in others


class _FakeBuilderConfig:
    """IBuilderConfig's timing-cache calls: ``accepts(serialized)`` plays TensorRT's header check."""

    def __init__(self, accepts) -> None:
        self.accepts, self.offered = accepts, []

    def create_timing_cache(self, serialized: bytes):
        return ("timing cache", bytes(serialized))

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False          # a mismatch must be reported, never silently accepted
        self.offered.append(cache[1])
        return self.accepts(cache[1])


def test_timing_cache_mismatch_is_reported_in_one_line_and_the_build_goes_on(tmp_path):
    path = tmp_path / "timing.cache"
    lines: list[str] = []
    assert trtbuild.attach_timing_cache(_FakeBuilderConfig(lambda b: True), None, lines.append) is False
    config = _FakeBuilderConfig(lambda b: True)                     # first build: no file yet, empty cache
    assert trtbuild.attach_timing_cache(config, path, lines.append) and config.offered == [b""] and lines == []
    path.write_bytes(b"from this TensorRT on this GPU")
    config = _FakeBuilderConfig(lambda b: True)
    assert trtbuild.attach_timing_cache(config, path, lines.append) and config.offered == [path.read_bytes()]
    assert lines == []
    path.write_bytes(b"from another GPU")                           # refused: warn, then an empty cache
    config = _FakeBuilderConfig(lambda b: b == b"")
    assert trtbuild.attach_timing_cache(config, path, lines.append) is True
    assert config.offered == [b"from another GPU", b""]
    assert len(lines) == 1 and lines[0].startswith("warning: TensorRT refused the timing cache")
    assert str(path) in lines[0] and "building without it" in lines[0] and "\n" not in lines[0]
    lines.clear()                                                   # refused outright: build without any cache
    assert trtbuild.attach_timing_cache(_FakeBuilderConfig(lambda b: False), path, lines.append) is False
    assert len(lines) == 1 and lines[0].endswith("building without a timing cache")


# ---------------------------------------------------------------- availability and error messages

def _fake_module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def test_tensorrt_missing_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)      # import raises ImportError
    ok, why = trtb.availability()
    assert not ok and why.startswith("package tensorrt not installed")
    with pytest.raises(EngineError, match="tensorrt backend unavailable: package tensorrt not installed"):
        trtb.TensorRTEngine("student.onnx")


def test_pycuda_missing_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_module("tensorrt", __version__="10.13.0"))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    ok, why = trtb.availability()
    assert not ok and why.startswith("pycuda not installed")


def _fake_pycuda(monkeypatch, init=None, count=1):
    class Device:
        def __init__(self, i):
            pass

        @staticmethod
        def count():
            return count

        def name(self):
            return "Fake GPU"

    driver = _fake_module("pycuda.driver", init=init or (lambda: None), Device=Device)
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_module("tensorrt", __version__="10.13.0"))
    monkeypatch.setitem(sys.modules, "pycuda", _fake_module("pycuda", driver=driver))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)


def test_driver_error_and_no_gpu_are_reported(monkeypatch):
    def broken():
        raise RuntimeError("cuInit failed: CUDA driver version is insufficient for CUDA runtime version")

    _fake_pycuda(monkeypatch, init=broken)
    ok, why = trtb.availability()
    assert not ok and why == "CUDA driver error: cuInit failed: CUDA driver version is insufficient for CUDA runtime version"
    _fake_pycuda(monkeypatch, count=0)
    assert trtb.availability() == (False, "no CUDA GPU (the CUDA driver sees no device)")
    _fake_pycuda(monkeypatch)
    assert trtb.availability() == (True, "tensorrt 10.13.0 on Fake GPU")


def test_torch_availability_reasons(monkeypatch):
    assert torchb.availability("cpu")[0]
    if not torch.cuda.is_available():
        ok, why = torchb.availability("cuda")
        assert not ok and why.startswith("no CUDA GPU (torch.cuda.is_available() is False")
        with pytest.raises(EngineError, match="torch backend unavailable: no CUDA GPU"):
            torchb.TorchEngine("missing.pt", "cuda")
    monkeypatch.setitem(sys.modules, "torch", None)
    ok, why = torchb.availability("cuda")
    assert not ok and why.startswith("package torch not installed")


def test_select_reports_why_a_backend_cannot_run(monkeypatch):
    from engines import select

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, why = select.availability("tensorrt")
    assert not ok and why.startswith("package tensorrt not installed (pip install 'streamer[tensorrt]'")
    if not torch.cuda.is_available():
        ok, why = select.availability("torch")
        assert not ok and why.startswith("no CUDA GPU (torch.cuda.is_available() is False")

    def wedged():
        raise RuntimeError("cuInit hung up")

    monkeypatch.setattr(trtb, "availability", wedged)       # a broken driver must not break `streamer info`
    assert select.availability("tensorrt") == (False, "engines.tensorrt.availability() failed: RuntimeError: "
                                                       "cuInit hung up")


def test_auto_falls_back_to_onnxruntime_and_prefers_gpu_backends_when_they_run(monkeypatch):
    from engines import select

    asked = []
    monkeypatch.setattr(torchb, "availability", lambda device="cuda": asked.append("torch") or (False, "no CUDA GPU"))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(select, "nvidia_driver_present", lambda: False)
    assert select.choose_backend("auto") == "onnxruntime" and asked == []     # no driver: GPU backends not asked
    monkeypatch.setattr(select, "nvidia_driver_present", lambda: True)
    assert select.choose_backend("auto") == "onnxruntime" and asked == ["torch"]
    monkeypatch.setattr(torchb, "availability", lambda device="cuda": (True, "torch on Fake GPU"))
    assert select.choose_backend("auto") == "torch"
    assert select.choose_backend("auto", "teacher") == "onnxruntime"          # the teacher is ONNX Runtime only


def test_auto_on_this_machine():
    from engines import select

    report = {name: ok for name, ok, _ in select.backend_report()}
    want = "onnxruntime"
    if select.nvidia_driver_present():
        want = next((name for name in ("tensorrt", "torch") if report[name]), "onnxruntime")
    assert select.choose_backend("auto") == want
    if not report["torch"] and not report["tensorrt"]:
        assert want == "onnxruntime"             # this CPU machine: the embedded default runs


def test_engine_modules_import_without_torch_tensorrt_or_pycuda():
    code = ("import sys, engines.tensorrt, engines.tensorrt_build, engines.torch, engines.inflight; "
            "print([m for m in ('torch', 'tensorrt', 'pycuda') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_torch_engine_missing_weights_and_cpu_fp16(tmp_path):
    with pytest.raises(EngineError, match="no student weights given"):
        torchb.TorchEngine(None, "cpu")          # the path comes from the model spec; there is no default here
    with pytest.raises(EngineError, match="student weights not found"):
        torchb.TorchEngine(tmp_path / "none.pt", "cpu")
    with pytest.raises(EngineError, match="fp16 needs CUDA"):
        torchb.TorchEngine(tmp_path / "none.pt", "cpu", precision="fp16")


# ---------------------------------------------------------------- batches in flight (engines.inflight)

def _submit(flight, result, log=None, fail=False):
    with flight.submit() as sub:
        if fail:
            raise RuntimeError("enqueue failed")

        def finish():
            if log is not None:
                log.append(sub.ticket)
            return result
        sub.finish = finish
    return sub.ticket


def test_inflight_ring_tickets_and_in_order_results():
    done: list[int] = []
    flight = InFlight("test", ["slot a", "slot b"])
    t0 = _submit(flight, np.array([0]), done)
    t1 = _submit(flight, np.array([1]), done)
    assert (t0, t1) == (0, 1) and len(flight) == 2
    with pytest.raises(EngineError, match="2 batches already in flight; collect"):
        _submit(flight, np.array([2]))
    assert flight.collect(t0)[0] == 0
    with flight.submit() as sub:                 # the ring comes round to the slot t0 had
        assert (sub.ticket, sub.slot) == (2, "slot a")
        sub.finish = lambda: np.array([2])
    assert flight.collect(2)[0] == 2             # a later ticket first: t1 is finished too, and kept
    assert done == [0, 1] and flight.collect(t1)[0] == 1 and len(flight) == 0
    with pytest.raises(EngineError, match="no batch in flight with ticket 1"):
        flight.collect(t1)
    with pytest.raises(EngineError, match="ticket 7"):
        flight.collect(7)


def test_inflight_failed_submit_consumes_nothing_and_flush_returns_everything_in_order():
    flight = InFlight("test", ["only slot"])
    with pytest.raises(RuntimeError, match="enqueue failed"):
        _submit(flight, None, fail=True)
    assert len(flight) == 0 and _submit(flight, np.array([0])) == 0     # same ticket, same slot: still free
    unlimited = InFlight("cpu")                  # no slots: computed at submit time, no limit
    tickets = [_submit(unlimited, np.array([i])) for i in range(5)]
    assert unlimited.collect(tickets[2])[0] == 2
    assert [r[0] for r in unlimited.flush()] == [0, 1, 3, 4] and len(unlimited) == 0
    assert [r[0] for r in flight.flush()] == [0] and flight.flush() == []


def _retry(call):
    """Call until it stops raising EngineError (ring full, or the ticket not submitted yet)."""
    while True:
        try:
            return call()
        except EngineError:
            time.sleep(0.0005)


def test_inflight_one_thread_submits_while_another_collects():
    flight = InFlight("test", ["a", "b"])
    got: list[int] = []
    consumer = threading.Thread(target=lambda: got.extend(int(_retry(lambda: flight.collect(t))[0])
                                                          for t in range(40)))
    consumer.start()
    for i in range(40):
        _retry(lambda: _submit(flight, np.array([i])))
    consumer.join(timeout=60)
    assert got == list(range(40)) and len(flight) == 0


def test_growing_buffers_reallocate_only_to_grow():
    made, freed = [], []
    bufs = GrowingBuffers(lambda n: made.append(n) or bytearray(n))
    a = bufs.get("in", 100)
    assert bufs.get("in", 50) is a and bufs.get("in", 100) is a and made == [100]
    assert len(bufs.get("in", 101)) == 101 and made == [100, 101]
    bufs.get("out", 0)                           # zero bytes still gets a real (1-byte) buffer
    bufs.release(freed.append)
    assert [len(b) for b in freed] == [101, 1] and bufs.get("in", 10) is not a


# ---------------------------------------------------------------- TensorRT teardown order, with stand-ins

class _FakePrimaryContext:
    """pycuda's retained primary context: push/pop depth and the order of push, pop and detach."""

    def __init__(self) -> None:
        self.depth, self.calls = 0, []

    def push(self) -> None:
        self.depth += 1
        self.calls.append("push")

    def pop(self) -> None:
        self.depth -= 1
        self.calls.append("pop")

    def detach(self) -> None:
        self.calls.append(f"detach at depth {self.depth}")


class _DeviceObject:
    """A stream, event, module or TensorRT object: freed when its last reference goes (weakref-able)."""


def test_tensorrt_close_frees_everything_while_current_then_pops_then_detaches():
    ctx = _FakePrimaryContext()
    freed: list[tuple[str, int]] = []

    def tracked(what):
        obj = _DeviceObject()
        weakref.finalize(obj, lambda: freed.append((what, ctx.depth)))
        return obj

    class Pinned:
        """pycuda's HostAllocation: the ``base`` of a pagelocked_empty array, with ``free()``."""

        def __init__(self, nbytes):
            self._memory = np.zeros(nbytes, np.uint8)
            self.__array_interface__ = self._memory.__array_interface__

        def free(self):
            freed.append(("pinned", ctx.depth))

    def mem_alloc(nbytes):
        return types.SimpleNamespace(free=lambda: freed.append(("device memory", ctx.depth)))

    cuda = types.SimpleNamespace(pagelocked_empty=lambda n, dtype: np.asarray(Pinned(n)),
                                 mem_alloc=mem_alloc, Event=lambda: tracked("event"), memset_d8=lambda *a: None)
    engine = trtb.TensorRTEngine.__new__(trtb.TensorRTEngine)
    engine.info = EngineInfo(backend="tensorrt", model="student", device="cuda:0 stand-in", uint8_io=True)
    slot = trtb._Slot(cuda)
    slot.host_buf("u8_in", 64)
    slot.dev_buf("net_in", 64)
    engine._cuda_ctx, engine._lock = ctx, threading.Lock()
    engine._inflight = InFlight("tensorrt", [slot])
    engine._ema = trtb._DeviceEma(cuda)
    engine._ema.take(4, 4, 0.5, types.SimpleNamespace(synchronize=lambda: None))
    engine._state = trtb._CarriedState(cuda, 16)    # a stateful student's state and state_out buffers
    engine._kernels = tracked("module")
    engine._up, engine._compute, engine._down = tracked("stream"), tracked("stream"), tracked("stream")
    engine._plan = trtb._Plan.__new__(trtb._Plan)
    engine._plan.context, engine._plan.engine, engine._plan.runtime = (
        tracked("execution context"), tracked("engine"), tracked("runtime"))
    with engine._inflight.submit() as sub:      # a batch still in flight when close() is called
        sub.finish = lambda: freed.append(("in-flight batch finished", ctx.depth)) or np.zeros(1)

    engine.close()
    what = [w for w, _ in freed]
    assert what[0] == "in-flight batch finished"
    assert sorted(set(what)) == sorted({"in-flight batch finished", "pinned", "device memory", "event", "module",
                                        "stream", "execution context", "engine", "runtime"})
    assert what.count("device memory") == 4 and what.count("stream") == 3 and what.count("event") == 3
    assert what.index("execution context") < what.index("engine") < what.index("runtime")
    assert all(depth == 1 for _, depth in freed), freed          # everything with the context current
    assert ctx.calls[-2:] == ["pop", "detach at depth 0"] and ctx.calls.count("detach at depth 0") == 1
    engine.close()                               # twice is fine
    with pytest.raises(EngineError, match="the engine is closed"):
        engine.infer_uint8(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 100), np.float32))


# ---------------------------------------------------------------- the PyTorch backend on CPU

def test_torch_cpu_matches_onnxruntime_within_1e4(student):
    pt, onnx_path = student
    frames, style = sample_batch(70, 50, 2, seed=3)       # not a multiple of 8: both pad by reflection
    ref = OnnxRuntimeEngine(onnx_path).infer(frames, style)
    engine = torchb.TorchEngine(pt, "cpu")
    got = engine.infer(frames, style)
    assert got.shape == ref.shape == (2, 3, 50, 70) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4
    assert engine.info.backend == "torch" and engine.info.precision == "fp32" and not engine.info.uint8_io
    got1 = engine.infer(frames[:1], style[:1])
    np.testing.assert_allclose(got1, got[:1], atol=1e-5)


def test_torch_cpu_uint8_path_and_ema_match_the_references(student):
    pt, onnx_path = student
    engine = torchb.TorchEngine(pt, "cpu")
    frames, style = sample_batch(40, 32, 3, seed=4)
    u8 = np.ascontiguousarray((frames * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))
    ref = OnnxRuntimeEngine(onnx_path).infer(u8.transpose(0, 3, 1, 2).astype(np.float32) / 255, style)
    want, _ = ref_to_u8hwc(ref, 32, 40)
    got = engine.infer_uint8(u8, style)
    assert got.dtype == np.uint8 and got.shape == (3, 32, 40, 3)
    assert np.abs(got.astype(int) - want).max() <= 1
    bgr = engine.infer_uint8(np.ascontiguousarray(u8[..., ::-1]), style, bgr=True)
    np.testing.assert_array_equal(bgr[..., ::-1], got)
    smoother = EmaSmoothing(alpha=0.6)
    plain = [engine.infer_uint8(u8[i:i + 1], style[i:i + 1])[0] for i in range(3)]
    wanted = [smoother(None, p) for p in plain]
    engine.reset_smoothing()
    blended = engine.infer_uint8(u8, style, ema_alpha=0.6)     # one batch = three consecutive frames
    for i in range(3):
        np.testing.assert_array_equal(blended[i], wanted[i])
    engine.reset_smoothing()
    again = [engine.infer_uint8(u8[i:i + 1], style[i:i + 1], ema_alpha=0.6)[0] for i in range(3)]
    np.testing.assert_array_equal(np.stack(again), blended)


def test_torch_cpu_submit_collect_keeps_submission_order(student):
    engine = torchb.TorchEngine(student[0], "cpu")
    frames, style = sample_batch(40, 32, 3, seed=6)
    u8 = np.ascontiguousarray((frames * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))
    one_by_one = [engine.infer_uint8(u8[i:i + 1], style[i:i + 1]) for i in range(3)]
    tickets = [engine.submit_uint8(u8[i:i + 1], style[i:i + 1]) for i in range(3)]
    assert tickets == [3, 4, 5]
    last = engine.collect(tickets[2])                          # later first: earlier results are kept
    np.testing.assert_array_equal(last, one_by_one[2])
    for t, want in zip(tickets[:2], one_by_one):
        np.testing.assert_array_equal(engine.collect(t), want)
    engine.submit_uint8(u8[:1], style[:1])
    engine.close()                                             # with a batch in flight


def test_torch_cpu_rejects_bad_uint8_input(student):
    engine = torchb.TorchEngine(student[0], "cpu")
    with pytest.raises(EngineError, match=r"uint8 frames must be \[N,H,W,3\]"):
        engine.infer_uint8(np.zeros((1, 3, 32, 32), np.float32), np.zeros((1, 100), np.float32))


# ---------------------------------------------------------------- CLI and codecs

def _run(argv):
    cli = pytest.importorskip("streamer.cli")
    return cli.main(argv)


def test_gpu_cli_registers_its_commands():
    import argparse

    from streamer.cli import gpu as gpu_cli

    parser = argparse.ArgumentParser()
    gpu_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["build-engine", "m.onnx", "--opt", "1280x720", "--batch-max", "8"])
    assert args.func is gpu_cli.cmd_build_engine and args.opt == "1280x720" and args.batch_max == 8
    assert parser.parse_args(["validate-engine", "m.onnx"]).min_psnr == 40.0
    assert parser.parse_args(["validate-torch", "m.pt", "m.onnx"]).device == "cuda"


def test_build_engine_without_tensorrt_says_why(student, monkeypatch, capsys):
    from streamer.cli import gpu as gpu_cli
    from streamer.errors import StreamerError

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    args = types.SimpleNamespace(onnx=str(student[1]), min="64x64", opt="1920x1080", max="3840x2160", batch_opt=1,
                                 batch_max=4, precision="fp16", cache_dir=None, rebuild=False, json=False)
    with pytest.raises(StreamerError, match="cannot build a TensorRT engine: package tensorrt not installed"):
        gpu_cli.cmd_build_engine(args)
    from streamer.errors import InputError

    with pytest.raises(InputError, match="min <= opt <= max"):
        gpu_cli.cmd_build_engine(types.SimpleNamespace(**{**vars(args), "opt": "8000x8000"}))


def test_validate_torch_command_on_cpu(student, capsys):
    from streamer.cli import gpu as gpu_cli

    pt, onnx_path = student
    args = types.SimpleNamespace(weights=str(pt), onnx=str(onnx_path), device="cpu", precision=None, size="96x64",
                                 batch=2, min_psnr=40.0, json=True)
    assert gpu_cli.cmd_validate_torch(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["psnr_db"] > 80 and result["precision"] == "fp32"


def test_pick_video_codec(monkeypatch):
    monkeypatch.setattr(codecs, "encoder_usable", lambda name: (False, f"{name} cannot be opened (no driver)"))
    assert codecs.pick_video_codec("auto", gpu=True) == ("libx264", None)
    codec, notice = codecs.pick_video_codec("h264_nvenc", gpu=True)
    assert codec == "libx264" and notice.startswith("notice: h264_nvenc cannot be opened") and "\n" not in notice
    assert codecs.pick_video_codec("libx265", gpu=False) == ("libx265", None)
    monkeypatch.setattr(codecs, "encoder_usable", lambda name: (True, ""))
    assert codecs.pick_video_codec("auto", gpu=True) == ("h264_nvenc", None)
    assert codecs.pick_video_codec("auto", gpu=False) == ("libx264", None)
    assert codecs.pick_video_codec("h264_nvenc", gpu=False) == ("h264_nvenc", None)


def test_encoder_probe_really_opens_the_encoder():
    codecs.encoder_usable.cache_clear()
    assert codecs.encoder_usable("libx264") == (True, "")
    ok, why = codecs.encoder_usable("no_such_encoder")
    assert not ok and "not in this PyAV" in why


# ---------------------------------------------------------------- on a GPU

@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_fp16_psnr_against_onnxruntime_fp32(student):
    from streamer.gpu_tools import validate_torch

    pt, onnx_path = student
    result = validate_torch(pt, onnx_path, device="cuda", width=1280, height=720, batch=2)
    assert result["precision"] == "fp16"
    assert result["psnr_db"] >= 40.0 and result["psnr_uint8_db"] >= 40.0, result


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_in_flight_graphs_and_ema_agree_with_sequential(student):
    pt, _ = student
    engine = torchb.TorchEngine(pt, "cuda")
    plain = torchb.TorchEngine(pt, "cuda", cuda_graphs=False)
    rng = np.random.default_rng()
    batches = [rng.integers(0, 256, (2, 68, 124, 3), dtype=np.uint8) for _ in range(5)]
    style = rng.standard_normal((1, 100)).astype(np.float32) * 0.5
    tickets = [engine.submit_uint8(b, style) for b in batches[:3]]
    outs = [engine.collect(t) for t in tickets] + [engine.infer_uint8(b, style) for b in batches[3:]]
    for b, out in zip(batches, outs):
        ref = plain.infer_uint8(b, style)
        assert np.abs(out.astype(int) - ref).max() <= 1
    # EMA across in-flight batches equals the CPU reference applied to the plain outputs, in order
    engine.reset_smoothing()
    tickets = [engine.submit_uint8(b, style, ema_alpha=0.5) for b in batches[:3]]
    blended = np.concatenate([engine.collect(t) for t in tickets])
    smoother = EmaSmoothing(alpha=0.5)
    want = np.stack([smoother(None, f) for f in np.concatenate(outs[:3])])
    assert np.abs(blended.astype(int) - want).max() <= 1
    engine.close()
    plain.close()


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_benchmark_runs():
    engine = torchb.TorchEngine(model=Student(StudentConfig()), device="cuda")
    fps = engine.benchmark_model(1, 720, 1280, iters=20)
    assert fps > 0


@pytest.mark.gpu
@needs_trt
def test_tensorrt_engine_cache_and_psnr(student, tmp_path):
    pt, onnx_path = student
    profiles = (trtbuild.make_profile((64, 64), (640, 360), (1280, 720), batch_max=2),)
    lines: list[str] = []
    path, built = trtbuild.ensure_engine(onnx_path, profiles=profiles, cache_dir=tmp_path, log=lines.append)
    gpu, cc = trtbuild.gpu_identity()
    timing = trtbuild.timing_cache_path(tmp_path, sys.modules["tensorrt"].__version__, gpu, cc)
    assert built and path.is_file() and timing.is_file() and not any("warning" in line for line in lines)
    assert trtbuild.ensure_engine(onnx_path, profiles=profiles, cache_dir=tmp_path) == (path, False)
    timing.write_bytes(b"not a timing cache")               # refused by TensorRT: one warning, then a fresh one
    lines.clear()
    trtbuild.ensure_engine(onnx_path, profiles=profiles, cache_dir=tmp_path, rebuild=True, log=lines.append)
    assert sum("warning: TensorRT refused the timing cache" in line for line in lines) == 1
    assert timing.read_bytes() != b"not a timing cache"
    engine = trtb.TensorRTEngine(onnx_path, profiles=profiles, cache_dir=tmp_path)
    frames, style = sample_batch(640, 360, 2)
    ref = OnnxRuntimeEngine(onnx_path).infer(frames, style)
    assert psnr(engine.infer(frames, style), ref) >= 40.0
    u8 = np.ascontiguousarray((frames * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))
    got = engine.infer_uint8(u8, style)
    want, _ = ref_to_u8hwc(OnnxRuntimeEngine(onnx_path).infer(u8.transpose(0, 3, 1, 2) / np.float32(255), style),
                           360, 640)
    assert psnr(got, want) >= 40.0
    tickets = [engine.submit_uint8(u8[i:i + 1], style[i:i + 1]) for i in range(2)]
    assert [engine.collect(t).shape for t in reversed(tickets)] == [(1, 360, 640, 3)] * 2
    engine.submit_uint8(u8, style)                             # still in flight at close()
    engine.close()
    engine.close()
