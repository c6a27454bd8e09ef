"""distill.quantize: the shipped student quantized on a few tiny frames of the bundled clip is a valid QDQ ONNX that
ONNX Runtime runs all in int8, it stays within its PSNR check against fp32, and a model that fails the check is gone."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import onnx
import pytest

from distill.quantize import (METADATA_KEY, MIN_PSNR_DB, QuantizationCheckError, conv_kinds, open_session,
                              quantize_student, runtime_census, to_input, to_style)

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "streamer" / "models"
STUDENT = next((p for p in (MODELS / "student_live.onnx", MODELS / "student.onnx") if p.is_file()), None)
pytestmark = pytest.mark.skipif(STUDENT is None, reason="no bundled student ONNX")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Four 96x54 frames of the bundled clip (54 is not a multiple of 8: the padding path is exercised too)."""
    with av.open(str(REPO / "streamer" / "assets" / "sample.mp4")) as c:
        return [f.to_ndarray(format="rgb24", width=96, height=54) for i, f in enumerate(c.decode(video=0))
                if i % 60 == 0][:4]


@pytest.fixture(scope="module")
def styles(encoder) -> list[np.ndarray]:
    return [encoder.encode("starry_night"), encoder.encode("kandinsky")]


def test_quantized_student_is_valid_qdq_runs_all_convs_in_int8_and_passes_its_check(tmp_path, frames, styles):
    out = tmp_path / "int8.onnx"
    report = quantize_student(STUDENT, out, frames[:2], styles, check_frames=frames[2:], threads=1)

    assert out.is_file() and report["passed"]
    assert report["psnr_db"] >= MIN_PSNR_DB and len(report["psnr_per_frame_db"]) == 2
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert {p.key: p.value for p in model.metadata_props}[METADATA_KEY] == "NhwcTransformer"
    assert [p.name for p in out.parent.iterdir()] == ["int8.onnx"]          # no temporary files left

    session = open_session(out, threads=1)                                   # reads the metadata: no NhwcTransformer
    y = session.run(["stylized"], {"frame": to_input(frames[0]), "style": to_style(styles[0])})[0]
    assert y.shape == (1, 3, 56, 96) and y.dtype == np.float32 and 0.0 <= y.min() and y.max() <= 1.0

    census = runtime_census(out)                                             # what ONNX Runtime actually runs
    n_convs = sum(len(v) for v in conv_kinds(STUDENT).values())
    assert census.get("QLinearConv") == n_convs and census.get("Conv", 0) == 0
    assert census.get("Transpose", 0) == 0                                   # NCHW int8, no layout shuffles


def test_a_model_that_fails_its_check_is_removed(tmp_path, frames, styles):
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"stale")                                                # an older file at the same path goes too
    with pytest.raises(QuantizationCheckError) as err:
        quantize_student(STUDENT, out, frames[:1], styles[:1], min_psnr_db=99.0, threads=1)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert err.value.report["passed"] is False and err.value.report["psnr_db"] < 99.0


def test_int8_activations_leave_the_convs_with_two_consumers_in_float(tmp_path, frames, styles):
    """The quantizer's defaults (int8 activations): the convs whose input also feeds a skip or the colour branch
    stay float Convs between DequantizeLinear and QuantizeLinear on x86 (why the quick try was slower than fp32)."""
    out = tmp_path / "s8.onnx"
    quantize_student(STUDENT, out, frames[:1], styles[:1], min_psnr_db=0.0, threads=1, activation_type="QInt8",
                     per_channel=False, reduce_range=False)
    census = runtime_census(out)
    convs = sum(1 for n in onnx.load(str(STUDENT)).graph.node if n.op_type == "Conv")
    # the v1 student measured 6 float + 15 int8 convs; the v2 live tier (its 1/8 branch adds convs) 9 + the rest
    assert census.get("Conv", 0) >= 6 and census.get("QLinearConv", 0) >= 1
    assert census.get("Conv", 0) + census.get("QLinearConv", 0) == convs
