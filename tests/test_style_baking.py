"""engines.style_baking through OnnxRuntimeEngine: a style used again runs in a session with the style baked in as a
constant, with the general session's output; styles that keep changing and mixed batches never bake.
(How much faster baking is lives in benchmarks/style_baking.py, not here.)"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import onnx
import pytest

from engines.onnxruntime import OnnxRuntimeEngine
from engines.style_baking import bake_style

REPO = Path(__file__).resolve().parent.parent
STUDENT = REPO / "streamer" / "models" / "student_live.onnx"
pytestmark = pytest.mark.skipif(not STUDENT.is_file(), reason="no bundled live student ONNX")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Two 160x96 frames of the bundled clip, NCHW float in 0..1."""
    with av.open(str(REPO / "streamer" / "assets" / "sample.mp4")) as c:
        rgb = [f.to_ndarray(format="rgb24", width=160, height=96) for i, f in enumerate(c.decode(video=0))
               if i % 40 == 0][:2]
    return np.stack(rgb).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def styles(encoder) -> list[np.ndarray]:
    return [encoder.encode(name).reshape(1, -1) for name in ("starry_night", "kandinsky", "hokusai_bridge")]


def test_a_style_used_twice_runs_baked_with_the_general_output(frames, styles):
    general = OnnxRuntimeEngine(STUDENT, threads=1, bake_style=False)
    engine = OnnxRuntimeEngine(STUDENT, threads=1)
    want = general.infer(frames, styles[0])

    first = engine.infer(frames, styles[0])
    assert engine.baked_styles == 0                       # a new style runs in the general session
    second = engine.infer(frames, styles[0])
    assert engine.baked_styles == 1                       # its second use bakes it
    third = engine.infer(frames, styles[0])
    assert engine.baked_styles == 1                       # and reuses it
    assert np.abs(first - want).max() == 0.0
    for got in (second, third):
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4           # the same network, only folded differently
    other = general.infer(frames, styles[1])
    assert np.abs(other - want).max() > 0.05              # the style still matters (not a stale bake)


def test_styles_that_keep_changing_and_mixed_batches_never_bake(frames, styles):
    engine = OnnxRuntimeEngine(STUDENT, threads=1)
    for t in np.linspace(0.0, 1.0, 12):                   # a blend from one style to another: a new vector each frame
        engine.infer(frames[:1], (1 - t) * styles[0] + t * styles[1])
    assert engine.baked_styles == 0
    mixed = np.concatenate(styles[:2])                    # one style per frame of the batch
    engine.infer(frames, mixed)
    engine.infer(frames, mixed)
    assert engine.baked_styles == 0


def test_styles_taking_turns_each_get_a_baked_session(frames, styles):
    engine = OnnxRuntimeEngine(STUDENT, threads=1)        # two clients of one server, one style each
    for _ in range(2):
        for style in styles[:2]:
            engine.infer(frames[:1], style)
    assert engine.baked_styles == 2


def test_baked_sessions_are_bounded(frames, styles):
    engine = OnnxRuntimeEngine(STUDENT, threads=1)
    for style in styles:
        engine.infer(frames[:1], style)
        engine.infer(frames[:1], style)
    assert engine.baked_styles == 2                       # the least recently used one was dropped


def test_bake_style_replaces_the_input_with_a_constant(styles):
    serialized = STUDENT.read_bytes()
    baked = onnx.load_from_string(bake_style(serialized, styles[0]))
    onnx.checker.check_model(baked)
    original = onnx.load_from_string(serialized)
    assert [i.name for i in baked.graph.input] == ["frame"]
    const = next(t for t in baked.graph.initializer if t.name == "style")
    assert np.array_equal(onnx.numpy_helper.to_array(const), styles[0].astype(np.float32))
    assert len(baked.graph.initializer) == len(original.graph.initializer) + 1
    assert [n.name for n in baked.graph.node] == [n.name for n in original.graph.node]
    assert baked.metadata_props == original.metadata_props and baked.opset_import == original.opset_import
    with pytest.raises(ValueError, match="no input named 'palette'"):
        bake_style(serialized, styles[0], input_name="palette")


def test_a_float16_style_input_gets_a_float16_constant(styles):
    model = onnx.load(str(STUDENT))
    next(i for i in model.graph.input if i.name == "style").type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    baked = onnx.load_from_string(bake_style(model.SerializeToString(), styles[0]))
    const = next(t for t in baked.graph.initializer if t.name == "style")
    assert const.data_type == onnx.TensorProto.FLOAT16
    assert np.allclose(onnx.numpy_helper.to_array(const), styles[0], atol=2e-3)


def test_a_model_that_cannot_be_baked_keeps_its_general_session(tmp_path, frames, styles):
    model = onnx.load(str(STUDENT))
    model.ir_version = 3                                   # there an initializer is an overridable input default
    old = tmp_path / "ir3.onnx"
    onnx.save(model, str(old))
    with pytest.raises(ValueError, match="IR version 3"):
        bake_style(old.read_bytes(), styles[0])
    engine = OnnxRuntimeEngine(old, threads=1)
    for _ in range(3):
        engine.infer(frames[:1], styles[0])
    assert engine.baked_styles == 0
