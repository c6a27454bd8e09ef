"""A student graph specialised to one style: its style input becomes a constant.

Why: in the live tier every FiLM layer is a Mul and an Add by per-channel vectors that the style MLP computes at run
time. ONNX Runtime cannot fold them into the convolutions while they are inputs, and those elementwise passes, with
the layout reorders they force around its blocked (NCHWc) convolutions, take about a third of a CPU frame. With the
style a constant, ORT's constant folding runs the style MLP once and its Conv+Mul/Add/Relu fusions absorb the FiLM
layers: the same output within float rounding, about 1.4x faster at 640x360 (benchmarks/RESULTS.md, "Style baking").

A style is baked the second time it is asked for among the last few new ones, so a style that changes every frame (a
blend, an animation) never pays for a session build (about 50 ms for the live tier), while two clients of one web
server taking turns get one each; a few baked sessions are kept.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

STYLE_INPUT = "style"


def bake_style(model: onnx.ModelProto, style: np.ndarray, input_name: str = STYLE_INPUT) -> bytes:
    """The serialized model with `input_name` replaced by the constant `style`, given in that input's shape (a
    student's: [1, 100])."""
    baked = onnx.ModelProto()
    baked.CopyFrom(model)
    found = [i for i in baked.graph.input if i.name == input_name]
    if not found:
        raise ValueError(f"the model has no input named {input_name!r}")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(found[0].type.tensor_type.elem_type)   # a float16 graph: float16
    kept = [i for i in baked.graph.input if i.name != input_name]
    del baked.graph.input[:]
    baked.graph.input.extend(kept)
    baked.graph.initializer.append(numpy_helper.from_array(np.asarray(style).astype(dtype), input_name))
    return baked.SerializeToString()


class BakedSessions:
    """Sessions of one model with a style baked in, built on a style's second use among the last `recent` new
    styles; the least recently used session is dropped beyond `capacity`."""

    def __init__(self, model_path: str | Path, open_session: Callable[[bytes], object], capacity: int = 2,
                 recent: int = 8) -> None:
        self._serialized = Path(model_path).read_bytes()   # read now: the file may be gone by the first bake
        self._open = open_session
        self._capacity = capacity
        self._model: onnx.ModelProto | None = None   # parsed on the first bake
        self._sessions: OrderedDict[bytes, object] = OrderedDict()
        self._recent = recent
        self._seen: OrderedDict[bytes, None] = OrderedDict()   # styles asked for once, not baked yet
        self._lock = threading.Lock()   # one engine may serve several threads (the web server's clients, tiles)

    def session_for(self, style: np.ndarray):
        """The baked session for a batch's style rows, or None: rows differ, or this style is new (the caller runs
        the general session)."""
        style = np.asarray(style, np.float32).reshape(-1, style.shape[-1])
        if len(style) > 1 and not (style == style[0]).all():
            return None
        with self._lock:
            return self._session_for(style[:1], style[0].tobytes())

    def _session_for(self, style: np.ndarray, key: bytes):
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        if key not in self._seen:
            self._seen[key] = None
            if len(self._seen) > self._recent:
                self._seen.popitem(last=False)
            return None
        del self._seen[key]
        if self._model is None:
            self._model = onnx.load_from_string(self._serialized)
        session = self._open(bake_style(self._model, style))
        self._sessions[key] = session
        if len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)
        return session

    def __len__(self) -> int:
        return len(self._sessions)
