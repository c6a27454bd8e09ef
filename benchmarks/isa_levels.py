"""The speed targets on an AVX2-only CPU, measured on this one: `benchmarks.style_baking` run twice per level,
alternating, once as the machine is and once with AVX-512, AMX and AVX-VNNI hidden from the process
(`benchmarks/cpuid_mask.c`, preloaded), so ONNX Runtime runs the kernels an AVX2-only CPU gets.

    python -m benchmarks.isa_levels [--threads 2] [--repeats 30] [--rounds 2] [--json benchmarks/isa_levels.json]

What it measures is the instruction set's share of the difference between machines, not their clocks, caches or
memory: compare the ratios (student-live vs multistyle26 in one process), not the milliseconds. Needs a C compiler
and Linux CPUID faulting (the `cpuid_fault` flag in /proc/cpuinfo); it says so and stops when either is missing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.bench import machine_info  # noqa: E402

FEATURES = ("AVX2", "FMA3", "AVX512F", "AVX512_SKX", "AVX512_CLX", "AVX512_SPR")
LEVELS = ("native", "avx2")


def why_no_mask() -> str | None:
    """Why features cannot be hidden on this machine, or None when they can (the benchmark and its test both ask)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "cpuid_fault" not in cpuinfo.read_text():
        return "this CPU or kernel has no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "needs a C compiler (cc) to build benchmarks/cpuid_mask.c"
    return None


def build_mask(folder: Path) -> Path:
    """Compile the preload library; a one-line reason when this machine cannot run it."""
    why = why_no_mask()
    if why:
        raise SystemExit(f"benchmarks.isa_levels: {why}")
    cc = shutil.which("cc") or shutil.which("gcc")
    lib = folder / "cpuid_mask.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(REPO / "benchmarks" / "cpuid_mask.c")],
                   check=True)
    return lib


def level_env(level: str, lib: Path) -> dict:
    env = dict(os.environ)
    if level == "avx2":
        env["LD_PRELOAD"] = str(lib)
    return env


def effective_features(env: dict) -> dict:
    """What the process is told it has (numpy asks CPUID as ONNX Runtime does), not what /proc/cpuinfo lists."""
    code = ("import json; from numpy._core._multiarray_umath import __cpu_features__ as f; "
            f"print(json.dumps({{k: bool(f.get(k)) for k in {FEATURES!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2, help="runs per level, alternating levels")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "isa_levels.json"))
    a = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {level: [] for level in LEVELS}
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_mask(Path(tmp))
        features = {level: effective_features(level_env(level, lib)) for level in LEVELS}
        if features["avx2"]["AVX512F"] or not features["avx2"]["AVX2"]:
            raise SystemExit(f"benchmarks.isa_levels: the mask did not take effect: {features['avx2']}")
        for r in range(a.rounds):
            for level in LEVELS:
                out = Path(tmp) / f"{level}{r}.json"
                print(f"round {r + 1}/{a.rounds}: {level}", flush=True)
                subprocess.run([sys.executable, "-m", "benchmarks.style_baking", "--threads", str(a.threads),
                                "--repeats", str(a.repeats), "--json", str(out)],
                               env=level_env(level, lib), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
                runs[level].append(json.loads(out.read_text()))
    levels = {}
    for level, results in runs.items():
        ratio_names = results[0]["ratios"]
        levels[level] = {
            "features": features[level],
            "median_ms": {k: [res["median_ms"][k] for res in results] for k in results[0]["median_ms"]},
            "ratios": {k: round(statistics.median(res["ratios"][k] for res in results), 3) for k in ratio_names},
        }
    result = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "size": runs["native"][0]["size"],
              "threads": a.threads, "repeats": a.repeats, "rounds": a.rounds,
              "command": "python -m benchmarks.isa_levels", "levels": levels,
              "avx2_slowdown": {k: round(statistics.median(levels["avx2"]["median_ms"][k])
                                         / statistics.median(levels["native"]["median_ms"][k]), 3)
                                for k in levels["native"]["median_ms"]}}
    for level, v in levels.items():
        print(f"{level}: " + ", ".join(f"{k} {statistics.median(t):.1f} ms" for k, t in v["median_ms"].items()))
        for k, ratio in v["ratios"].items():
            print(f"  {k}: {ratio}")
    Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
