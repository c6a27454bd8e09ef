"""GPU backends: what can be checked without a GPU (FP16 ONNX, cache keys, profiles, availability
reasons and error messages, the PyTorch backend on CPU against ONNX Runtime, the CLI), and,
marked ``gpu``, the PyTorch CUDA backend and TensorRT on a GPU (skipped here with the reason).
"""
from __future__ import annotations

import hashlib
import json
import sys
import types

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the student and the PyTorch backend need torch")

from engines.student import Student, StudentConfig, save_checkpoint_weights  # noqa: E402
from engines import fp16_onnx  # noqa: E402
from engines import tensorrt as trtb  # noqa: E402
from engines import torch as torchb  # noqa: E402
from engines.base import EngineError  # noqa: E402
from engines.cuda_kernels import ref_to_u8hwc  # noqa: E402
from engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from streamer import codecs  # noqa: E402
from streamer.gpu_cli import psnr, sample_batch  # noqa: E402
from streamer.temporal import EmaSmoothing  # noqa: E402

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
    assert trtb.fp16_strongly_typed(version) is strong


def test_make_profile_rounds_to_multiple_of_8_and_validates():
    p = trtb.make_profile((64, 60), (1920, 1080), (3840, 2160), batch_opt=2, batch_max=8)
    assert p.min == (1, 64, 64) and p.opt == (2, 1080, 1920) and p.max == (8, 2160, 3840)
    assert p.shapes()["frame"] == ((1, 3, 64, 64), (2, 3, 1080, 1920), (8, 3, 2160, 3840))
    assert p.shapes()["style"] == ((1, 100), (2, 100), (8, 100))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        trtb.make_profile((1920, 1080), (640, 480), (3840, 2160))
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        trtb.parse_size("1080p")


def test_select_profile_picks_a_containing_profile_nearest_its_opt():
    small = trtb.make_profile((64, 64), (640, 360), (1280, 720), batch_max=8)
    large = trtb.make_profile((64, 64), (1920, 1080), (3840, 2160), batch_max=4)
    profiles = [small, large]
    assert trtb.select_profile(profiles, 1, 368, 640) == 0
    assert trtb.select_profile(profiles, 1, 1080, 1920) == 1
    assert trtb.select_profile(profiles, 8, 720, 1280) == 0       # only the small one takes batch 8
    assert trtb.select_profile(profiles, 1, 720, 1280) == 0       # both fit; 1280x720 is nearer 640x360 than 1920x1080
    with pytest.raises(EngineError, match="outside the engine's profiles.*build-engine"):
        trtb.select_profile(profiles, 1, 4320, 7680)


def test_cache_key_changes_with_every_field_and_is_stable(tmp_path):
    base = dict(onnx_sha256="a" * 64, trt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0), precision="fp16", profiles=trtb.DEFAULT_PROFILES)
    key = trtb.cache_key(trtb.cache_fields(**base))
    assert key == trtb.cache_key(trtb.cache_fields(**base)) and len(key) == 20
    variants = [dict(onnx_sha256="b" * 64), dict(trt_version="11.0.0"), dict(gpu_name="NVIDIA H200"),
                dict(compute_capability=(8, 9)), dict(precision="fp32"),
                dict(profiles=(trtb.make_profile(batch_max=8),))]
    keys = {trtb.cache_key(trtb.cache_fields(**{**base, **v})) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    onnx_file = tmp_path / "student.onnx"
    onnx_file.write_bytes(b"not really onnx")
    assert trtb.sha256_file(onnx_file) == hashlib.sha256(b"not really onnx").hexdigest()
    assert trtb.engine_path_for(tmp_path, onnx_file, key).name == f"student-{key}.engine"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMER_CACHE", str(tmp_path))
    assert trtb.default_cache_dir() == tmp_path / "tensorrt"


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


def test_select_module_sees_the_same_reasons():
    select = pytest.importorskip("engines.select")
    for name, module in (("tensorrt", trtb), ("torch", torchb)):
        assert select.availability(name) == module.availability()


def test_torch_engine_missing_weights_and_cpu_fp16(tmp_path):
    with pytest.raises(EngineError, match="student weights not found"):
        torchb.TorchEngine(tmp_path / "none.pt", "cpu")
    with pytest.raises(EngineError, match="fp16 needs CUDA"):
        torchb.TorchEngine(tmp_path / "none.pt", "cpu", precision="fp16")


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

    from streamer import gpu_cli

    parser = argparse.ArgumentParser()
    gpu_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["build-engine", "m.onnx", "--opt", "1280x720", "--batch-max", "8"])
    assert args.func is gpu_cli.cmd_build_engine and args.opt == "1280x720" and args.batch_max == 8
    assert parser.parse_args(["validate-engine", "m.onnx"]).min_psnr == 40.0
    assert parser.parse_args(["validate-torch", "m.pt", "m.onnx"]).device == "cuda"


def test_build_engine_without_tensorrt_says_why(student, monkeypatch, capsys):
    from streamer import gpu_cli
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
    from streamer import gpu_cli

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
    from streamer.gpu_cli import validate_torch

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
    profiles = (trtb.make_profile((64, 64), (640, 360), (1280, 720), batch_max=2),)
    path, built = trtb.ensure_engine(onnx_path, profiles=profiles, cache_dir=tmp_path)
    assert built and path.is_file() and (tmp_path / f"timing-{sys.modules['tensorrt'].__version__}.cache").is_file()
    assert trtb.ensure_engine(onnx_path, profiles=profiles, cache_dir=tmp_path) == (path, False)
    engine = trtb.TensorRTEngine(onnx_path, profiles=profiles, cache_dir=tmp_path)
    frames, style = sample_batch(640, 360, 2)
    ref = OnnxRuntimeEngine(onnx_path).infer(frames, style)
    assert psnr(engine.infer(frames, style), ref) >= 40.0
    u8 = np.ascontiguousarray((frames * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1))
    got = engine.infer_uint8(u8, style)
    want, _ = ref_to_u8hwc(OnnxRuntimeEngine(onnx_path).infer(u8.transpose(0, 3, 1, 2) / np.float32(255), style),
                           360, 640)
    assert psnr(got.astype(np.float32), want.astype(np.float32), peak=255) >= 40.0
    engine.close()
