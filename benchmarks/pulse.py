"""Pulse: how far a frame's colours move in a region that nothing touched, when something enters elsewhere.

    python -m benchmarks.pulse [--threads 2] [--json benchmarks/pulse.json]

Why: a network that normalizes by whole-frame statistics (the teacher) repaints the whole frame when a bright object
walks in at one edge: the wall on the other side changes colour on that very frame. E_warp (benchmarks/temporal.py)
averages over the frame and over time, so it hardly sees one such jump; this measures it directly.

The clip: a still photo at 384x216 (the teacher's largest side); from frame 10 a saturated disc, half the frame's
height across, slides in from the left edge over 12 frames and stays. Measured in the right third of the frame,
which the disc never reaches (mean CIE76 delta E against the previous frame, on the model's output):
- `jump`: the largest change between two consecutive frames (the pulse a viewer sees);
- `drift`: the change from the last frame before the disc to the last frame (where the colours settle).
The input's own right third does not change at all, so every model's numbers are its own doing. Several photos,
each with each bundled style; the means are written, per model.

For a model that carries state (student-hq), a cut costs something too: `cut` is the mean delta E over the whole
frame between the first frame after a cut (from each photo to each other one) with the state carried over and the
same frame started afresh, and `cuts_detected` the share of those cuts the model noticed (delta E 0).
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

from engines.carried_state import start_afresh  # noqa: E402
from engines.onnxruntime import OnnxRuntimeEngine, TeacherEngine  # noqa: E402
from streamer.bench import machine_info  # noqa: E402
from streamer.metrics import lab  # noqa: E402
from streamer.styles import StyleEncoder  # noqa: E402

MODELS = REPO / "streamer" / "models"
PHOTOS = REPO / "streamer" / "assets" / "photos"
SIZE = (384, 216)                      # the teacher's graph is fixed at 384 px: every model at its size
BEFORE, ENTER, AFTER = 10, 12, 38      # frames before the disc, while it slides in, after it stops
DISC = (230, 40, 200)                  # a saturated magenta: far from every photo's mean


def clip(photo: Path) -> list[np.ndarray]:
    """The photo, then the disc sliding in from the left edge and stopping at a third of the width."""
    bg = cv2.cvtColor(cv2.resize(cv2.imread(str(photo)), SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    w, h = SIZE
    radius = h // 8
    frames = [bg.copy() for _ in range(BEFORE)]
    for i in range(ENTER + AFTER):
        x = int(-radius + (w // 3 - radius) * min(i + 1, ENTER) / ENTER)
        f = bg.copy()
        cv2.circle(f, (x + radius, h // 2), radius * 2, DISC, -1, lineType=cv2.LINE_AA)
        frames.append(f)
    return frames


def stylize(engine, frames: list[np.ndarray], style: np.ndarray) -> list[np.ndarray]:
    start_afresh(engine)
    out = []
    for f in frames:
        x = np.ascontiguousarray(f.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
        y = engine.infer(x, style)[0].transpose(1, 2, 0)
        out.append((np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out


def far_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean delta E between two outputs over the right third."""
    w = a.shape[1]
    return float(np.linalg.norm(lab(a[:, 2 * w // 3:]) - lab(b[:, 2 * w // 3:]), axis=-1).mean())


class PerFrame:
    """A stateful engine with its state dropped before every frame: the teacher's normalization, frame by frame."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def infer(self, frames: np.ndarray, style: np.ndarray) -> np.ndarray:
        self.engine.reset_state()
        return self.engine.infer(frames, style)


def cut_costs(engine, stills: list[np.ndarray], styles: dict[str, np.ndarray]) -> list[float]:
    """Delta E between a still stylized with the state another still left and the same still started afresh."""
    out = []
    for style in styles.values():
        for i, a in enumerate(stills):
            for j, b in enumerate(stills):
                if i != j:
                    fresh = stylize(engine, [b], style)[0]
                    carried = stylize(engine, [a, b], style)[1]
                    out.append(float(np.linalg.norm(lab(carried) - lab(fresh), axis=-1).mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", default="building.jpg,coffee.jpg,home.jpg,GreenMeadow.jpg")
    ap.add_argument("--styles", default="starry_night,kandinsky,mona_lisa")
    ap.add_argument("--hq", type=Path, default=MODELS / "student_hq.onnx", help="the high-quality tier's ONNX")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=ONNX", help="another student to measure")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "pulse.json")
    a = ap.parse_args(argv)
    hq = OnnxRuntimeEngine(a.hq, threads=a.threads, bake_style=False)
    models = {"teacher (whole-frame norms, 384 px)": TeacherEngine(threads=a.threads),
              "student-hq": hq, "student-hq, state dropped every frame": PerFrame(
                  OnnxRuntimeEngine(a.hq, threads=a.threads, bake_style=False)),
              "student-live": OnnxRuntimeEngine(MODELS / "student_live.onnx", threads=a.threads, bake_style=False)}
    if (MODELS / "teacher_video.onnx").is_file():   # the teacher's own network, its moments carried the same way
        models["teacher-video"] = OnnxRuntimeEngine(MODELS / "teacher_video.onnx", threads=a.threads, bake_style=False)
    for spec in a.extra:
        name, _, path = spec.partition("=")
        models[name] = OnnxRuntimeEngine(path, threads=a.threads, bake_style=False)
    encoder = StyleEncoder()
    styles = {s: encoder.encode(s).reshape(1, -1) for s in a.styles.split(",")}
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for photo in a.photos.split(","):
        frames = clip(PHOTOS / photo)
        for sname, style in styles.items():
            for name, engine in models.items():
                out = stylize(engine, frames, style)
                steps = [far_change(out[i], out[i - 1]) for i in range(BEFORE, len(out))]
                rows[name].append((max(steps), far_change(out[-1], out[BEFORE - 1])))
            print(f"{photo} x {sname}: " + ", ".join(f"{n.split(' ')[0]} {r[-1][0]:.2f}/{r[-1][1]:.2f}"
                                                     for n, r in rows.items()), file=sys.stderr, flush=True)
    cuts = cut_costs(hq, [clip(PHOTOS / p)[0] for p in a.photos.split(",")], styles)
    result = {
        "date": datetime.date.today().isoformat(), "machine": machine_info(), "size": list(SIZE),
        "command": "python -m benchmarks.pulse " + " ".join(argv if argv is not None else sys.argv[1:]),
        "pairs": len(next(iter(rows.values()))),
        "delta_e_far_third": {name: {"jump": round(float(np.mean([r[0] for r in v])), 3),
                                     "drift": round(float(np.mean([r[1] for r in v])), 3)}
                              for name, v in rows.items()},
        "student-hq after a cut": {"cut": round(float(np.mean(cuts)), 3),
                                   "cuts_detected": round(float(np.mean([c < 1e-3 for c in cuts])), 3),
                                   "cut_max": round(float(max(cuts)), 3), "cuts": len(cuts)},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
