"""The optional state of a student graph that carries something from frame to frame (the high-quality tier's
whole-frame moments, engines/student_hq.py): its names, and the graph with that state made a plain input.

Why a plain input: `distill export` gives `state` a default (an initializer of the same name: zeros, no previous
frame), so callers that know only frame and style still run the graph. ONNX Runtime lets such an input be fed; the
TensorRT parser imports it as a constant, and ONNX Runtime Web refuses to be fed anything outside the graph's
required inputs. Those two get this variant, where `state` must be fed (zeros on a first frame)."""
from __future__ import annotations

import os

import onnxruntime as ort

STATE_INPUT, STATE_OUTPUT = "state", "state_out"


def start_afresh(runner: object) -> None:
    """The next frame `runner` (an engine or a network) sees starts a new video: a stateful one (`reset_state`)
    drops what it carries; any other has nothing to drop."""
    reset = getattr(runner, "reset_state", None)
    if reset is not None:
        reset()


def state_as_input(onnx_path: str | os.PathLike) -> bytes:
    """The serialized ONNX, with a stateful student's `state` default dropped; other graphs come back as they are."""
    import onnx   # imported here: only building an engine or serving the browser page needs it

    model = onnx.load(str(onnx_path))
    inputs = {i.name for i in model.graph.input}
    kept = [t for t in model.graph.initializer if not (t.name == STATE_INPUT and t.name in inputs)]
    if len(kept) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return model.SerializeToString()


def state_size(onnx_path: str | os.PathLike) -> int:
    """Length of the graph's carried state ([1, S]), or 0 for a graph that carries none. Read through ONNX Runtime,
    which the caller has loaded anyway: `onnx` takes over a second to import (tests/test_structure.py)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception:   # noqa: BLE001 - not a graph ONNX Runtime loads: whoever runs it reports why
        return 0
    return next((int(i.shape[-1]) for i in session.get_overridable_initializers() if i.name == STATE_INPUT), 0)
