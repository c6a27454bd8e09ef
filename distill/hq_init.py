"""`distill hq-init`: the high-quality student's starting weights, taken from the teacher.

Every conv and every style-to-(gamma, beta) projection is copied from `arbitrary_transform.onnx` (int8, dequantized).
What the teacher has and the student must not is the per-frame mean and variance of each normalized layer; they are
replaced by linear functions of the style vector, fitted here (ridge regression) to the teacher's own moments
averaged over photos, measured with the student running in instance-norm mode, i.e. as the teacher. Distillation
(`distill train --arch hq --init ...`) then teaches the rest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from distill.data import PreparedSet
from distill.style_space import _dequantize
from engines.student import save_checkpoint_weights
from engines.onnxruntime import teacher_model_dir
from engines.student_hq import StudentHQ, StudentHQConfig

STYLE = "style_params/transformer/{layer}/StyleNorm/{which}/{part}"


def teacher_weights() -> dict[str, np.ndarray]:
    """Dequantized float32 constants of the teacher's transform graph, by initializer name."""
    graph = onnx.load(str(teacher_model_dir() / "arbitrary_transform.onnx")).graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in consts:
            axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
            out[node.input[0]] = _dequantize(consts[node.input[0]], consts[node.input[1]], consts[node.input[2]], axis)
    return out


def norm_layers(model: StudentHQ) -> list[str]:
    """The teacher's names for the student's StyleNorms, in `model.norms()` order."""
    names = [f"residual/residual{i + 1}/conv{j}" for i in kept_blocks(len(model.residual)) for j in (1, 2)]
    return names + [f"expand/conv{k}/conv" for k in (1, 2, 3)]


TEACHER_BLOCKS, TEACHER_KERNEL = 5, 9


def kept_blocks(blocks: int) -> list[int]:
    """Which of the teacher's residual blocks a pruned student keeps: spread evenly, first and last included."""
    return np.linspace(0, TEACHER_BLOCKS - 1, blocks).round().astype(int).tolist()


def _crop_kernel(w: np.ndarray, kernel: int) -> np.ndarray:
    """The centre kernel x kernel taps of a 9x9 conv, rescaled per output channel so that a flat input gives what
    it gave (the part of the response distillation would otherwise have to relearn first), within 2x either way."""
    c = (w.shape[-1] - kernel) // 2
    crop = w[..., c:c + kernel, c:c + kernel]
    full, part = w.sum(axis=(1, 2, 3), keepdims=True), crop.sum(axis=(1, 2, 3), keepdims=True)
    usable = np.abs(part) > 1e-3 * np.abs(w).sum(axis=(1, 2, 3), keepdims=True)
    return crop * np.where(usable, np.clip(full / np.where(usable, part, 1), 0.5, 2.0), 1.0)


def from_teacher(window: int = 0, keep: float | None = None, blocks: int = TEACHER_BLOCKS,
                 kernel: int = TEACHER_KERNEL) -> StudentHQ:
    """A StudentHQ holding the teacher's weights; its moment predictors are still zero (see `fit_moments`), or with
    `window` it measures the moments locally and needs none, or with `keep` it carries whole-frame moments over
    time (engines/student_hq.py). Fewer `blocks` or a smaller outer `kernel` prune it: a start for a cheaper
    student that distillation then repairs (`kept_blocks`, `_crop_kernel`)."""
    w = teacher_weights()
    eps = float(w["transformer/residual/residual1/conv1/StyleNorm/batchnorm/add/y"].reshape(-1)[0])
    model = StudentHQ(StudentHQConfig(eps=eps, window=window, frame_moments=keep is not None,
                                      keep=0.98 if keep is None else keep, blocks=blocks, kernel=kernel))
    t = lambda name: torch.from_numpy(np.ascontiguousarray(w[name], dtype=np.float32))  # noqa: E731
    outer = lambda name: torch.from_numpy(np.ascontiguousarray(_crop_kernel(w[name], kernel), dtype=np.float32))  # noqa: E731
    with torch.no_grad():
        for k, conv in enumerate(model.contract):
            name = f"transformer/contract/conv{k + 1}/weights"
            conv.weight.copy_(outer(name) if k == 0 else t(name))   # the 9x9 kept whole is the teacher's exactly
            conv.bias.copy_(t(f"transformer/contract/conv{k + 1}/Conv2D_bias"))
        for block, i in zip(model.residual, kept_blocks(blocks)):
            block.conv1.weight.copy_(t(f"transformer/residual/residual{i + 1}/conv1/weights"))
            block.conv2.weight.copy_(t(f"transformer/residual/residual{i + 1}/conv2/weights"))
        for k, conv in enumerate(model.expand):
            name = f"transformer/expand/conv{k + 1}/conv/weights"
            conv.weight.copy_(outer(name) if k == 2 else t(name))
            if conv.bias is not None:
                conv.bias.copy_(t(f"transformer/expand/conv{k + 1}/conv/Conv2D_bias"))
        for layer, norm in zip(norm_layers(model), model.norms()):
            for which, linear in (("Conv", norm.beta), ("Conv_1", norm.gamma)):
                linear.weight.copy_(t(STYLE.format(layer=layer, which=which, part="weights"))[:, :, 0, 0])
                linear.bias.copy_(t(STYLE.format(layer=layer, which=which, part="Conv2D_bias")))
    return model


def measure_moments(model: StudentHQ, photos: torch.Tensor, styles: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per norm: the teacher's moments (mean, log std) for each style, averaged over `photos` [P,3,H,W]."""
    sums: list[list[torch.Tensor]] = [[] for _ in model.norms()]

    def recorder(index: int):
        def hook(module, args, _out):
            x = args[0]
            mean = x.mean(dim=(2, 3))
            sums[index].append(torch.stack([mean, 0.5 * torch.log(x.var(dim=(2, 3), unbiased=False) + module.eps)]))
        return hook

    hooks = [norm.register_forward_hook(recorder(i)) for i, norm in enumerate(model.norms())]
    model.set_instance_norm(True)
    try:
        with torch.no_grad():
            for s in styles:
                model(photos, s[None].expand(len(photos), -1))
    finally:
        model.set_instance_norm(False)
        for h in hooks:
            h.remove()
    # each entry [2, P, C] per style -> mean over photos -> [S, C] for mean and for log std
    return [(torch.stack([e[0].mean(0) for e in per]).numpy(), torch.stack([e[1].mean(0) for e in per]).numpy())
            for per in sums]


def fit_moments(model: StudentHQ, styles: np.ndarray, moments: list[tuple[np.ndarray, np.ndarray]],
                ridge: float = 1e-2) -> float:
    """Ridge-fit each norm's mean and log-std predictors to the measured moments; returns the mean relative residual."""
    x = np.concatenate([styles, np.ones((len(styles), 1), np.float32)], axis=1).astype(np.float64)
    gram = x.T @ x + ridge * len(x) * np.diag([1.0] * styles.shape[1] + [0.0])
    residuals = []
    with torch.no_grad():
        for norm, (means, log_stds) in zip(model.norms(), moments):
            for linear, y in ((norm.mean, means), (norm.log_std, log_stds)):
                coef = np.linalg.solve(gram, x.T @ y.astype(np.float64))     # [101, C]
                linear.weight.copy_(torch.from_numpy(coef[:-1].T.astype(np.float32)))
                linear.bias.copy_(torch.from_numpy(coef[-1].astype(np.float32)))
                fit = x @ coef
                residuals.append(float(np.linalg.norm(fit - y) / max(np.linalg.norm(y - y.mean(0)), 1e-9)))
    return float(np.mean(residuals))


def hq_init(data: str, out: str, *, styles: int = 256, photos: int = 6, side: int = 256, seed: int = 0,
            window: int = 0, keep: float | None = None, blocks: int = TEACHER_BLOCKS,
            kernel: int = TEACHER_KERNEL) -> dict:
    """Teacher weights + moment predictors fitted on `styles` style vectors of a prepared cache x `photos` photos,
    or with `window` or `keep` the teacher's weights alone (its moments are then measured, locally or over the
    frame); `blocks` and `kernel` prune it (`from_teacher`)."""
    pruned = {"blocks": blocks, "kernel": kernel, "teacher_blocks_kept": kept_blocks(blocks)}
    if keep is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint_weights(from_teacher(keep=keep, blocks=blocks, kernel=kernel), out)
        return {"weights": out, "frame_moments": True, "keep": keep, **pruned}
    if window:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint_weights(from_teacher(window, blocks=blocks, kernel=kernel), out)
        return {"weights": out, "window": window, **pruned}

    rng = np.random.default_rng(seed)
    prepared = PreparedSet.load(data, mmap=True)
    vectors = np.asarray(prepared.style)
    vectors = vectors[rng.choice(len(vectors), min(styles, len(vectors)), replace=False)].astype(np.float32)
    picks = np.sort(rng.choice(prepared.content.shape[0], photos, replace=False))
    c = np.asarray(prepared.content[picks])[:, :side, :side]
    photos_t = torch.from_numpy(np.ascontiguousarray(c)).permute(0, 3, 1, 2).float().div(255)
    model = from_teacher(blocks=blocks, kernel=kernel)
    moments = measure_moments(model, photos_t, torch.from_numpy(vectors))
    residual = fit_moments(model, vectors, moments)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint_weights(model, out)
    return {"weights": out, "styles": len(vectors), "photos": int(photos), "side": side,
            "moment_fit_relative_residual": round(residual, 4), **pruned}
