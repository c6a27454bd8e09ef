"""int8 student: static QDQ quantization calibrated on real frames, kept only when it matches fp32.

``quantize_student(onnx_in, onnx_out, frames, styles)`` calibrates on video frames (HxWx3 uint8) paired with style
vectors, writes a QDQ model and keeps it at ``onnx_out`` only when its output is within ``min_psnr_db`` of the fp32
model's on the check frames; a model that fails is removed (and ``QuantizationCheckError`` carries the numbers).

Why these defaults (measured with ``python -m benchmarks.int8``; numbers in benchmarks/RESULTS.md, section "int8 and
ONNX Runtime optimisation"):

- **uint8 activations, int8 weights (U8S8).** The quantizer's default is int8 activations. ONNX Runtime's x86
  QLinearConv wants uint8 activations, and its QDQS8ToU8 transformer converts an int8 Q/DQ pair only where the
  quantized tensor has a single consumer. In the student, the input of 6 of the 21 convolutions also feeds a skip
  connection or the colour branch (stem, down, the first depthwise conv of each of the 4 blocks). Those 6 stay
  float Convs (plain NCHW, not NCHWc) between a full-tensor DequantizeLinear and QuantizeLinear, which is why a quick
  try with default settings ran about 1.6-1.9x slower than fp32. U8U8 runs every conv in int8, but its kernels are
  slower than U8S8 here.
- **per-channel weights, 7-bit range (reduce_range).** Per-channel weights are closer to fp32 than per-tensor
  (31.5 vs 31.0 dB PSNR). On CPUs without VNNI (AVX2 only), the u8 x s8 multiply-add saturates in 16 bits unless
  weights use 7 bits. With VNNI the 7-bit range costs nothing (31.5 vs 31.3 dB with 8 bits, same speed).
- **QDQ, every operator.** Every operator of the student has an int8 CPU kernel: QLinearConv (depthwise included),
  QLinearAdd/QLinearMul (FiLM, skips), Resize and DepthToSpace on uint8, QLinearSigmoid, QLinearMatMul, QGemm. So
  nothing falls back to float. Keeping a layer in float (``nodes_to_exclude``) costs a Q/DQ pair at each border.
  It also fails when the layer sits between quantized neighbours: ONNX Runtime's WeightBiasQuantization transformer
  quantizes a float-weight Conv that sits between DQ and Q anyway. QOperator format runs the same kernels.
- **without the NhwcTransformer** (``DISABLED_OPTIMIZERS``, also stored in the model's metadata under
  ``METADATA_KEY``). At ``ORT_ENABLE_ALL`` this transformer moves QLinearConv to NHWC and pushes transposes through
  the graph. The per-channel FiLM multiplies and adds then broadcast over the innermost axis, and Resize runs on
  NHWC uint8. Each is several times slower than in NCHW, and the int8 model ends up slower than fp32 with NCHWc
  (about 1.2x the CPU time). Without the transformer it takes about 0.85x the CPU time of fp32; the sessions here
  open it that way.
- **MinMax calibration**, over every calibration frame with every style (the FiLM layers' ranges depend on the
  style), in chunks of ``CHUNK`` samples so memory stays bounded at 640x360.

The student still ships in fp32. The int8 output is about 31.5 dB PSNR from fp32 and flickers more from frame to
frame (E_warp about 3.7x fp32 per frame, 1.6x after flow smoothing). RESULTS has the numbers.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from engines.base import STYLE_DIM, pad_to_multiple
from engines.onnxruntime import DISABLED_OPTIMIZERS_KEY
from streamer.metrics import psnr

DISABLED_OPTIMIZERS = ("NhwcTransformer",)
METADATA_KEY = DISABLED_OPTIMIZERS_KEY               # comma-separated ORT optimizer names an int8 session should skip
MULTIPLE = 8                                        # the student's strided layers need H, W multiples of 8
CHUNK = 4                                           # calibration samples held in memory at once
MIN_PSNR_DB = 30.0                                  # int8 vs fp32 output, mean over the check frames
DEFAULT_SETTINGS = {
    "quant_format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": True,
    "reduce_range": True, "calibrate_method": "MinMax", "op_types_to_quantize": None, "nodes_to_quantize": None,
    "nodes_to_exclude": None, "extra_options": None,
}
LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class QuantizationCheckError(RuntimeError):
    """The int8 model strayed too far from fp32; ``report`` holds the numbers (the model file is gone)."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


def to_input(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> [1,3,H',W'] float32 0..1, reflect-padded to the student's multiple (as the engine does)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"frames must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(pad_to_multiple(x, MULTIPLE)[0])


def to_style(style: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(style, np.float32).reshape(1, STYLE_DIM))


def to_uint8(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """[1,3,H',W'] 0..1 -> HxWx3 uint8 (cropped back), rounded as the pipeline does."""
    return (np.clip(y[0, :, :h, :w].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


class FrameReader(CalibrationDataReader):
    """Calibration samples: every frame with every style (FiLM ranges depend on the style as much as on the frame)."""

    def __init__(self, frames: list[np.ndarray], styles: list[np.ndarray]) -> None:
        self._pairs = [(f, s) for f in frames for s in styles]
        self._i, self._end = 0, len(self._pairs)

    def get_next(self) -> dict | None:
        if self._i >= self._end:
            return None
        frame, style = self._pairs[self._i]
        self._i += 1
        return {"frame": to_input(frame), "style": to_style(style)}

    def __len__(self) -> int:
        return len(self._pairs)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Calibrate one chunk at a time (``CalibStridedMinMax``): ranges are merged after each chunk."""
        self._i, self._end = start_index, end_index

    def rewind(self) -> None:
        self._i, self._end = 0, len(self._pairs)


def open_session(path: str | os.PathLike, *, threads: int | None = None, level: str = "all",
                 disabled_optimizers: tuple[str, ...] | None = None,
                 optimized_path: str | os.PathLike | None = None) -> ort.InferenceSession:
    """A CPU session like the engine's (no spinning, ``threads`` intra-op threads), at an optimisation ``level``.

    ``disabled_optimizers`` None: those the model's metadata names (``METADATA_KEY``; none for an fp32 model).
    ``optimized_path``: also write the graph ONNX Runtime actually runs (which nodes are int8, which layout)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = LEVELS[level]
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if optimized_path:
        opts.optimized_model_filepath = str(optimized_path)
    if disabled_optimizers is None:
        disabled_optimizers = model_disabled_optimizers(path)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled_optimizers))


def model_disabled_optimizers(path: str | os.PathLike) -> tuple[str, ...]:
    """The optimizers an int8 model asks its sessions to skip (its metadata), () for any other model."""
    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), "")
    return tuple(v for v in value.split(",") if v)


def conv_kinds(model: str | os.PathLike | onnx.ModelProto) -> dict[str, list[str]]:
    """Names of the Conv nodes by kind: ``depthwise`` (group > 1), ``pointwise`` (1x1), ``full`` (the rest)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inits = {i.name: i for i in model.graph.initializer}
    kinds: dict[str, list[str]] = {"depthwise": [], "pointwise": [], "full": []}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        kernel = list(inits[node.input[1]].dims[2:]) if node.input[1] in inits else None
        kind = "depthwise" if group > 1 else "pointwise" if kernel == [1, 1] else "full"
        kinds[kind].append(node.name)
    return kinds


def runtime_census(path: str | os.PathLike, *, level: str = "all",
                   disabled_optimizers: tuple[str, ...] | None = None) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime runs after its optimisations (int8 kernels, float fallbacks,
    layout changes)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "optimized.onnx"
        open_session(path, threads=1, level=level, disabled_optimizers=disabled_optimizers, optimized_path=out)
        ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    return dict(sorted(ops.items()))


def _enum(kind, value):
    return kind[value] if isinstance(value, str) else value


def check_against_fp32(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, frames: list[np.ndarray],
                       styles: list[np.ndarray], threads: int | None = None) -> list[float]:
    """PSNR (dB) of the int8 model's uint8 output against fp32's, one per frame (styles taken in turn)."""
    ref, q = open_session(fp32_path, threads=threads), open_session(int8_path, threads=threads)
    out = []
    for i, frame in enumerate(frames):
        feed = {"frame": to_input(frame), "style": to_style(styles[i % len(styles)])}
        h, w = frame.shape[:2]
        a = to_uint8(ref.run(["stylized"], feed)[0], h, w)
        b = to_uint8(q.run(["stylized"], feed)[0], h, w)
        out.append(min(psnr(a, b), 99.0))
    return out


def quantize_student(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, frames: list[np.ndarray],
                     styles: list[np.ndarray], *, check_frames: list[np.ndarray] | None = None,
                     min_psnr_db: float = MIN_PSNR_DB, threads: int | None = None,
                     calibration_cache: str | os.PathLike | None = None, **settings) -> dict:
    """Quantize a student ONNX to int8 (static, QDQ), calibrated on ``frames`` x ``styles``, and keep it only if its
    output stays within ``min_psnr_db`` (mean PSNR against fp32 over ``check_frames``, default the calibration
    frames).

    ``settings`` override ``DEFAULT_SETTINGS`` (see the module docstring for why they are the defaults):
    ``quant_format`` ("QDQ"/"QOperator"), ``activation_type`` / ``weight_type`` ("QUInt8"/"QInt8"),
    ``per_channel``, ``reduce_range``, ``calibrate_method`` ("MinMax"/"Percentile"/"Entropy"),
    ``op_types_to_quantize``, ``nodes_to_quantize``, ``nodes_to_exclude``, ``extra_options``; plus
    ``disabled_optimizers`` (recorded in the model's metadata for the sessions that run it).
    ``calibration_cache``: a JSON file of activation ranges, written by the first call and read by later calls
    with the same model, frames, styles and calibration method (several settings tried on one calibration).

    Returns a report (settings, PSNR per frame, mean and minimum, seconds). If the check fails, ``onnx_out`` is
    removed and ``QuantizationCheckError`` is raised with the report."""
    unknown = set(settings) - set(DEFAULT_SETTINGS) - {"disabled_optimizers"}
    if unknown:
        raise TypeError(f"unknown quantization settings: {', '.join(sorted(unknown))}")
    if not frames or not styles:
        raise ValueError("quantize_student needs at least one frame and one style vector")
    disabled = tuple(settings.pop("disabled_optimizers", DISABLED_OPTIMIZERS))
    cfg = {**DEFAULT_SETTINGS, **settings}
    t0 = time.perf_counter()
    onnx_out = Path(onnx_out)
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(cfg["extra_options"] or {})
    # Calibrate in chunks of at most CHUNK samples, ranges merged after each: the calibrator keeps every intermediate
    # tensor of a chunk in memory (about 0.15 GB a sample at 640x360). (CalibMaxIntermediateOutputs would bound it too,
    # but onnxruntime 1.32's MinMaxCalibrater drops each full batch without computing its ranges.)
    n = len(frames) * len(styles)
    extra.setdefault("CalibStridedMinMax", max(d for d in range(1, CHUNK + 1) if n % d == 0))
    with tempfile.TemporaryDirectory(dir=onnx_out.parent, prefix=".quantize-") as tmp:
        pre, staged = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # ONNX shape inference + ORT's basic graph cleanup; the symbolic shape pass gives up on the student's
        # Shape/Gather/Concat output reshaping, which needs no symbolic shapes anyway
        quant_pre_process(str(onnx_in), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(staged), FrameReader(frames, styles),
                        quant_format=_enum(QuantFormat, cfg["quant_format"]),
                        activation_type=_enum(QuantType, cfg["activation_type"]),
                        weight_type=_enum(QuantType, cfg["weight_type"]),
                        per_channel=bool(cfg["per_channel"]), reduce_range=bool(cfg["reduce_range"]),
                        calibrate_method=_enum(CalibrationMethod, cfg["calibrate_method"]),
                        op_types_to_quantize=cfg["op_types_to_quantize"], nodes_to_quantize=cfg["nodes_to_quantize"],
                        nodes_to_exclude=cfg["nodes_to_exclude"], extra_options=extra,
                        calibration_cache_path=str(calibration_cache) if calibration_cache else None)
        model = onnx.load(str(staged))
        recorded = {k: (v if v is None or isinstance(v, (bool, list, dict)) else str(v).split(".")[-1])
                    for k, v in cfg.items()}
        meta = {METADATA_KEY: ",".join(disabled), "streamer.int8_settings": json.dumps(recorded, sort_keys=True),
                "streamer.int8_calibration": f"{len(frames)} frames x {len(styles)} styles"}
        for key, value in meta.items():
            prop = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(model, str(staged))
        per_frame = check_against_fp32(onnx_in, staged, check_frames or frames, styles, threads)
        report = {"path": str(onnx_out), "settings": recorded, "disabled_optimizers": list(disabled),
                  "calibration_samples": len(frames) * len(styles), "psnr_db": float(np.mean(per_frame)),
                  "psnr_min_db": float(np.min(per_frame)), "psnr_per_frame_db": per_frame,
                  "min_psnr_db": min_psnr_db, "seconds": round(time.perf_counter() - t0, 1)}
        report["passed"] = report["psnr_db"] >= min_psnr_db
        if not report["passed"]:
            onnx_out.unlink(missing_ok=True)        # no stale model left where the caller expects a checked one
            raise QuantizationCheckError(
                f"{onnx_out}: int8 output is {report['psnr_db']:.2f} dB PSNR from fp32 (< {min_psnr_db} dB); "
                "model removed", report)
        os.replace(staged, onnx_out)
    return report
