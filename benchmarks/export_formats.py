"""Export formats side by side: file size, load time, ms per 640x360 frame on this CPU with each format's own
runtime, and quality (SSIM/4 against the teacher, style score, PSNR against ONNX Runtime fp32).

    python -m benchmarks.export_formats [--weights streamer/models/student_live.pt] [--runs 20]
                                        [--json benchmarks/export_formats.json]

Every format is written by `distill export --format` (so it has passed its own check) into a temporary folder.
A format whose check fails is still measured (written without the check) and marked, so the table says why it
is missing from what `distill export` will write.  Speed: 640x360, batch 1, all cores for every runtime, the
median of ``--runs`` after 3 warm-up runs, formats in turn in one process.  Quality: 6 bundled photos x 2
bundled styles at 384x384 (the teacher's size; TFLite is exported a second time at that size).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distill import export_formats as ef  # noqa: E402
from distill.quantize import to_uint8  # noqa: E402
from distill.teacher import Teacher  # noqa: E402
from streamer.bench import machine_info, shown_path  # noqa: E402
from streamer.media_files import center_square, read_image  # noqa: E402
from streamer.metrics import downscale, psnr, ssim, style_score  # noqa: E402

SPEED_SIZE, QUALITY_SIDE = (640, 360), 384
STYLES = ("starry_night", "kandinsky")


def write(weights: str, out: Path, fmt: str, size: tuple[int, int]) -> str:
    """Export through the checked path; on a failed check, write it unchecked to measure it anyway."""
    try:
        ef.export_format(weights, str(out), fmt, size=size)
        return "passed"
    except ef.ExportCheckError as exc:
        with tempfile.TemporaryDirectory() as tmp:
            job = ef.Job(weights, out, Path(tmp), size, lambda: ef.Frames(
                ef.video_frames(ef.SAMPLE_CLIP, ef.CALIB_FRAMES, size), ef.style_vectors(ef.CALIB_STYLES)))
            ef.WRITERS[fmt](job)
        return f"fails its check ({exc.report['psnr_db']:.1f} dB < {exc.report['min_psnr_db']:g})"


def speed(path: Path, fmt: str, runs: int) -> dict:
    threads = os.cpu_count()
    t0 = time.perf_counter()
    run = ef.RUNNERS[fmt](path, threads)
    load_ms = (time.perf_counter() - t0) * 1000
    w, h = SPEED_SIZE
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    s = np.random.default_rng(1).standard_normal((1, 100)).astype(np.float32)
    times = []
    for i in range(runs + 3):
        t = time.perf_counter()
        run(x, s)
        if i >= 3:
            times.append((time.perf_counter() - t) * 1000)
    return {"load_ms": round(load_ms, 1), "ms_per_frame": round(statistics.median(times), 2)}


def photo_set() -> list[np.ndarray]:
    """Six of the bundled photos (every fourth by name), center squares at the teacher's size."""
    from streamer.media_files import is_image

    files = sorted(p for p in (REPO / "streamer" / "assets" / "photos").iterdir() if is_image(p))[::4][:6]
    return [center_square(read_image(p), QUALITY_SIDE) for p in files]


def quality(run, reference, teacher: Teacher, photos, styles) -> dict:
    rows = []
    for img in photos:
        e_photo = teacher.style_vector(img)
        x = ef.to_input(img)
        for vec in styles:
            s = vec.reshape(1, -1).astype(np.float32)
            out, ref = to_uint8(run(x, s), *img.shape[:2]), to_uint8(reference(x, s), *img.shape[:2])
            t = teacher.stylize(img, vec)
            rows.append({"ssim_quarter": ssim(downscale(out), downscale(t)),
                         "style_score": style_score(e_photo, teacher.style_vector(out), teacher.style_vector(t), vec),
                         "psnr_vs_fp32": min(psnr(out, ref), 99.0)})
    return {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(REPO / "streamer" / "models" / "student_live.pt"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--formats", default=",".join(ef.FORMATS))
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "export_formats.json"))
    args = ap.parse_args(argv)
    teacher = Teacher(threads=os.cpu_count())
    photos, styles = photo_set(), ef.style_vectors(STYLES)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "reference.onnx"
        ef.export_format(args.weights, str(ref_path), "onnx", size=SPEED_SIZE)
        reference = ef.onnx_runner(ref_path, os.cpu_count())
        for fmt in args.formats.split(","):
            ext = {"torchscript": ".pt", "tflite": ".tflite", "tflite-int8": ".tflite"}.get(fmt, ".onnx")
            path = Path(tmp) / f"{fmt}{ext}"
            status = write(args.weights, path, fmt, SPEED_SIZE)
            row = {"status": status, "mb": round(path.stat().st_size / 1e6, 2), **speed(path, fmt, args.runs)}
            qpath = path
            if fmt.startswith("tflite"):                 # fixed shape: a second file at the quality size
                qpath = Path(tmp) / f"{fmt}-q{ext}"
                write(args.weights, qpath, fmt, (QUALITY_SIDE, QUALITY_SIDE))
            row.update(quality(ef.RUNNERS[fmt](qpath, os.cpu_count()), reference, teacher, photos, styles))
            rows[fmt] = row
            print(fmt, row, flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "weights": shown_path(args.weights),
              "command": "python -m benchmarks.export_formats " + " ".join(argv if argv is not None else sys.argv[1:]),
              "speed_size": list(SPEED_SIZE), "quality": f"{len(photos)} photos x {len(styles)} styles at "
              f"{QUALITY_SIDE}x{QUALITY_SIDE}", "formats": rows}
    Path(args.json).write_text(json.dumps(report, indent=1))
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, flags {' '.join(m['cpu_flags'])}")
    print(f"{'format':12} {'MB':>6} {'load ms':>8} {'ms/frame':>9} {'SSIM/4':>7} {'style':>6} {'PSNR fp32':>9}  check")
    for fmt, r in rows.items():
        print(f"{fmt:12} {r['mb']:6.2f} {r['load_ms']:8.1f} {r['ms_per_frame']:9.2f} {r['ssim_quarter']:7.3f} "
              f"{r['style_score']:6.3f} {r['psnr_vs_fp32']:9.1f}  {r['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
