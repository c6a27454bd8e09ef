"""`distill export --format`: the student in each deployment format, checked before it is kept.

    onnx         fp32, dynamic N, H, W: what every streamer engine runs (checked against PyTorch)
    onnx-fp16    strongly-typed fp16 graph with fp32 I/O, for TensorRT 10.12+/11
    onnx-int8    static QDQ (uint8 activations, int8 per-channel weights), calibrated on real frames
    torchscript  a traced, frozen module: ``torch.jit.load(path)(frame, style)``, dynamic N, H, W, no streamer needed
    tflite       LiteRT flatbuffer from litert-torch at a fixed ``size`` (batch 1), run by ai-edge-litert
    tflite-int8  the same with dynamic-range int8 weights (ai-edge-quantizer), activations stay float

Every format keeps the contract: ``frame`` [N,3,H,W] float32 RGB 0..1 (NCHW, as in PyTorch; the TFLite file too,
so one preprocessing serves all), ``style`` [N,100] float32, out ``stylized`` [N,3,H,W] 0..1; H and W multiples of 8.

Why the check: a converter that silently drops an op or mis-folds a constant produces a file that loads and
runs and paints nonsense.  So each export is staged beside ``out``, run by its own runtime on frames of the
bundled clip with bundled styles, compared with ONNX Runtime fp32 (PyTorch for ``onnx`` itself) as uint8 output
PSNR, and renamed into place only when it reaches ``MIN_PSNR_DB``; otherwise nothing is left at ``out``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

from distill.export import export as export_onnx
from distill.quantize import quantize_student, to_uint8
from engines.carried_state import start_afresh
from engines.onnxruntime import make_session
from streamer.errors import InputError, StreamerError
from streamer.media_files import is_image, is_video, read_image
from streamer.metrics import psnr
from streamer.styles import StyleEncoder

MIN_PSNR_DB = {"onnx": 40.0, "onnx-fp16": 40.0, "torchscript": 40.0, "tflite": 40.0,
               "onnx-int8": 30.0, "tflite-int8": 30.0}
FORMATS = tuple(MIN_PSNR_DB)
DEFAULT_SIZE = (640, 360)           # the CPU's real-time size: TFLite's fixed shape and the check frames
CHECK_STYLES = ("starry_night", "kandinsky")
CALIB_STYLES = ("starry_night", "kandinsky", "hokusai_bridge", "mona_lisa")
CHECK_FRAMES, CALIB_FRAMES = 3, 8
SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "streamer" / "assets" / "sample.mp4"

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]     # ([1,3,H,W], [1,100]) -> [1,3,H,W], float32


class ExportCheckError(StreamerError):
    """The exported model strayed from the reference; nothing was written (``report`` has the numbers)."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Frames:
    """HxWx3 uint8 frames and [1,100] style vectors: the check set or the int8 calibration set."""

    frames: list[np.ndarray]
    styles: list[np.ndarray]


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); sides must be positive multiples of 8 (the student's strides)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {text}: use WIDTHxHEIGHT, e.g. 640x360") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        raise InputError(f"--size {text}: width and height must be positive multiples of 8")
    return w, h


def video_frames(path: Path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` frames spread over a video (or fewer if it is short), resized to ``size``."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in picks]


def folder_frames(folder: Path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Calibration frames from the images and videos of ``--calib DIR`` (up to ``count``, spread over the files)."""
    files = sorted(p for p in folder.iterdir() if is_image(p) or is_video(p)) if folder.is_dir() else []
    if not files:
        raise InputError(f"{folder}: --calib needs a folder with images or videos")
    per_file = max(1, -(-count // len(files)))
    out: list[np.ndarray] = []
    for p in files[:count]:
        if is_image(p):
            out.append(cv2.resize(read_image(p), size, interpolation=cv2.INTER_AREA))
        else:
            out.extend(video_frames(p, per_file, size))
    return out[:count]


def style_vectors(names: tuple[str, ...]) -> list[np.ndarray]:
    encoder = StyleEncoder(threads=1)
    return [encoder.encode(n).reshape(-1) for n in names]


def to_input(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def compare(runner: Runner, reference: Runner, check: Frames) -> list[float]:
    """uint8-output PSNR (dB, capped at 99) of ``runner`` against ``reference``, one value per frame x style."""
    values = []
    for frame in check.frames:
        h, w = frame.shape[:2]
        for style in check.styles:
            x, s = to_input(frame), style.reshape(1, -1).astype(np.float32)
            values.append(min(psnr(to_uint8(runner(x, s), h, w), to_uint8(reference(x, s), h, w)), 99.0))
    return values


# --- runtimes: each format with its own --------------------------------------------------------------
def onnx_runner(path: Path, threads: int | None = None) -> Runner:
    session = make_session(path, threads)        # an int8 model's metadata picks its optimizer settings
    return lambda x, s: session.run(["stylized"], {"frame": x, "style": s})[0]


def torchscript_runner(path: Path, threads: int | None = None) -> Runner:
    import torch   # heavy, optional (the distill extra): the format's own runtime

    if threads:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path))

    def run(x: np.ndarray, s: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    return run


def tflite_runner(path: Path, threads: int | None = None) -> Runner:
    from ai_edge_litert.interpreter import Interpreter   # optional: the export extra

    runner = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count()).get_signature_runner()
    names = sorted(runner.get_input_details(), key=lambda n: runner.get_input_details()[n]["index"])

    def run(x: np.ndarray, s: np.ndarray) -> np.ndarray:
        out = runner(**{names[0]: x, names[1]: s})
        return next(iter(out.values()))
    return run


RUNNERS = {"onnx": onnx_runner, "onnx-fp16": onnx_runner, "onnx-int8": onnx_runner,
           "torchscript": torchscript_runner, "tflite": tflite_runner, "tflite-int8": tflite_runner}


def torch_runner(weights: str) -> Runner:
    import torch   # heavy, optional (the distill extra)

    from engines.student import load_weights   # imports torch

    model = load_weights(weights).eval()

    def run(x: np.ndarray, s: np.ndarray) -> np.ndarray:
        start_afresh(model)   # each check frame on its own, as the exported graph runs by default
        with torch.no_grad():
            return model(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    return run


# --- writers: weights -> a staged file -----------------------------------------------------------------
@dataclass
class Job:
    weights: str
    staged: Path                   # the file being written (renamed to ``out`` when it passes)
    work: Path                     # a scratch folder beside it
    size: tuple[int, int]
    calib: Callable[[], Frames]    # the int8 calibration set, built only when a format needs it


def write_onnx(job: Job) -> None:
    export_onnx(job.weights, str(job.staged))


def write_onnx_fp16(job: Job) -> None:
    export_onnx(job.weights, str(job.staged), fp16=True)


def write_onnx_int8(job: Job) -> None:
    fp32 = job.work / "fp32.onnx"
    export_onnx(job.weights, str(fp32))
    calib = job.calib()
    # Percentile ranges: on the v2 live tier 29.0 dB against 27.9 with MinMax (per-layer float fallbacks gained
    # under 0.5 dB; 16-bit activations reach 42 dB but run at twice fp32's time). Judged by check(), not here.
    quantize_student(fp32, job.staged, calib.frames, calib.styles, min_psnr_db=0.0, calibrate_method="Percentile")


def per_frame(model):
    """A stateful student (student-hq) as a network of frame and style alone: each frame normalized by itself (the
    teacher's normalization), as its ONNX graph runs without a `state` fed. TorchScript and TFLite get this: carrying
    the state is the caller's loop, which only the ONNX graph exposes."""
    if not getattr(model.config, "frame_moments", False):
        return model
    import torch   # heavy, optional (the distill extra)

    class PerFrame(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("state", torch.zeros(1, model.state_size()))
            self.register_buffer("keep", torch.zeros(1))

        def forward(self, frame, style):
            return self.model.step(frame, style, self.state, self.keep)[0]
    return PerFrame().eval()


def write_torchscript(job: Job) -> None:
    """Traced, not scripted: the forward is plain tensor code, and tracing records shape reads as ops, so N, H
    and W stay dynamic (the check runs at another size than the trace's example)."""
    import torch   # heavy, optional (the distill extra)

    from engines.student import STYLE_DIM, load_weights   # imports torch

    model = per_frame(load_weights(job.weights).eval())
    example = (torch.rand(1, 3, 64, 96), torch.rand(1, STYLE_DIM))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)     # torch 2.13/2.14 deprecate TorchScript; LibTorch apps
        warnings.simplefilter("ignore", DeprecationWarning)   # still load it
        traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    traced.save(str(job.staged))


def _tflite_fp32(job: Job, path: Path) -> None:
    import litert_torch   # heavy, optional: the export extra
    import torch   # heavy, optional (the distill extra)

    from engines.student import STYLE_DIM, load_weights   # imports torch

    w, h = job.size
    model = per_frame(load_weights(job.weights).eval())
    litert_torch.convert(model, (torch.zeros(1, 3, h, w), torch.zeros(1, STYLE_DIM))).export(str(path))


def write_tflite(job: Job) -> None:
    _tflite_fp32(job, job.staged)


def write_tflite_int8(job: Job) -> None:
    from ai_edge_quantizer import quantizer, recipe   # optional: the export extra

    fp32 = job.work / "fp32.tflite"
    _tflite_fp32(job, fp32)
    q = quantizer.Quantizer(str(fp32))
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    q.quantize().export_model(str(job.staged), overwrite=True)


WRITERS = {"onnx": write_onnx, "onnx-fp16": write_onnx_fp16, "onnx-int8": write_onnx_int8,
           "torchscript": write_torchscript, "tflite": write_tflite, "tflite-int8": write_tflite_int8}
NEEDS = {"tflite": ("litert_torch", "ai_edge_litert"), "tflite-int8": ("litert_torch", "ai_edge_litert",
                                                                      "ai_edge_quantizer")}


def missing_modules(fmt: str) -> list[str]:
    return [m for m in NEEDS.get(fmt, ()) if importlib.util.find_spec(m) is None]


# --- the command -----------------------------------------------------------------------------------------
def export_format(weights: str, out: str, fmt: str = "onnx", *, size: tuple[int, int] = DEFAULT_SIZE,
                  calib_dir: str | None = None, threads: int | None = None) -> dict:
    """Write ``weights`` as ``fmt`` at ``out``, checked (see the module docstring); returns the report."""
    if fmt not in WRITERS:
        raise InputError(f"--format {fmt}: unknown; use one of {', '.join(FORMATS)}")
    missing = missing_modules(fmt)
    if missing:
        raise InputError(f"--format {fmt} needs {', '.join(missing)}: pip install 'streamer[export]' "
                         "(litert-torch, ai-edge-litert)")
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    calib = (lambda: Frames(folder_frames(Path(calib_dir), CALIB_FRAMES, size), style_vectors(CALIB_STYLES))) \
        if calib_dir else (lambda: Frames(video_frames(SAMPLE_CLIP, CALIB_FRAMES, size), style_vectors(CALIB_STYLES)))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.streamer-tmp-") as tmp:
        work = Path(tmp)
        job = Job(weights, work / f"staged{out_path.suffix}", work, size, calib)
        with contextlib.redirect_stdout(sys.stderr):      # converters print progress; stdout is the report's
            WRITERS[fmt](job)
        seconds = time.perf_counter() - t0
        report = check(job, fmt, threads)
        report.update(format=fmt, path=str(out_path), bytes=job.staged.stat().st_size,
                      export_seconds=round(seconds, 1))
        if report["psnr_db"] < report["min_psnr_db"]:
            raise ExportCheckError(f"{out_path}: {fmt} output is {report['psnr_db']:.1f} dB PSNR from "
                                   f"{report['reference']} (< {report['min_psnr_db']:g} dB); not written", report)
        os.replace(job.staged, out_path)
    return report


def check(job: Job, fmt: str, threads: int | None) -> dict:
    """The staged model against the reference on the check set (the bundled clip's frames x bundled styles)."""
    checkset = Frames(video_frames(SAMPLE_CLIP, CHECK_FRAMES, job.size), style_vectors(CHECK_STYLES))
    if fmt == "onnx":
        reference, name = torch_runner(job.weights), "PyTorch fp32"
    else:
        fp32 = job.work / "reference.onnx"
        export_onnx(job.weights, str(fp32))
        reference, name = onnx_runner(fp32, threads), "ONNX Runtime fp32"
    values = compare(RUNNERS[fmt](job.staged, threads), reference, checkset)
    return {"reference": name, "psnr_db": round(float(np.mean(values)), 2), "psnr_min_db": round(min(values), 2),
            "min_psnr_db": MIN_PSNR_DB[fmt], "check": f"{len(checkset.frames)} frames x {len(checkset.styles)} "
            f"styles at {job.size[0]}x{job.size[1]}"}
