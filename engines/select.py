"""Pick a backend and build its engine; explain why the others are unavailable.

``auto`` means: TensorRT if it imports and sees a GPU, else PyTorch with CUDA, else ONNX Runtime
on the CPU.  The TensorRT and PyTorch modules are imported lazily, so a CPU-only install (no torch,
no tensorrt) never pays for them; each exposes ``availability() -> (bool, reason)``.
"""
from __future__ import annotations

import dataclasses
import importlib

import onnxruntime as ort
import os
import sys

from engines.base import Engine, EngineError, IdentityEngine, ModelSpec
from engines.onnxruntime import OnnxRuntimeEngine, TeacherEngine, available_providers
from engines.reference import ReferenceEngine     # the GPU engines' uint8 in-flight contract on the CPU (tests)
from engines.tensorrt import TensorRTEngine       # imports tensorrt/pycuda only when an engine is built
from engines.torch import TorchEngine             # imports torch only when an engine is built

CONCRETE_BACKENDS = ("tensorrt", "torch", "onnxruntime")   # in auto's order of preference
BACKENDS = ("auto", *CONCRETE_BACKENDS)
# Not a user's choice (not in BACKENDS, never picked by auto): create_engine("reference", spec) runs the ONNX
# Runtime engine behind the GPU engines' uint8 in-flight contract, so the GPU wiring is tested without a GPU.
REFERENCE = "reference"


def _module_availability(module: str) -> tuple[bool, str]:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return False, f"cannot import {module}: {exc}"
    except Exception as exc:   # noqa: BLE001 - a broken driver install must not break `streamer info`
        return False, f"{module} failed to import: {type(exc).__name__}: {exc}"
    check = getattr(mod, "availability", None)
    if check is None:
        return False, f"{module} has no availability() check"
    try:
        ok, reason = check()
    except Exception as exc:   # noqa: BLE001
        return False, f"{module}.availability() failed: {type(exc).__name__}: {exc}"
    return bool(ok), str(reason)


def _onnxruntime_availability() -> tuple[bool, str]:
    return True, f"onnxruntime {ort.__version__} (execution providers: {', '.join(available_providers())})"


def availability(backend: str) -> tuple[bool, str]:
    if backend == "onnxruntime":
        return _onnxruntime_availability()
    if backend == "tensorrt":
        return _module_availability("engines.tensorrt")
    if backend == "torch":
        return _module_availability("engines.torch")
    raise EngineError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")


def backend_report() -> list[tuple[str, bool, str]]:
    """(name, available, reason) for every concrete backend, in auto's order of preference."""
    return [(name, *availability(name)) for name in CONCRETE_BACKENDS]


def nvidia_driver_present() -> bool:
    """A cheap look for an NVIDIA driver before auto imports torch or tensorrt to ask for a GPU: importing torch
    alone takes over a second, which a CPU-only machine with torch installed would pay on every run."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")
    return True   # elsewhere there is no cheap check: ask the backends


def choose_backend(backend: str = "auto", model_kind: str = "student") -> str:
    """The concrete backend auto resolves to (the teacher and identity run on onnxruntime/CPU)."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise EngineError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        return backend
    if model_kind in ("teacher", "identity") or not nvidia_driver_present():
        return "onnxruntime"
    for name in ("tensorrt", "torch"):
        if availability(name)[0]:
            return name
    return "onnxruntime"


def create_engine(backend: str, model: ModelSpec, *, threads: int | None = None, device: str | None = None,
                  provider: str | None = None) -> Engine:
    """Build the engine for a resolved model (`streamer.model_registry.resolve_model` makes the spec)."""
    if backend == REFERENCE:
        return ReferenceEngine(create_engine("onnxruntime", model, threads=threads, provider=provider))
    if model.kind == "identity":
        return IdentityEngine()
    name = choose_backend(backend, model.kind)
    if name != "onnxruntime":
        ok, reason = availability(name)
        if not ok:
            raise EngineError(f"backend {name} is not available: {reason}")
    if model.kind == "teacher":
        if name != "onnxruntime":
            raise EngineError(f"the teacher model runs on onnxruntime only, not {name}")
        return TeacherEngine(threads=threads)
    if name == "onnxruntime":
        if model.onnx is None:
            shown = model.weights or model.name
            raise EngineError(f"{shown}: torch weights run on the torch backend (a CUDA GPU); export an ONNX with "
                              "`distill export` for ONNX Runtime")
        return OnnxRuntimeEngine(model.onnx, threads=threads, name=model.name, provider=provider)
    if name == "tensorrt":
        if model.onnx is None:
            raise EngineError(f"model {model.name}: the tensorrt backend builds from an ONNX file")

        return named(TensorRTEngine(str(model.onnx)), model.name)
    if model.weights is None:
        raise EngineError(f"model {model.name}: the torch backend needs .pt weights")

    return named(TorchEngine(str(model.weights), device or "cuda"), model.name)


def named(engine: Engine, name: str) -> Engine:
    """The engine reporting the model by the name it was asked for (``student-live/kandinsky``), as ONNX Runtime
    does, not by its file's stem: `--json` says which model ran whatever the backend."""
    engine.info = dataclasses.replace(engine.info, model=name)
    return engine
