"""``streamer styles`` and ``streamer info``: what is bundled, and what can run here."""
from __future__ import annotations

import json
import platform

import av
import cv2
import numpy
import onnxruntime

from engines.onnxruntime import available_providers, resolve_provider
from engines.select import backend_report
from streamer import __version__
from streamer.cli.options import add_report_flags
from streamer.model_registry import bundled_tiers, default_model, tuned_styles
from streamer.styles import bundled_styles


def register(sub) -> None:
    p = sub.add_parser("styles", help="list the bundled styles")
    add_report_flags(p)
    p.set_defaults(func=cmd_styles)
    p = sub.add_parser("info", help="versions, models and which backends can run here")
    add_report_flags(p)
    p.set_defaults(func=cmd_info)


def cmd_styles(args) -> int:
    """Each bundled style, its file, and the tiers that ship tuned for it (used by themselves when the run's
    style is fixed; the score is the tuner's held-out style score, arbitrary -> tuned, 1.0 = the teacher)."""
    styles = bundled_styles()
    tuned = {tier: tuned_styles(tier) for tier in bundled_tiers()}
    rows = {name: {"path": str(path), "tuned": {tier: tuned_row(tier, name, entries[name])
                                                for tier, entries in tuned.items() if name in entries}}
            for name, path in styles.items()}
    if args.json:
        print(json.dumps(rows))
        return 0
    for name, row in rows.items():
        notes = [f"tuned for {tier} (style score {t['style_score_before']:.2f} -> {t['style_score_after']:.2f})"
                 for tier, t in row["tuned"].items()]
        print(f"{name:24} {row['path']}" + (f"  {'; '.join(notes)}" if notes else ""))
    return 0


def tuned_row(tier: str, style: str, entry: dict) -> dict:
    return {"model": f"{tier}/{style}", "style_score_before": entry.get("before", {}).get("style_score"),
            "style_score_after": entry.get("after", {}).get("style_score")}


def cmd_info(args) -> int:
    info = {
        "streamer": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "numpy": numpy.__version__, "av": av.__version__,
        "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
        "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__,
        "default_model": {"file_cpu": default_model("file"), "file_gpu": default_model("file", gpu=True),
                          "live": default_model("live")},
        "bundled_students": bundled_tiers(),
        "backends": [{"name": n, "available": ok, "reason": why} for n, ok, why in backend_report()],
        "onnxruntime_providers": available_providers(),
        "student_provider": resolve_provider("auto"),
    }
    if args.json:
        print(json.dumps(info))
        return 0
    for key in ("streamer", "python", "platform", "numpy", "av", "opencv", "onnxruntime", "bundled_students",
                "default_model", "student_provider"):
        print(f"{key:17} {info[key]}")
    print(f"{'ffmpeg':17} libavcodec {info['ffmpeg'].get('libavcodec')}, libavformat {info['ffmpeg'].get('libavformat')}")
    print("backends:")
    for b in info["backends"]:
        print(f"  {b['name']:12} {'yes' if b['available'] else 'no ':3}  {b['reason']}")
    return 0
