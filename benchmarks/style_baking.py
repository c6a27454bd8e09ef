"""Style baking (engines/style_baking.py): model-only time at 640x360 on ONNX Runtime CPU, with the style an input
and with it baked in as a constant, for the bundled tiers and for the peer multistyle26, interleaved in one run.

    python -m benchmarks.style_baking [--threads 2] [--repeats 40] [--json benchmarks/style_baking.json]

The live tier's target is >= 5x multistyle26 model-only; both ratios are written: against the peer as its package
runs it (style weights fed on every call) and against the peer baked as well.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from streamer.bench import machine_info  # noqa: E402
from streamer.engine_timing import sample_batch, time_engines  # noqa: E402
from streamer.peers import Multistyle26Engine  # noqa: E402
from streamer.styles import StyleEncoder  # noqa: E402

MODELS = REPO / "streamer" / "models"
SIZE = (640, 360)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "style_baking.json"))
    a = ap.parse_args(argv)
    style = StyleEncoder().encode("starry_night").reshape(1, -1)
    frames = sample_batch(*SIZE, 1)
    cases = {}
    for tier in ("student_live", "student_hq", "teacher_video"):
        for baked in (False, True):
            engine = OnnxRuntimeEngine(MODELS / f"{tier}.onnx", threads=a.threads, bake_style=baked)
            cases[f"{tier} {'baked' if baked else 'input'}"] = (engine, frames)
    for baked in (False, True):
        cases[f"multistyle26 {'baked' if baked else 'input'}"] = (
            Multistyle26Engine(threads=a.threads, bake_style=baked), frames)
    times = time_engines(cases, style, warmup=3, repeats=a.repeats)   # warm-up: the baked engines bake on call 2
    for name, (engine, _) in cases.items():
        if not name.startswith("multistyle26") and name.endswith("baked"):
            assert engine.baked_styles == 1, name
    ms = {name: round(1000 * statistics.median(t), 2) for name, t in times.items()}
    ratios = {
        "live_baked_vs_input": round(ms["student_live input"] / ms["student_live baked"], 3),
        "hq_baked_vs_input": round(ms["student_hq input"] / ms["student_hq baked"], 3),
        "teacher_video_baked_vs_input": round(ms["teacher_video input"] / ms["teacher_video baked"], 3),
        "multistyle26_baked_vs_input": round(ms["multistyle26 input"] / ms["multistyle26 baked"], 3),
        "multistyle26_over_live (both as shipped: ours baked, the peer fed per call)":
            round(ms["multistyle26 input"] / ms["student_live baked"], 3),
        "multistyle26_over_live (both baked)": round(ms["multistyle26 baked"] / ms["student_live baked"], 3),
        "multistyle26_over_live (both fed per call)": round(ms["multistyle26 input"] / ms["student_live input"], 3),
    }
    result = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "size": f"{SIZE[0]}x{SIZE[1]}",
              "threads": a.threads, "repeats": a.repeats, "command": "python -m benchmarks.style_baking",
              "median_ms": ms, "ratios": ratios}
    for name, v in ms.items():
        print(f"{name:24s} {v:8.2f} ms")
    for name, v in ratios.items():
        print(f"{name}: {v}")
    Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.json}")
    for engine, _ in cases.values():
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
