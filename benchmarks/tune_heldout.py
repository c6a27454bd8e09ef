"""`streamer tune` on paintings no student has seen: style score, SSIM/4 and flicker before and after, per painting.

For each painting: `streamer tune PAINTING --out DIR/NAME.onnx` as a user runs it (a subprocess, default 5
minutes), then the base and the tuned model are scored side by side on the photos distillation holds out (none of
them bundled, so none tuned on), centre 384x384, with `distill.evaluate.pair_row` (style score, colour-transfer
baseline, SSIM/4 and colour error against the teacher, edge F-score, periodic peak), and their E_warp on the
synthetic clips of `benchmarks.temporal` (exact flow), per frame and with flow smoothing.

    python -m benchmarks.tune_heldout --data cache/prep2000 --json benchmarks/tune_heldout.json

Paintings: the three a prepared cache holds out of ``../shared/data/styles`` and the four of
``benchmarks/data/heldout_styles`` (its SOURCES.md), unless ``--painting`` names others.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.temporal import run_smoother, smoothers, stylize, synthetic_clips
from distill.evaluate import _StudentRunner, heldout_files, pair_row
from distill.teacher import Teacher
from engines.onnxruntime import OnnxRuntimeEngine
from streamer.bench import machine_info, shown_path
from streamer.media_files import center_square, read_image
from streamer.metrics import visible_masks, warping_error
from streamer.model_registry import resolve_model

REPO = Path(__file__).resolve().parents[1]
EXTRA_PAINTINGS = REPO / "benchmarks" / "data" / "heldout_styles"
MEASURES = ("style_score", "colortransfer_style_score", "ssim_quarter", "color_error", "baseline_color_error",
            "edge_f", "periodic_peak")


def score(model: str, teacher: Teacher, photos: list[np.ndarray], e_photos: list[np.ndarray], painting: np.ndarray,
          vec: np.ndarray) -> dict:
    """Means over the photos of every measure `distill eval` reports for one painting."""
    runner = _StudentRunner(model)
    rows = [pair_row(teacher, runner, img, e, painting, vec)[0] for img, e in zip(photos, e_photos)]
    out = {k: float(np.mean([r[k] for r in rows])) for k in MEASURES}
    out["color_error_ratio"] = out["color_error"] / max(out["baseline_color_error"], 1e-9)
    return out


def flicker(model: str, vec: np.ndarray, clips, threads: int) -> dict:
    """E_warp per frame and with flow smoothing, means over the clips (only ratios between the base and the tuned
    model are reported, so the teacher is not run)."""
    engine = OnnxRuntimeEngine(Path(model), threads=threads, name="student")
    ewarp = {"off": [], "flow": []}
    for clip in clips:
        stylized = stylize(engine, vec.reshape(1, -1), clip.frames)
        visible = visible_masks(clip.flows_back, clip.flows_fwd)
        for mode in ewarp:
            outs, _ = run_smoother(smoothers()[mode], clip.frames, stylized)
            ewarp[mode].append(warping_error(outs, clip.flows_back, visible)[0])
    return {mode: float(np.mean(v)) for mode, v in ewarp.items()}


def tune(painting: Path, out: Path, minutes: float, threads: int, base: str | None) -> dict:
    cmd = [sys.executable, "-m", "streamer", "tune", str(painting), "--out", str(out), "--minutes", str(minutes),
           "--threads", str(threads), "--json", "-y"]
    if base:
        cmd += ["--model", base]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{painting.name}: streamer tune failed: {proc.stderr.strip().splitlines()[-1:]}")
    report = json.loads(proc.stdout)
    report["wall_s"] = round(time.time() - t0, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a prepared cache: its held-out photos and paintings")
    ap.add_argument("--painting", action="append", type=Path, help="paintings to tune on (default: every held-out one)")
    ap.add_argument("--minutes", type=float, default=5.0, help="tuning budget per painting (streamer tune's default)")
    ap.add_argument("--model", help="the base, a bundled tier (default: student-live, the tier the first results used)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--clips", type=int, default=3, help="synthetic clips for E_warp (24 frames each)")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)

    photo_files, cache_paintings = heldout_files(args.data, None, None)
    paintings = args.painting or cache_paintings + sorted(EXTRA_PAINTINGS.glob("*.jpg"))
    spec = resolve_model(args.model or "student-live")
    if spec.onnx is None:
        raise SystemExit(f"{spec.name}: no ONNX file to score the base with (give a bundled tier)")
    teacher = Teacher(threads=args.threads)
    photos = [center_square(read_image(p), 384) for p in photo_files]
    e_photos = [teacher.style_vector(p) for p in photos]
    clips = synthetic_clips(24, args.clips)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tune-heldout-") as tmp:
        for painting in paintings:
            img = read_image(painting)
            vec = teacher.style_vector(img)
            tuned = Path(tmp) / f"{painting.stem}.onnx"
            run = tune(painting, tuned, args.minutes, args.threads, args.model)
            base = str(spec.onnx)
            row = {"painting": painting.name, "steps": run.get("steps"), "best_step": run.get("best_step"),
                   "tune_wall_s": run["wall_s"], "tuner_heldout": {"before": run["before"], "after": run["after"]},
                   "before": score(base, teacher, photos, e_photos, img, vec),
                   "after": score(str(tuned), teacher, photos, e_photos, img, vec)}
            row["before"]["ewarp"] = flicker(base, vec, clips, args.threads)
            row["after"]["ewarp"] = flicker(str(tuned), vec, clips, args.threads)
            rows.append(row)
            b, a = row["before"], row["after"]
            print(f"{painting.name:44s} style {b['style_score']:.3f} -> {a['style_score']:.3f} "
                  f"(colour transfer {b['colortransfer_style_score']:.3f})  SSIM/4 {b['ssim_quarter']:.3f} -> "
                  f"{a['ssim_quarter']:.3f}  E_warp+flow x{a['ewarp']['flow'] / b['ewarp']['flow']:.2f}  "
                  f"{row['steps']} steps", flush=True)
            if args.json:     # after every painting: a long run that stops keeps what it measured
                write_json(args, argv, photo_files, rows)
    print(json.dumps(summarize(rows)))
    if args.json:
        print(f"wrote {shown_path(args.json)}")
    return 0


def summarize(rows: list[dict]) -> dict:
    return {"paintings": len(rows),
            "mean_style_before": float(np.mean([r["before"]["style_score"] for r in rows])),
            "mean_style_after": float(np.mean([r["after"]["style_score"] for r in rows])),
            "min_style_after": float(min(r["after"]["style_score"] for r in rows)),
            "mean_colortransfer": float(np.mean([r["before"]["colortransfer_style_score"] for r in rows])),
            "mean_ssim_before": float(np.mean([r["before"]["ssim_quarter"] for r in rows])),
            "mean_ssim_after": float(np.mean([r["after"]["ssim_quarter"] for r in rows])),
            "ewarp_flow_ratio_max": float(max(r["after"]["ewarp"]["flow"] / r["before"]["ewarp"]["flow"] for r in rows))}


def write_json(args: argparse.Namespace, argv: list[str] | None, photo_files: list[Path], rows: list[dict]) -> None:
    args.json.write_text(json.dumps({
        "command": "python -m benchmarks.tune_heldout " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"), "model": args.model or "student-live", "minutes": args.minutes,
        "threads": args.threads, "photos": [p.name for p in photo_files], "summary": summarize(rows),
        "paintings": rows, "machine": {k: v for k, v in machine_info().items() if k != "node"}}, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
