"""fp32 ONNX -> strongly-typed FP16 ONNX with fp32 inputs and outputs (pure ``onnx``, no ModelOpt).

TensorRT 10.12 deprecated and 11 removed ``BuilderFlag.FP16``: precision now comes
from the graph's own types (strong typing).  This does what ModelOpt AutoCast's
``keep_io_types=True`` does for our small convolutional student:

- the *data path* (every float tensor that depends on a graph input, through
  anything but ``Shape``/``Size``) is computed in float16: its initializers and
  ``Constant`` values become float16, ``Cast(to=FLOAT)`` on it becomes
  ``Cast(to=FLOAT16)``;
- graph inputs and outputs stay float32, with one ``Cast`` at each boundary, so
  the engine and the ONNX keep the student contract;
- operands that ONNX requires to be float32 whatever the data type (``Resize``
  scales) and shape arithmetic off the data path stay float32;
- a float32 tensor computed off the data path that a data-path node consumes
  gets a ``Cast`` to float16 in front of that node.

The result passes ``onnx.checker`` (full check, with shape inference) and runs on
ONNX Runtime CPU, which is how it is tested without a GPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
# (op_type, input index) whose operand must stay float32 whatever the data type.
FP32_ONLY_INPUTS = {("Resize", 2), ("Upsample", 1)}
# Ops whose outputs are shapes or sizes, never data.
SHAPE_OPS = {"Shape", "Size"}
FP16_MAX = float(np.finfo(np.float16).max)


def _to_fp16_tensor(t: TensorProto, name: str | None = None) -> TensorProto:
    arr = numpy_helper.to_array(t).astype(np.float32)
    if np.abs(arr).max(initial=0.0) > FP16_MAX:
        raise ValueError(f"{t.name or name}: value beyond the float16 range ({np.abs(arr).max():.3g})")
    return numpy_helper.from_array(arr.astype(np.float16), name if name is not None else t.name)


def _data_path(graph: onnx.GraphProto, float_inputs: set[str]) -> set[str]:
    """Names of the float tensors that depend on a float graph input (nodes are in topological order)."""
    data = set(float_inputs)
    for node in graph.node:
        if node.op_type in SHAPE_OPS:
            continue
        if any(i in data for i in node.input if i):
            if node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                if to not in (FLOAT, FLOAT16):
                    continue
            data.update(o for o in node.output if o)
    return data


def is_fp16_model(model: onnx.ModelProto) -> bool:
    """True when the model's weights are float16 (already converted). Initializers that are graph inputs (a
    stateful student's `state` and `keep` defaults) stay float32 like every graph input, so they do not count."""
    inputs = {i.name for i in model.graph.input}
    kinds = {t.data_type for t in model.graph.initializer if t.data_type in (FLOAT, FLOAT16) and t.name not in inputs}
    return FLOAT16 in kinds and FLOAT not in kinds


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a new model computing in float16 with float32 graph inputs and outputs."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    float_inputs = {i.name for i in g.input if i.name not in inits and i.type.tensor_type.elem_type == FLOAT}
    data = _data_path(g, float_inputs)
    # Cast each float32 graph input to float16 once; consumers read the cast.
    in_cast = {name: f"{name}__fp16" for name in float_inputs}
    out_names = {o.name for o in g.output if o.type.tensor_type.elem_type == FLOAT}
    out_rename = {name: f"{name}__fp16" for name in out_names if name in data}
    producers = {o: n for n in g.node for o in n.output}
    constants = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    elem_types = _elem_types(model)

    fp16_inits: dict[str, str] = {}     # fp32 initializer name -> its fp16 copy
    fp16_consts: dict[str, str] = {}    # Constant node output -> its fp16 twin
    new_inits: list[TensorProto] = []
    new_nodes: list[onnx.NodeProto] = [
        helper.make_node("Cast", [name], [cast], to=FLOAT16, name=f"{name}__to_fp16") for name, cast in in_cast.items()]
    extra_casts: dict[str, str] = {}

    def fp16_operand(name: str) -> str:
        """The float16 name to read a float32 operand of a data-path node under."""
        if name in inits and inits[name].data_type == FLOAT:
            if name not in fp16_inits:
                fp16_inits[name] = f"{name}__fp16"
                new_inits.append(_to_fp16_tensor(inits[name], fp16_inits[name]))
            return fp16_inits[name]
        if name in constants:
            if name not in fp16_consts:
                attr = next(a for a in constants[name].attribute if a.name == "value")
                if attr.t.data_type != FLOAT:
                    return name
                fp16_consts[name] = f"{name}__fp16"
                new_nodes.append(helper.make_node("Constant", [], [fp16_consts[name]], name=f"{name}__fp16",
                                                  value=_to_fp16_tensor(attr.t, f"{name}__fp16")))
            return fp16_consts[name]
        if name not in extra_casts:     # computed off the data path (shape arithmetic): cast at the use
            extra_casts[name] = f"{name}__cast_fp16"
            new_nodes.append(helper.make_node("Cast", [name], [extra_casts[name]], to=FLOAT16,
                                              name=f"{name}__cast_fp16"))
        return extra_casts[name]

    is_float = lambda name: _is_float(name, inits, constants, producers, elem_types)  # noqa: E731
    for node in g.node:
        if node.op_type not in SHAPE_OPS and any(i in data for i in node.input if i):
            _retype_node(node, data, in_cast, out_rename, fp16_operand, is_float)
        new_nodes.append(node)
    for name, renamed in out_rename.items():
        new_nodes.append(helper.make_node("Cast", [renamed], [name], to=FLOAT, name=f"{name}__to_fp32"))
    return _finish(model, new_nodes, new_inits)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element types from shape inference, so integer operands (Reshape's shape, Slice's starts) are never cast."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]
            if v.type.tensor_type.elem_type}


def _retype_node(node: onnx.NodeProto, data: set[str], in_cast: dict[str, str], out_rename: dict[str, str],
                 fp16_operand, is_float) -> None:
    """A data-path node reads float16 operands, casts to float16 instead of float32, and writes renamed outputs."""
    for k, name in enumerate(node.input):
        if not name or (node.op_type, k) in FP32_ONLY_INPUTS:
            continue
        if name in in_cast:
            node.input[k] = in_cast[name]
        elif name not in data and is_float(name):
            node.input[k] = fp16_operand(name)
    if node.op_type == "Cast":
        for a in node.attribute:
            if a.name == "to" and a.i == FLOAT:
                a.i = FLOAT16
    for k, name in enumerate(node.output):
        if name in out_rename:
            node.output[k] = out_rename[name]


def _finish(model: onnx.ModelProto, new_nodes: list[onnx.NodeProto], new_inits: list[TensorProto]) -> onnx.ModelProto:
    """Drop what nothing reads, sort the nodes, redo shape inference and check the result."""
    g = model.graph
    used = {i for n in new_nodes for i in n.input} | {o.name for o in g.output}
    new_nodes = [n for n in new_nodes if n.op_type != "Constant" or n.output[0] in used]
    kept = [t for t in g.initializer if t.name in used or t.name in {i.name for i in g.input}]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    g.node.clear()
    g.node.extend(_toposort(new_nodes, {i.name for i in g.input} | {t.name for t in g.initializer}))
    g.value_info.clear()                # stale fp32 annotations; shape inference redoes them
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _is_float(name, inits, constants, producers, elem_types) -> bool:
    if name in elem_types:
        return elem_types[name] == FLOAT
    if name in inits:
        return inits[name].data_type == FLOAT
    if name in constants:
        return next(a for a in constants[name].attribute if a.name == "value").t.data_type == FLOAT
    node = producers.get(name)
    if node is None:
        return False
    if node.op_type == "Cast":
        return next(a.i for a in node.attribute if a.name == "to") == FLOAT
    return node.op_type not in SHAPE_OPS   # anything else off the data path: assume float (a Cast is harmless)


def _toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Order nodes so every input is produced first (new Constant/Cast nodes were appended out of order)."""
    done, out, pending = set(available) | {""}, [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in done for i in n.input):
                out.append(n)
                done.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at node {rest[0].name or rest[0].op_type}")
        pending = rest
    return out


def convert_file(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """Convert ``src`` and write it to ``dst`` (default: ``<stem>.fp16.onnx`` beside it); returns the path."""
    src = Path(src)
    dst = Path(dst) if dst else src.with_name(f"{src.stem}.fp16.onnx")
    model = onnx.load(str(src))
    if not is_fp16_model(model):
        model = convert_to_fp16(model)
    tmp = dst.with_name(dst.name + ".streamer-tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return dst
