"""An 8K still (7680x4320) at native resolution on the CPU: time and peak memory, tiled against untiled.

    python -m benchmarks.tiling [--model student] [--tile 1024] [--json benchmarks/tiling.json]

Each run is a fresh `streamer convert` process (peak RSS: `streamer.bench.peak_rss_mb`), so one run's memory cannot hide another's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.bench import machine_info  # noqa: E402
from streamer.sample_media import painting  # noqa: E402

PROBE = ("import json, sys, time; from streamer.bench import peak_rss_mb; from streamer.cli import run; "
         "t = time.perf_counter(); c = run(sys.argv[1:]); "
         "print(json.dumps({'code': c, 'seconds': time.perf_counter() - t, 'rss_mb': peak_rss_mb()}))")


def convert(src: Path, dst: Path, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, "convert", str(src), str(dst), "--max-size", "0", "-q", "-y", *args],
                       capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        return {"code": p.returncode, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="student")
    ap.add_argument("--tile", default="1024")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "tiling.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "8k.png"
        cv2.imwrite(str(src), cv2.cvtColor(cv2.resize(painting("hokusai_bridge"), (7680, 4320),
                                                      interpolation=cv2.INTER_CUBIC), cv2.COLOR_RGB2BGR))
        runs = {"tiled": convert(src, Path(tmp) / "t.png", "--tile", args.tile, "--model", args.model),
                "untiled": convert(src, Path(tmp) / "u.png", "--tile", "0", "--model", args.model)}
        if runs["tiled"].get("code") == 0 and runs["untiled"].get("code") == 0:
            a, b = cv2.imread(str(Path(tmp) / "t.png")), cv2.imread(str(Path(tmp) / "u.png"))
            runs["tiled_vs_untiled_max_abs_diff"] = int(abs(a.astype(int) - b.astype(int)).max())
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "model": args.model, "size": "7680x4320",
              "tile": int(args.tile), "runs": runs}
    m = report["machine"]
    print(f"{report['date']} {m['cpu']}, {m['cores']} cores, flags {' '.join(m['cpu_flags'])}; model {args.model}")
    for name in ("tiled", "untiled"):
        r = runs[name]
        print(f"{name:8} " + (f"{r['seconds']:6.1f} s  peak {r['rss_mb']:7.0f} MB" if r.get("code") == 0 else r["error"]))
    if "tiled_vs_untiled_max_abs_diff" in runs:
        print(f"largest pixel difference tiled vs untiled: {runs['tiled_vs_untiled_max_abs_diff']} gray levels")
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
