"""Backend selection and model resolution: real engines, clear reasons for what cannot run here."""
from __future__ import annotations

import numpy as np
import pytest

from engines.base import EngineError
from engines.select import backend_report, choose_backend, create_engine
from streamer.errors import InputError
from streamer.model_registry import resolve_model
from streamer.processing import processing_size


def test_backend_report_lists_every_backend_with_a_reason():
    report = backend_report()
    assert [name for name, _, _ in report] == ["tensorrt", "torch", "onnxruntime"]
    assert dict((n, ok) for n, ok, _ in report)["onnxruntime"] is True
    assert all(isinstance(reason, str) and reason for _, _, reason in report)


def test_teacher_and_identity_resolve_to_cpu_engines():
    assert choose_backend("auto", "teacher") == "onnxruntime"
    teacher = create_engine("auto", resolve_model("teacher"))
    assert (teacher.info.model, teacher.info.max_side) == ("teacher", 384)
    out = teacher.infer(np.full((1, 3, 40, 48), 0.5, np.float32), np.zeros((1, 100), np.float32))
    assert out.shape == (1, 3, 40, 48)
    teacher.close()
    assert create_engine("onnxruntime", resolve_model("identity")).info.backend == "identity"


def test_unavailable_backend_explains_itself():
    ok = dict((n, ok) for n, ok, _ in backend_report())
    if ok["tensorrt"]:
        pytest.skip("TensorRT is available here")
    with pytest.raises(EngineError, match="tensorrt"):
        create_engine("tensorrt", resolve_model("teacher"))


def test_model_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        resolve_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(InputError, match="unknown model"):
        resolve_model("resnet")
    assert resolve_model("teacher").kind == "teacher"


def test_processing_size_respects_engine_limits():
    teacher = create_engine("onnxruntime", resolve_model("teacher")).info
    identity = create_engine("onnxruntime", resolve_model("identity")).info
    assert processing_size(640, 360, None, identity) == (640, 360)          # default 720: native 640x360
    assert processing_size(1920, 1080, None, identity) == (720, 405)
    assert processing_size(640, 360, None, teacher) == (384, 216)           # teacher caps at 384
    assert processing_size(641, 359, 2000, teacher) == (384, 215)
    with pytest.raises(InputError, match="smaller than the network needs"):
        processing_size(20, 20, None, identity)


def test_gpu_engines_default_to_native_resolution_up_to_4k():
    from engines.base import EngineInfo

    gpu = EngineInfo(backend="torch", model="student-live", device="cuda:0 NVIDIA H100")
    cpu = EngineInfo(backend="onnxruntime", model="student-live", device="cpu")
    assert processing_size(1920, 1080, None, gpu) == (1920, 1080)         # GPU: native
    assert processing_size(7680, 4320, None, gpu) == (3840, 2160)         # ... up to 4K
    assert processing_size(1920, 1080, None, cpu) == (720, 405)           # CPU: the real-time default
    assert processing_size(1920, 1080, 0, cpu) == (1920, 1080)            # --max-size 0: native anywhere
