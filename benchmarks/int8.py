"""int8 student and ONNX Runtime's graph optimisation levels, side by side with fp32 on this machine.

    python -m benchmarks.int8 [--model streamer/models/student_live.onnx] [--json benchmarks/int8.json]
                              [--threads 2] [--reps 15] [--quick]

What runs, all in one process so that only ratios measured together are compared:
- calibration: frames of the bundled clip (streamer/assets/sample.mp4, 640x360), every calibration frame with every
  bundled style; one MinMax calibration shared by all variants (``distill.quantize``'s calibration cache).
- variants: the quantizer's defaults (the quick try: int8 activations, per-tensor), U8S8 per-channel with and without
  7-bit weights (the ``quantize_student`` default has them), U8S8 per-tensor, U8U8, QOperator, only the Conv
  operators, only the 1x1 convs, the 1x1 plus the full 3x3 convs, and every operator except the FiLM multiplies and
  adds.
- per variant: which operators ONNX Runtime runs after its optimisations (int8 kernels, float convs left, Q/DQ,
  layout transposes), with ``ORT_ENABLE_ALL`` as the engine opens models, and with ALL but the NhwcTransformer;
  ms per 640x360 frame, model only (``session.run`` on a real frame, the same thread count for every model, no
  spinning). Each variant is timed in its own group with fp32 (order rotated every repeat, median of the repeats,
  ratio = median of the per-repeat ratios to fp32), so each ratio comes from runs a fraction of a second apart;
  PSNR against fp32 on held-out frames of the clip; SSIM/4 against the teacher and the style score (384x384
  crops of clip frames x 3 styles); E_warp (Lai et al. 2018, DIS flow on the input frames) on 24 consecutive
  frames at 640x360, of the per-frame output and after the default flow smoother.
- fp32 at DISABLE / BASIC / EXTENDED / ALL and ALL without the NchwcTransformer; the int8 default at EXTENDED, ALL and
  ALL without the NhwcTransformer.
- a profile (``SessionOptions.enable_profiling``) of fp32 and the int8 default with and without the
  NhwcTransformer: median ms per frame by part of the network.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort

from distill.quantize import (DISABLED_OPTIMIZERS, conv_kinds, open_session, quantize_student,
                              runtime_census, to_input, to_style, to_uint8)
from distill.teacher import Teacher
from streamer.metrics import downscale, psnr, ssim, style_score, visible_masks, warping_error
from streamer.styles import bundled_styles
from streamer.temporal import make_smoother
from streamer.warp import dis_flow, make_dis

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "streamer" / "assets" / "sample.mp4"
MODELS = ROOT / "streamer" / "models"
SIZE = (640, 360)
QUALITY_STYLES = ("starry_night", "hokusai_bridge", "kandinsky")
TEMPORAL_STYLE = "starry_night"
NO_NHWC = DISABLED_OPTIMIZERS        # ("NhwcTransformer",): what quantize_student's models ask for
FP32_LEVELS = [("DISABLE", "disable", ()), ("BASIC", "basic", ()), ("EXTENDED", "extended", ()),
               ("ALL without NCHWc", "all", ("NchwcTransformer",)), ("ALL (engine default)", "all", ())]


def default_model() -> Path:
    """The shipped v1 student (its file name depends on the model tiers in use)."""
    for name in ("student_live.onnx", "student.onnx"):
        if (MODELS / name).is_file():
            return MODELS / name
    raise SystemExit(f"no student ONNX in {MODELS.relative_to(ROOT)}; pass --model")


def rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


# --- machine -----------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except (OSError, AttributeError, subprocess.SubprocessError):
        pass
    try:
        flags = sorted(set(re.findall(r"\bavx[0-9a-z_]*", Path("/proc/cpuinfo").read_text())))
    except OSError:
        flags = []
    return {"cpu": cpu, "cores": os.cpu_count(), "avx_flags": flags, "vnni": any("vnni" in f for f in flags),
            "onnxruntime": ort.__version__, "onnx": onnx.__version__, "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


# --- inputs ------------------------------------------------------------------------------------------

def clip_frames(width: int, height: int) -> list[np.ndarray]:
    with av.open(str(CLIP)) as c:
        return [f.to_ndarray(format="rgb24", width=width, height=height) for f in c.decode(video=0)]


def center_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(rgb[y:y + side, x:x + side])


# --- variants ----------------------------------------------------------------------------------------

def variants(model: Path) -> list[tuple[str, str, dict]]:
    """(key, description, settings for quantize_student); the first one calibrates for all."""
    kinds = conv_kinds(model)
    graph = onnx.load(str(model))
    film = [n.name for n in graph.graph.node if n.op_type in ("Mul", "Add") and "/film" in n.name]
    u8s8 = {"activation_type": "QUInt8", "weight_type": "QInt8"}
    return [
        ("s8s8_tensor", "quantizer defaults: S8S8, per-tensor (the quick try)",
         {"activation_type": "QInt8", "weight_type": "QInt8", "per_channel": False, "reduce_range": False}),
        ("u8s8_channel", "U8S8, per-channel", {**u8s8, "per_channel": True, "reduce_range": False}),
        ("u8s8_channel_7bit", "U8S8, per-channel, 7-bit weights (quantize_student default)", {}),
        ("u8s8_tensor_7bit", "U8S8, per-tensor, 7-bit weights", {**u8s8, "per_channel": False, "reduce_range": True}),
        ("u8u8_channel", "U8U8, per-channel", {"activation_type": "QUInt8", "weight_type": "QUInt8",
                                               "per_channel": True, "reduce_range": False}),
        ("qoperator", "QOperator format, U8S8, per-channel, 7-bit", {"quant_format": "QOperator"}),
        ("conv_only", "only Conv operators (default otherwise)", {"op_types_to_quantize": ["Conv"]}),
        ("pointwise_only", "only the 9 1x1 convs", {"nodes_to_quantize": kinds["pointwise"]}),
        ("pointwise_full", "1x1 convs + stem/down/head 3x3", {"nodes_to_quantize": kinds["pointwise"] + kinds["full"]}),
        ("float_film", "all but the FiLM Mul/Add (float)", {"nodes_to_exclude": film}),
    ]


def census_row(c: dict) -> dict:
    keys = ("QLinearConv", "Conv", "QuantizeLinear", "DequantizeLinear", "Transpose", "ReorderInput", "ReorderOutput")
    return {k: c.get(k, 0) for k in keys}


# --- speed -------------------------------------------------------------------------------------------

def paired_timing(sessions: dict, feed: dict, reps: int, inner: int = 2, base: str = "fp32") -> dict:
    """Per session: median wall ms and median CPU ms (the process's, all ORT threads) per run, and the median of the
    per-repeat ratios to ``base``. Every repeat runs every session (order rotated, reversed every other repeat), so a
    load change hits all of them alike. On a shared machine the wall time mostly measures the other jobs; the CPU
    time (no spinning threads) is the work a run costs, and its ratio is the steadier one."""
    names = list(sessions)
    for s in sessions.values():
        s.run(None, feed)
        s.run(None, feed)
    wall, cpu = {k: [] for k in names}, {k: [] for k in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in (order if r % 2 == 0 else order[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(inner):
                sessions[k].run(None, feed)
            wall[k].append((time.perf_counter() - t0) / inner * 1e3)
            cpu[k].append((time.process_time() - c0) / inner * 1e3)
    out = {}
    for k in names:
        w, c = np.array(wall[k]), np.array(cpu[k])
        out[k] = {"ms": round(float(np.median(w)), 2), "ratio": round(float(np.median(w / np.array(wall[base]))), 3),
                  "ms_min": round(float(w.min()), 2), "cpu_ms": round(float(np.median(c)), 2),
                  "cpu_ratio": round(float(np.median(c / np.maximum(np.array(cpu[base]), 1e-3))), 3)}
    return out


# --- profile -----------------------------------------------------------------------------------------

def part_of(op: str, name: str) -> str:
    """Which part of the network a node of the optimized graph belongs to (names keep the exporter's scopes)."""
    if op in ("Transpose", "ReorderInput", "ReorderOutput"):
        return "layout (NCHWc reorder / NHWC transpose)"
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return "QuantizeLinear / DequantizeLinear"
    if "Conv" in op:
        if re.search(r"conv[12]\.0|up\.0", name):
            return "depthwise 3x3 convs (9)"
        if re.search(r"conv[12]\.1|up\.1", name):
            return "pointwise 1x1 convs (9)"
        return "stem, down, head convs"
    if "/film" in name and ("Mul" in op or "Add" in op):
        return "FiLM multiply/add"
    if re.search(r"^/(blocks\.\d/)?Add$", name):
        return "skip adds"
    if op in ("Relu",):
        return "ReLU"
    if op == "Resize":
        return "Resize x2"
    if op in ("DepthToSpace", "Sigmoid", "QLinearSigmoid", "MatMul", "QLinearMatMul", "Sub") or \
            re.search(r"^/(Mul|Add_1|Add_2)$", name):
        return "output (DepthToSpace, colour path, sigmoid)"
    return "style MLP, shape ops"


def profile(paths: dict, feed: dict, threads: int, runs: int) -> dict:
    """ms per frame by part of the network: median over ``runs`` profiled runs of each node, summed by part."""
    sessions, files = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (path, disabled) in paths.items():
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / key)
            sessions[key] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                                 disabled_optimizers=list(disabled))
        for _ in range(runs + 2):
            for s in sessions.values():
                s.run(None, feed)
        for key, s in sessions.items():
            files[key] = json.loads(Path(s.end_profiling()).read_text())
    out = {}
    for key, events in files.items():
        run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")[2:]
        per_node = defaultdict(list)
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= run_starts[0]:
                per_node[(e["args"]["op_name"], e["name"][:-len("_kernel_time")])].append(e["dur"])
        parts = defaultdict(float)
        for (op, name), durs in per_node.items():
            parts[part_of(op, name)] += float(np.median(durs)) / 1e3
        out[key] = {k: round(v, 3) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
        out[key]["total"] = round(sum(parts.values()), 3)
    return out


# --- quality -----------------------------------------------------------------------------------------

def stylize(session, rgb: np.ndarray, style: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return to_uint8(session.run(["stylized"], {"frame": to_input(rgb), "style": to_style(style)})[0], h, w)


def quality(sessions: dict, teacher: Teacher, crops: list[np.ndarray], vecs: dict) -> dict:
    """SSIM/4 vs the teacher and style score per model, mean over crops x styles."""
    rows = defaultdict(lambda: defaultdict(list))
    for crop in crops:
        e_photo = teacher.style_vector(crop)
        for name, vec in vecs.items():
            t = teacher.stylize(crop, vec)
            e_t = teacher.style_vector(t)
            outs = {key: stylize(s, crop, vec) for key, s in sessions.items()}
            for key, out in outs.items():
                rows[key]["ssim4"].append(ssim(downscale(out), downscale(t)))
                rows[key]["style_score"].append(style_score(e_photo, teacher.style_vector(out), e_t, vec))
                if key != "fp32":
                    rows[key]["psnr_vs_fp32_384"].append(min(psnr(out, outs["fp32"]), 99.0))
    return {k: {m: round(float(np.mean(v)), 4) for m, v in r.items()} for k, r in rows.items()}


def temporal(sessions: dict, frames: list[np.ndarray], style: np.ndarray) -> dict:
    dis = make_dis("medium")
    back = [None] + [dis_flow(frames[t], frames[t - 1], dis) for t in range(1, len(frames))]
    fwd = [None] + [dis_flow(frames[t - 1], frames[t], dis) for t in range(1, len(frames))]
    vis = visible_masks(back, fwd)
    e_in, _ = warping_error(frames, back, vis)
    out = {"input frames": (round(e_in, 6), None)}
    for key, s in sessions.items():
        per_frame = [stylize(s, f, style) for f in frames]
        smoother = make_smoother("flow")                  # the default pipeline smooths what the model gives it
        smoothed = [smoother(f, y).copy() for f, y in zip(frames, per_frame)]
        out[key] = (round(warping_error(per_frame, back, vis)[0], 6), round(warping_error(smoothed, back, vis)[0], 6))
    return out


# --- main --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="fp32 student ONNX (default: the shipped v1 student)")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for every model")
    ap.add_argument("--reps", type=int, default=15, help="timing repeats (2 runs each)")
    ap.add_argument("--quick", action="store_true", help="fewer frames and repeats (a smoke run)")
    args = ap.parse_args(argv)
    model = (args.model or default_model()).resolve()
    t_start = time.perf_counter()
    reps = 5 if args.quick else args.reps
    report = {"schema": "streamer-int8/1", "date": datetime.date.today().isoformat(), "machine": machine(),
              "command": "python -m benchmarks.int8 " + " ".join(argv if argv is not None else sys.argv[1:]),
              "model": rel(model), "threads": args.threads, "frame_size": list(SIZE)}
    print(f"{report['date']}  {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"{' '.join(report['machine']['avx_flags'])}; onnxruntime {ort.__version__}; threads {args.threads}",
          flush=True)

    frames = clip_frames(*SIZE)
    step = 60 if args.quick else 30
    calib, check = frames[0::step], frames[step // 2::step]
    teacher = Teacher(threads=args.threads)
    vecs = {name: teacher.encoder.encode(name) for name in bundled_styles()}
    report["calibration"] = {"frames": len(calib), "styles": sorted(vecs), "samples": len(calib) * len(vecs),
                             "check_frames": len(check), "clip": rel(CLIP)}

    with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "calibration.json"
        rows, paths = [], {}
        for key, desc, settings in variants(model):
            t0 = time.perf_counter()
            path = tmp / f"{key}.onnx"
            r = quantize_student(model, path, calib, list(vecs.values()), check_frames=check, min_psnr_db=0.0,
                                 threads=args.threads, calibration_cache=cache, **settings)
            paths[key] = path
            rows.append({"key": key, "description": desc,
                         "settings": {k: v for k, v in r["settings"].items() if k not in ("extra_options",)
                                      and (v is not None or k in settings)},
                         "psnr_vs_fp32": round(r["psnr_db"], 2), "psnr_vs_fp32_min": round(r["psnr_min_db"], 2),
                         "census_all": census_row(runtime_census(path, disabled_optimizers=())),
                         "census_no_nhwc": census_row(runtime_census(path, disabled_optimizers=NO_NHWC)),
                         "seconds_to_quantize": round(time.perf_counter() - t0, 1)})
            print(f"  quantized {key:18s} PSNR vs fp32 {r['psnr_db']:.2f} dB "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        default_key = "u8s8_channel_7bit"                     # quantize_student's defaults

        # speed: each variant timed in its own group with fp32, so that every ratio comes from runs seconds apart:
        # ALL (as the engine opens models today) and ALL without the NhwcTransformer (as the int8 model asks)
        feed = {"frame": to_input(frames[90]), "style": to_style(vecs[TEMPORAL_STYLE])}
        fp32 = open_session(model, threads=args.threads)
        fp32_ms = []
        for row in rows:
            group = {"fp32": fp32,
                     "all": open_session(paths[row["key"]], threads=args.threads, disabled_optimizers=()),
                     "no_nhwc": open_session(paths[row["key"]], threads=args.threads, disabled_optimizers=NO_NHWC)}
            t = paired_timing(group, feed, reps)
            fp32_ms.append(t["fp32"]["ms"])
            row["fp32_ms_in_group"] = t["fp32"]["ms"]
            row["fp32_cpu_ms_in_group"] = t["fp32"]["cpu_ms"]
            for mode in ("all", "no_nhwc"):
                row[f"speed_{mode}"] = t[mode]
        report["fp32"] = {"ms": round(float(np.median(fp32_ms)), 2),
                          "cpu_ms": round(float(np.median([r["fp32_cpu_ms_in_group"] for r in rows])), 2),
                          "census_all": census_row(runtime_census(model))}
        print("  timed the variants", flush=True)

        # optimisation levels: fp32 at each, then the default int8 model at each, both against fp32 ALL
        lv = {f"fp32 {label}": open_session(model, threads=args.threads, level=level, disabled_optimizers=dis)
              for label, level, dis in FP32_LEVELS}
        base = "fp32 ALL (engine default)"
        lv_speed = paired_timing(lv, feed, reps, base=base)
        q8 = paths[default_key]
        int8_lv = {base: lv[base],
                   "int8 EXTENDED": open_session(q8, threads=args.threads, level="extended", disabled_optimizers=()),
                   "int8 ALL": open_session(q8, threads=args.threads, disabled_optimizers=()),
                   "int8 ALL without NHWC": open_session(q8, threads=args.threads, disabled_optimizers=NO_NHWC)}
        # the headline comparison: twice the repeats
        lv_speed.update({k: v for k, v in paired_timing(int8_lv, feed, 2 * reps, base=base).items() if k != base})
        report["levels"] = [{"model": k, **v} for k, v in lv_speed.items()]
        for label, level, dis in FP32_LEVELS:
            report["levels"][[r["model"] for r in report["levels"]].index(f"fp32 {label}")]["census"] = census_row(
                runtime_census(model, level=level, disabled_optimizers=dis))
        one = paired_timing({"fp32": open_session(model, threads=1),
                             "int8": open_session(q8, threads=1, disabled_optimizers=NO_NHWC)}, feed, 2 * reps)
        report["one_thread"] = one
        print("  timed the optimisation levels", flush=True)

        # where the time goes
        report["profile_ms"] = profile({"fp32 ALL": (model, ()), "int8 ALL": (q8, ()),
                                        "int8 ALL without NHWC": (q8, NO_NHWC),
                                        "int8 quick try, ALL": (paths["s8s8_tensor"], ())},
                                       feed, args.threads, 5 if args.quick else 12)
        print("  profiled", flush=True)

        # quality: teacher at 384x384 crops, temporal stability on consecutive frames
        q_sessions = {"fp32": fp32, **{k: open_session(p, threads=args.threads) for k, p in paths.items()}}
        crop_frames = clip_frames(682, 384)
        crops = [center_crop(crop_frames[i], 384) for i in range(20, 240, 80 if args.quick else 40)]
        qual = quality(q_sessions, teacher, crops, {n: vecs[n] for n in QUALITY_STYLES})
        n_t = 8 if args.quick else 24
        ew = temporal(q_sessions, frames[60:60 + n_t], vecs[TEMPORAL_STYLE])
        report["fp32"].update(qual["fp32"], ewarp=ew["fp32"][0], ewarp_flow=ew["fp32"][1])
        report["ewarp_input_frames"] = ew["input frames"][0]
        for row in rows:
            row.update(qual[row["key"]], ewarp=ew[row["key"]][0], ewarp_flow=ew[row["key"]][1])
        report["quality_pairs"] = {"crops": len(crops), "styles": list(QUALITY_STYLES), "side": 384,
                                   "ewarp_frames": n_t, "ewarp_style": TEMPORAL_STYLE, "ewarp_first_frame": 60}
    report["variants"] = rows
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print_tables(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return report


def print_tables(r: dict) -> None:
    f = r["fp32"]
    print(f"\nspeed, model only, {r['frame_size'][0]}x{r['frame_size'][1]}, {r['threads']} threads; each int8 model "
          "timed in a group with fp32 ALL; x = median of the per-repeat ratios; CPU = process CPU time per run")
    print("| model | int8 / float convs (ALL) | Transpose (ALL) | ALL ms | x | ALL CPU ms | x "
          "| w/o NHWC ms | x | w/o NHWC CPU ms | x |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| fp32 | 0 / {f['census_all']['Conv']} | 0 | {f['ms']:.1f} | 1 | {f['cpu_ms']:.1f} | 1 | | | | |")
    for v in r["variants"]:
        c, a, n = v["census_all"], v["speed_all"], v["speed_no_nhwc"]
        print(f"| {v['description']} | {c['QLinearConv']} / {c['Conv']} | {c['Transpose']} | {a['ms']:.1f} "
              f"| {a['ratio']:.2f} | {a['cpu_ms']:.1f} | {a['cpu_ratio']:.2f} | {n['ms']:.1f} | {n['ratio']:.2f} "
              f"| {n['cpu_ms']:.1f} | {n['cpu_ratio']:.2f} |")
    print("\nquality: PSNR vs fp32 (held-out clip frames, 640x360); SSIM/4 vs teacher and style score (384x384 crops); "
          "E_warp (consecutive clip frames, 640x360)")
    print("| model | PSNR vs fp32 dB | SSIM/4 vs teacher | style score | E_warp per frame | x fp32 "
          "| E_warp + flow smoothing | x fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| fp32 | – | {f['ssim4']:.3f} | {f['style_score']:.3f} | {f['ewarp']:.5f} | 1.00 | {f['ewarp_flow']:.5f} "
          "| 1.00 |")
    for v in r["variants"]:
        print(f"| {v['description']} | {v['psnr_vs_fp32']:.1f} | {v['ssim4']:.3f} | {v['style_score']:.3f} "
              f"| {v['ewarp']:.5f} | {v['ewarp'] / f['ewarp']:.2f} | {v['ewarp_flow']:.5f} "
              f"| {v['ewarp_flow'] / f['ewarp_flow']:.2f} |")
    print("\noptimisation levels (same protocol)")
    print("| model, level | ms | x | CPU ms | x |")
    print("|---|---|---|---|---|")
    for row in r["levels"]:
        print(f"| {row['model']} | {row['ms']:.1f} | {row['ratio']:.2f} | {row['cpu_ms']:.1f} "
              f"| {row['cpu_ratio']:.2f} |")
    o = r["one_thread"]
    print(f"\n1 thread: fp32 {o['fp32']['ms']:.1f} ms (CPU {o['fp32']['cpu_ms']:.1f}), int8 default w/o NHWC "
          f"{o['int8']['ms']:.1f} ms (CPU {o['int8']['cpu_ms']:.1f}): x{o['int8']['ratio']:.2f} wall, "
          f"x{o['int8']['cpu_ratio']:.2f} CPU")
    print("\nprofile, ms per frame by part (median per node over the profiled runs)")
    keys = list(r["profile_ms"])
    parts = sorted({p for v in r["profile_ms"].values() for p in v if p != "total"},
                   key=lambda p: -r["profile_ms"][keys[0]].get(p, 0))
    print("| part | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for p in parts + ["total"]:
        print(f"| {p} | " + " | ".join(f"{r['profile_ms'][k].get(p, 0):.2f}" for k in keys) + " |")
    print(f"\n{r['seconds']:.0f} s; load average {r['machine']['load_average']} at the start, "
          f"{r['machine']['load_average_end']} at the end")


if __name__ == "__main__":
    main()
