"""Contact sheets to judge students by eye, next to the teacher: what no number says (crosshatch, sepia, no swirls).

Rows: every bundled style on a frame of the bundled sample clip; the held-out paintings on held-out photos (from
a prepared cache's manifest, so training never saw either); two styles on a flat noisy field, where a periodic
pattern shows most. Columns: content | style | teacher | each model given.

    python -m benchmarks.student_sheets --data cache/prep2000 --model v1=streamer/models/student_v1.onnx \\
        --model live=streamer/models/student_live.onnx --out benchmarks/figures/student_sheet.jpg
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from distill.evaluate import _StudentRunner, flat_field, heldout_files  # noqa: E402
from distill.teacher import Teacher  # noqa: E402
from streamer.media_files import center_square, read_image  # noqa: E402
from streamer.styles import bundled_styles  # noqa: E402

TILE = 224
SAMPLE = REPO / "streamer" / "assets" / "sample.mp4"


def sample_frame(index: int = 120) -> np.ndarray:
    with av.open(str(SAMPLE)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise ValueError(f"{SAMPLE}: fewer than {index + 1} frames")


def cases(data: str, photos: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, content, style image) rows."""
    frame = sample_frame()
    rows = [(f"sample.mp4 x {name}", frame, read_image(path)) for name, path in bundled_styles().items()]
    contents, styles = heldout_files(data, None, None)
    for spath in styles:
        for cpath in contents[:photos]:
            rows.append((f"{cpath.stem} x {spath.stem}", read_image(cpath), read_image(spath)))
    flat = flat_field(384)
    for name in ("kandinsky", "starry_night"):
        rows.append((f"flat field x {name}", flat, read_image(bundled_styles()[name])))
    return rows


def fit(img: np.ndarray, side: int = 384) -> np.ndarray:
    """The content at the size it is stylized: 384 on the longer side (the teacher's limit), multiples of 8."""
    h, w = img.shape[:2]
    s = side / max(h, w)
    return cv2.resize(img, (max(8, round(w * s / 8) * 8), max(8, round(h * s / 8) * 8)), interpolation=cv2.INTER_AREA)


def tile(img: np.ndarray) -> np.ndarray:
    return cv2.resize(center_square(img, TILE), (TILE, TILE), interpolation=cv2.INTER_AREA)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a prepared cache (its manifest names the held-out files)")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="student .onnx or .pt")
    ap.add_argument("--photos", type=int, default=2, help="held-out photos per held-out painting")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    models = [(spec.split("=", 1)[0], _StudentRunner(spec.split("=", 1)[1])) for spec in args.model]
    teacher = Teacher()
    labels = ["content", "style", "teacher", *[name for name, _ in models]]
    pad, header, label_h = 4, 24, 16
    rows = cases(args.data, args.photos)
    canvas = np.full((header + len(rows) * (TILE + label_h + pad), len(labels) * (TILE + pad) + pad, 3), 255, np.uint8)
    for c, name in enumerate(labels):
        cv2.putText(canvas, name, (pad + c * (TILE + pad) + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for r, (label, content, style_img) in enumerate(rows):
        content = fit(content)
        vec = teacher.style_vector(style_img)
        imgs = [content, style_img, teacher.stylize(content, vec), *[m(content, vec) for _, m in models]]
        y = header + r * (TILE + label_h + pad)
        cv2.putText(canvas, label, (pad + 2, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
        for c, img in enumerate(imgs):
            x = pad + c * (TILE + pad)
            canvas[y + label_h:y + label_h + TILE, x:x + TILE] = tile(img)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
