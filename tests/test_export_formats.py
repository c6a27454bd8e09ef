"""`distill export --format`: each format round-trips through its own runtime, and a failing check leaves nothing.

A tiny student (random weights, the real architecture with the 1/8 branch) keeps the conversions quick; the
shipped tiers' numbers are in benchmarks/RESULTS.md ("Export formats").  TFLite needs the export extra
(litert-torch, ai-edge-litert): those tests skip with the reason where it is missing.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, leftovers

torch = pytest.importorskip("torch", reason="the distill extra (torch) is not installed")

from distill.export_formats import (ExportCheckError, export_format, onnx_runner, parse_size,  # noqa: E402
                                    tflite_runner, torchscript_runner)
from engines.student import Student, StudentConfig, save_checkpoint_weights  # noqa: E402
from streamer.errors import InputError  # noqa: E402

SIZE = (96, 64)
HAVE_TFLITE = all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"))
needs_tflite = pytest.mark.skipif(not HAVE_TFLITE, reason="litert-torch / ai-edge-litert / ai-edge-quantizer not "
                                                           "installed (pip install 'streamer[export]')")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = Student(StudentConfig(c1=8, c2=16, blocks=2, c3=16, blocks3=1))
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_checkpoint_weights(model, path)
    return path


def inputs(n: int = 1, h: int = 64, w: int = 96, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, h, w), dtype=np.float32), rng.standard_normal((n, 100)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["onnx", "onnx-fp16", "torchscript"])
def test_dynamic_formats_round_trip(tmp_path, weights, fmt):
    out = tmp_path / f"m.{fmt}"
    report = export_format(str(weights), str(out), fmt, size=SIZE, threads=1)
    assert report["psnr_db"] >= 40 and report["format"] == fmt and report["bytes"] == out.stat().st_size
    run = torchscript_runner(out) if fmt == "torchscript" else onnx_runner(out)
    export_format(str(weights), str(tmp_path / "ref.onnx"), "onnx", size=SIZE)
    ref = onnx_runner(tmp_path / "ref.onnx")
    x, s = inputs(n=2, h=40, w=72)                               # another batch and size than the export's
    got, want = run(x, s), ref(x, s)
    assert got.shape == (2, 3, 40, 72)
    assert np.abs(got - want).max() < (2e-2 if fmt == "onnx-fp16" else 1e-4)
    assert leftovers(tmp_path) == []


def test_torchscript_loads_without_streamer(tmp_path, weights):
    out = tmp_path / "m.pt"
    export_format(str(weights), str(out), "torchscript", size=SIZE)
    code = ("import sys, torch; m = torch.jit.load(sys.argv[1]); "
            "y = m(torch.rand(1, 3, 48, 80), torch.rand(1, 100)); print(tuple(y.shape))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120)      # no PYTHONPATH: streamer is not importable
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 3, 48, 80)"


def test_onnx_int8_is_calibrated_on_a_folder_and_checked(tmp_path, weights):
    from conftest import make_clip

    calib = tmp_path / "calib"
    calib.mkdir()
    make_clip(calib / "a.mp4", width=160, height=96, frames=12, audio=None)
    out = tmp_path / "m.int8.onnx"
    report = export_format(str(weights), str(out), "onnx-int8", size=SIZE, calib_dir=str(calib), threads=1)
    assert report["psnr_db"] >= 30 and report["min_psnr_db"] == 30
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert leftovers(tmp_path) == []


@needs_tflite
@pytest.mark.parametrize("fmt", ["tflite", "tflite-int8"])
def test_tflite_round_trips_at_its_fixed_size(tmp_path, weights, fmt):
    out = tmp_path / f"m.{fmt}.tflite"
    report = export_format(str(weights), str(out), fmt, size=SIZE, threads=1)
    assert report["psnr_db"] >= (40 if fmt == "tflite" else 30)
    if fmt == "tflite-int8":
        fp32 = tmp_path / "fp32.tflite"
        export_format(str(weights), str(fp32), "tflite", size=SIZE)
        assert out.stat().st_size < 0.6 * fp32.stat().st_size      # int8 weights
    x, s = inputs(h=SIZE[1], w=SIZE[0], seed=3)
    export_format(str(weights), str(tmp_path / "ref.onnx"), "onnx", size=SIZE)
    got, want = tflite_runner(out, 1)(x, s), onnx_runner(tmp_path / "ref.onnx")(x, s)
    assert got.shape == want.shape == (1, 3, SIZE[1], SIZE[0])
    assert np.abs(got - want).max() < (1e-3 if fmt == "tflite" else 0.1)


def test_a_model_that_fails_its_check_is_not_left_at_out(tmp_path, weights, monkeypatch):
    """The check is real: a writer that exports the wrong weights fails it, and nothing appears at --out."""
    import distill.export_formats as ef

    other = tmp_path / "other.pt"
    torch.manual_seed(5)
    save_checkpoint_weights(Student(StudentConfig(c1=8, c2=16, blocks=2, c3=16, blocks3=1)), other)
    real = ef.WRITERS["torchscript"]
    monkeypatch.setitem(ef.WRITERS, "torchscript", lambda job: real(ef.Job(str(other), job.staged, job.work,
                                                                           job.size, job.calib)))
    out = tmp_path / "bad.pt"
    with pytest.raises(ExportCheckError, match=r"bad\.pt: torchscript output is .* dB PSNR from ONNX Runtime fp32 "
                                               r"\(< 40 dB\); not written"):
        export_format(str(weights), str(out), "torchscript", size=SIZE)
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_errors_are_one_line(tmp_path, weights):
    def distill(*args):
        return subprocess.run([sys.executable, "-m", "distill", *map(str, args)], capture_output=True, text=True,
                              cwd=REPO, timeout=120)

    proc = distill("export", "--weights", weights, "--out", tmp_path / "x.tflite", "--format", "tflite",
                   "--size", "100x60")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "distill: error: --size 100x60: width and height must be positive multiples of 8"]
    proc = distill("export", "--weights", weights, "--out", tmp_path / "x.onnx", "--format", "onnx-int8",
                   "--calib", tmp_path / "nothing")
    assert proc.returncode == 2 and "--calib needs a folder with images or videos" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = distill("export", "--weights", weights, "--out", tmp_path / "ok.onnx", "--size", "96x64")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["format"] == "onnx"
    with pytest.raises(InputError):
        parse_size("640")
