"""`distill export`: student weights -> ONNX with the contract every engine relies on.

Contract: inputs `frame` [N,3,H,W] float32 RGB 0..1 and `style` [N,100] float32,
output `stylized` [N,3,H,W] float32 0..1; N, H, W dynamic; opset 17.  A network that carries state from frame to
frame (the high-quality tier's whole-frame moments) has one more input and output, `state` [1,S] and `keep` [1] in,
`state_out` [1,S] out. They have defaults (initializers of the same name): no state (zeros), and the network's own
`keep`. A caller that feeds only frame and style gets each frame normalized by itself; one that feeds each call's
`state_out` back as the next call's `state` gets the carried moments.  `--fp16`
writes a strongly-typed FP16 graph (fp16 weights and activations, fp32 I/O),
which TensorRT 10.12+/11 builds without the removed FP16 builder flag.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch

from engines.carried_state import start_afresh
from engines.fp16_onnx import convert_to_fp16
from engines.onnxruntime import make_session
from engines.student import STYLE_DIM, load_weights
from streamer.errors import InputError, brief

OPSET = 17


def export(weights: str, out: str, fp16: bool = False, check_tolerance: float = 1e-4) -> dict:
    if not Path(weights).is_file():
        raise InputError(f"{weights}: no such weights file (`distill train` writes OUT/student.pt)")
    try:
        model = load_weights(weights)
    except Exception as exc:   # noqa: BLE001 - pickle, zip and key errors alike: not a student's weights
        raise InputError(f"{weights}: not student weights ({brief(exc)})") from exc
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame, style = torch.rand(1, 3, 64, 96), torch.rand(1, STYLE_DIM)
    fp32_path = out_path if not fp16 else out_path.with_suffix(".fp32.onnx")
    stateful = getattr(model.config, "frame_moments", False)
    net, args, names, outputs = model, (frame, style), ["frame", "style"], ["stylized"]
    if stateful:
        net, names, outputs = _StepGraph(model), names + ["state", "keep"], outputs + ["state_out"]
        args = (frame, style, torch.zeros(1, model.state_size()), torch.zeros(1))
    with warnings.catch_warnings():
        # the crop back to the input's rows (engines.student.EDGE_PAD) is a Slice with a dynamic end, which the
        # exporter reports it cannot constant-fold: expected, and not for the user's terminal
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(net, args, str(fp32_path), input_names=names,
                          output_names=outputs, dynamic_axes={"frame": {0: "N", 2: "H", 3: "W"}, "style": {0: "N"},
                                                              "stylized": {0: "N", 2: "H", 3: "W"}},
                          opset_version=OPSET, dynamo=False)
    graph = onnx.load(str(fp32_path))
    if stateful:
        _default_state(graph, model.state_size(), model.config.keep)
        onnx.save(graph, str(fp32_path))
    onnx.checker.check_model(graph, full_check=True)
    max_err = _compare_with_torch(model, fp32_path)
    if max_err > check_tolerance:
        raise RuntimeError(f"{fp32_path}: ONNX Runtime differs from PyTorch by {max_err:.2e} > {check_tolerance}")
    result = {"onnx": str(fp32_path), "opset": OPSET, "max_abs_diff_vs_torch": max_err,
              "parameters": sum(p.numel() for p in model.parameters())}
    if fp16:
        onnx.save(convert_to_fp16(graph), str(out_path))
        onnx.checker.check_model(str(out_path), full_check=True)
        fp32_path.unlink()
        result.update(onnx=str(out_path), precision="fp16")
    return result


class _StepGraph(torch.nn.Module):
    """The stateful network with its state as explicit inputs and outputs: what the ONNX graph runs."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame, style, state, keep):
        return self.model.step(frame, style, state, keep)


def _default_state(graph: onnx.ModelProto, size: int, keep: float) -> None:
    """Defaults for `state` (zeros: no previous frame) and `keep` (an initializer named like an input is its default
    in ONNX since IR 4): callers that know nothing of the state run the graph with frame and style alone."""
    for name, value in (("state", np.zeros([1, size], np.float32)), ("keep", np.array([keep], np.float32))):
        graph.graph.initializer.append(onnx.numpy_helper.from_array(value, name))


def _compare_with_torch(model, path: Path) -> float:
    """ORT vs PyTorch on a batch of 2 at an odd size, so the dynamic axes are exercised too."""
    frame, style = torch.rand(2, 3, 72, 104), torch.randn(2, STYLE_DIM)
    start_afresh(model)   # a first frame, as the graph's default state is
    with torch.no_grad():
        ref = model(frame, style).numpy()
    got = make_session(path).run(["stylized"], {"frame": frame.numpy(), "style": style.numpy()})[0]
    return float(np.abs(ref - got).max())


def export_replacing(weights: str, out: str | os.PathLike) -> dict:
    """`export` to a temporary file beside ``out``, renamed into place only once checked against PyTorch: whoever
    reads ``out`` (a running engine, the tuned-styles manifest) never sees a half-written or unchecked model."""
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.streamer-tmp-{os.getpid()}.onnx")
    try:
        report = export(weights, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {**report, "path": str(out)}
