"""``streamer styles`` and ``streamer info``: what is bundled, and what can run here."""
from __future__ import annotations

import json
import platform

import av
import cv2
import numpy
import onnxruntime

from engines.select import backend_report
from streamer import __version__
from streamer.cli.options import add_report_flags
from streamer.model_registry import STUDENT_ONNX, default_model
from streamer.styles import bundled_styles


def register(sub) -> None:
    p = sub.add_parser("styles", help="list the bundled styles")
    add_report_flags(p)
    p.set_defaults(func=cmd_styles)
    p = sub.add_parser("info", help="versions, models and which backends can run here")
    add_report_flags(p)
    p.set_defaults(func=cmd_info)


def cmd_styles(args) -> int:
    styles = bundled_styles()
    if args.json:
        print(json.dumps({name: str(path) for name, path in styles.items()}))
    else:
        for name, path in styles.items():
            print(f"{name:24} {path}")
    return 0


def cmd_info(args) -> int:
    info = {
        "streamer": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "numpy": numpy.__version__, "av": av.__version__,
        "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
        "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__,
        "default_model": default_model(), "student_onnx": str(STUDENT_ONNX) if STUDENT_ONNX.is_file() else None,
        "backends": [{"name": n, "available": ok, "reason": why} for n, ok, why in backend_report()],
    }
    if args.json:
        print(json.dumps(info))
        return 0
    for key in ("streamer", "python", "platform", "numpy", "av", "opencv", "onnxruntime", "default_model"):
        print(f"{key:14} {info[key]}")
    print(f"{'ffmpeg':14} libavcodec {info['ffmpeg'].get('libavcodec')}, libavformat {info['ffmpeg'].get('libavformat')}")
    print("backends:")
    for b in info["backends"]:
        print(f"  {b['name']:12} {'yes' if b['available'] else 'no ':3}  {b['reason']}")
    return 0
