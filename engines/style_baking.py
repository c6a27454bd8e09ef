"""A student graph specialised to one style: its style input becomes a constant.

Why: in the live tier every FiLM layer is a Mul and an Add by per-channel vectors that the style MLP computes at run
time. ONNX Runtime cannot fold them into the convolutions while they are inputs, and those elementwise passes, with
the layout reorders they force around its blocked (NCHWc) convolutions, take about a third of a CPU frame. With the
style a constant, ORT's constant folding runs the style MLP once and its Conv+Mul/Add/Relu fusions absorb the FiLM
layers: the same output within float rounding, about 1.4x faster at 640x360 (benchmarks/RESULTS.md, "Style baking").

A style is baked the second time it is asked for among the last few new ones, so a style that changes every frame (a
blend, an animation) never pays for a session build (about 50 ms for the live tier), while two clients of one web
server taking turns get one each; a few baked sessions are kept.

The graph is edited at the protobuf wire level (one graph input out, one initializer in) rather than through the
`onnx` package: importing `onnx` takes over a second (its ml_dtypes extension), which a live run would feel as a
stall on its second frame, and every command as start-up time.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

STYLE_INPUT = "style"
MIN_IR_VERSION = 4          # from IR 4 on an initializer need not be a graph input: then it is a constant
_DTYPES = {1: np.float32, 10: np.float16}   # ONNX TensorProto.DataType -> numpy
# field numbers in onnx.proto
_MODEL_IR_VERSION, _MODEL_GRAPH = 1, 7
_GRAPH_INITIALIZER, _GRAPH_INPUT = 5, 11
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA = 1, 2, 8, 9
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def bake_style(model: bytes, style: np.ndarray, input_name: str = STYLE_INPUT) -> bytes:
    """The serialized ONNX `model` with its input `input_name` replaced by the constant `style`, given in that
    input's shape (a student's: [1, 100]) and cast to its element type."""
    out, baked = bytearray(), False
    for number, wire, value, raw in _fields(model):
        if number == _MODEL_IR_VERSION and wire == _VARINT and value < MIN_IR_VERSION:
            raise ValueError(f"ONNX IR version {value} < {MIN_IR_VERSION}: an initializer there is an input default")
        if number == _MODEL_GRAPH and wire == _LEN:
            out += _len_field(_MODEL_GRAPH, _bake_graph(value, style, input_name))
            baked = True
        else:
            out += raw
    if not baked:
        raise ValueError("not an ONNX model (no graph)")
    return bytes(out)


def _bake_graph(graph: bytes, style: np.ndarray, input_name: str) -> bytes:
    kept, elem_type = bytearray(), None
    for number, wire, value, raw in _fields(graph):
        if number == _GRAPH_INPUT and wire == _LEN and _string_field(value, 1) == input_name:
            elem_type = _input_elem_type(value)
            continue
        kept += raw
    if elem_type is None:
        raise ValueError(f"the model has no input named {input_name!r}")
    if elem_type not in _DTYPES:
        raise ValueError(f"input {input_name!r} has ONNX element type {elem_type}; only float32 and float16 are baked")
    array = np.ascontiguousarray(np.asarray(style).astype(np.dtype(_DTYPES[elem_type]).newbyteorder("<")))
    tensor = b"".join(_tag(_TENSOR_DIMS, _VARINT) + _varint(d) for d in array.shape)
    tensor += _tag(_TENSOR_DATA_TYPE, _VARINT) + _varint(elem_type)
    tensor += _len_field(_TENSOR_NAME, input_name.encode()) + _len_field(_TENSOR_RAW_DATA, array.tobytes())
    return bytes(kept) + _len_field(_GRAPH_INITIALIZER, tensor)


def _input_elem_type(value_info: bytes) -> int | None:
    """ValueInfoProto.type (2) -> TypeProto.tensor_type (1) -> elem_type (1)."""
    message: bytes | None = value_info
    for number in (2, 1):
        message = next((v for n, w, v, _ in _fields(message) if n == number and w == _LEN), None)
        if message is None:
            return None
    return next((v for n, w, v, _ in _fields(message) if n == 1 and w == _VARINT), None)


def _string_field(message: bytes, number: int) -> str | None:
    return next((v.decode() for n, w, v, _ in _fields(message) if n == number and w == _LEN), None)


def _fields(buf: bytes) -> Iterator[tuple[int, int, object, bytes]]:
    """(field number, wire type, value: int for varints, bytes for length-delimited, else None, the raw field)."""
    i = 0
    while i < len(buf):
        start = i
        tag, i = _read_varint(buf, i)
        number, wire = tag >> 3, tag & 7
        value = None
        if wire == _VARINT:
            value, i = _read_varint(buf, i)
        elif wire == _LEN:
            n, i = _read_varint(buf, i)
            value = bytes(buf[i:i + n])
            i += n
        elif wire in (_I64, _I32):
            i += 8 if wire == _I64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated protobuf message")
        yield number, wire, value, bytes(buf[start:i])


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated protobuf varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


class BakedSessions:
    """Sessions of one model with a style baked in, built on a style's second use among the last `recent` new
    styles; the least recently used session is dropped beyond `capacity`. A model that cannot be baked (an old IR, a
    style input of another type) keeps running in the general session."""

    def __init__(self, model_path: str | Path, open_session: Callable[[bytes], object], capacity: int = 2,
                 recent: int = 8) -> None:
        self._serialized = Path(model_path).read_bytes()   # read now: the file may be gone by the first bake
        self._open = open_session
        self._capacity = capacity
        self._recent = recent
        self._seen: OrderedDict[bytes, None] = OrderedDict()   # styles asked for once, not baked yet
        self._sessions: OrderedDict[bytes, object] = OrderedDict()
        self._failed = False
        self._lock = threading.Lock()   # one engine may serve several threads (the web server's clients, tiles)

    def session_for(self, style: np.ndarray):
        """The baked session for a batch's style rows, or None: rows differ, or this style is new (the caller runs
        the general session)."""
        style = np.asarray(style, np.float32).reshape(-1, style.shape[-1])
        if self._failed or (len(style) > 1 and not (style == style[0]).all()):
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
        try:
            session = self._open(bake_style(self._serialized, style))
        except Exception:  # noqa: BLE001 - a graph that cannot be baked, or that ORT refuses baked: run it unbaked
            self._failed = True
            return None
        self._sessions[key] = session
        if len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)
        return session

    def __len__(self) -> int:
        return len(self._sessions)
