"""The teacher against itself: how far its own picture moves, in `distill eval`'s measures, when its input changes
in ways a viewer would not call another photo (mirrored and mirrored back, moved 8 px, JPEG q90, sensor noise, a
trip through 320 px), or when it runs at half resolution.

    python -m benchmarks.teacher_floor --data cache/prep2000 [--json benchmarks/teacher_floor.json]

Why: a student's colour error and SSIM/4 are measured against the teacher's exact picture. A network that paints the
photo as well as the teacher but not identically scores below 1 on them too; these rows say how far, so a target
can be read against them (RESULTS, "The teacher against itself").
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distill.evaluate import heldout_files  # noqa: E402
from distill.teacher import Teacher  # noqa: E402
from streamer.bench import machine_info  # noqa: E402
from streamer.media_files import center_square, read_image  # noqa: E402
from streamer.metrics import color_error, downscale, ssim, style_score  # noqa: E402

SIDE = 384


def variants(teacher: Teacher, img: np.ndarray, vec: np.ndarray) -> dict[str, np.ndarray]:
    """The teacher's picture of `img` made another way, each brought back onto `img`'s pixel grid."""
    out = {"mirrored, mirrored back": np.ascontiguousarray(teacher.stylize(img[:, ::-1].copy(), vec)[:, ::-1])}
    pad = cv2.copyMakeBorder(img, 8, 8, 8, 8, cv2.BORDER_REFLECT)
    moved = teacher.stylize(np.ascontiguousarray(pad[16:16 + SIDE, 16:16 + SIDE]), vec)   # the photo 8 px up-left
    out["moved 8 px, moved back"] = cv2.copyMakeBorder(moved, 8, 0, 8, 0, cv2.BORDER_REFLECT)[:SIDE, :SIDE]
    jpeg = cv2.imdecode(cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
    out["JPEG q90"] = teacher.stylize(np.ascontiguousarray(jpeg[:, :, ::-1]), vec)
    noisy = img.astype(np.float32) + np.random.default_rng(0).normal(0, 2, img.shape)
    out["sensor noise, sigma 2"] = teacher.stylize(np.clip(noisy, 0, 255).astype(np.uint8), vec)
    small = cv2.resize(img, (320, 320), interpolation=cv2.INTER_AREA)
    out["through 320 px"] = teacher.stylize(cv2.resize(small, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC), vec)
    half = cv2.resize(img, (SIDE // 2, SIDE // 2), interpolation=cv2.INTER_AREA)
    # the teacher's graph is fixed at 384: a half-size frame is the photo's half in the middle of a reflected border
    framed = cv2.copyMakeBorder(half, SIDE // 4, SIDE // 4, SIDE // 4, SIDE // 4, cv2.BORDER_REFLECT)
    centre = teacher.stylize(framed, vec)[SIDE // 4:-(SIDE // 4), SIDE // 4:-(SIDE // 4)]
    out["at half resolution, in a reflected border"] = cv2.resize(centre, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a prepared cache: its held-out photos and paintings")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "teacher_floor.json")
    a = ap.parse_args(argv)
    photos, paintings = heldout_files(a.data, None, None)
    teacher = Teacher(a.threads)
    vectors = [teacher.style_vector(read_image(p)) for p in paintings]
    rows: dict[str, dict[str, list[float]]] = {}
    photo_errors = []
    for path in photos:
        img = center_square(read_image(path), SIDE)
        e_photo = teacher.style_vector(img)
        for vec in vectors:
            ref = teacher.stylize(img, vec)
            e_ref = teacher.style_vector(ref)
            photo_errors.append(color_error(img, ref))
            for name, out in variants(teacher, img, vec).items():
                r = rows.setdefault(name, {"colour": [], "style": [], "ssim4": []})
                r["colour"].append(color_error(out, ref))
                r["style"].append(style_score(e_photo, teacher.style_vector(out), e_ref, vec))
                r["ssim4"].append(ssim(downscale(out), downscale(ref)))
        print(f"{path.name}: done", file=sys.stderr, flush=True)
    baseline = float(np.mean(photo_errors))
    table = {name: {"colour_error_ratio": round(float(np.mean(r["colour"])) / baseline, 3),
                    "style_score": round(float(np.mean(r["style"])), 3),
                    "ssim_quarter": round(float(np.mean(r["ssim4"])), 3)} for name, r in rows.items()}
    for name, v in table.items():
        print(f"{name:26s} colour {v['colour_error_ratio']:.3f}  style {v['style_score']:.3f}  "
              f"SSIM/4 {v['ssim_quarter']:.3f}")
    a.json.write_text(json.dumps({"date": datetime.date.today().isoformat(), "machine": machine_info(),
                                  "command": "python -m benchmarks.teacher_floor --data " + a.data,
                                  "pairs": len(photo_errors), "rows": table}, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
