"""GPU measurements for the device check (run by benchmarks/device_check.sh; writes JSON + a table).

Sections, each timed and guarded so one failure does not lose the others:
  env        GPU, driver, torch, CUDA, nvcc, whether NVENC opens
  validate   PyTorch CUDA fp16 vs ONNX Runtime FP32 (PSNR, float and uint8 paths) at 720p and 1080p
  model      model-only fps (fp16, channels_last, CUDA graph replays, device-resident input):
             720p and 1080p at batch 1/2/4/8; 1080p batch 1 also without channels_last and in fp32
  uint8      uint8 frames host -> GPU -> host with 3 batches in flight (pinned, 3 streams), 1080p
  encode     h264_nvenc vs libx264 (ultrafast, fast) encoding 1080p frames from memory
  e2e        1080p file -> file: a three-thread decode / infer_uint8 / encode loop with per-stage busy
             time, with each encoder; and `streamer convert` at 1080p (its JSON, stages included)

Usage: python3 benchmarks/device_check.py OUTDIR [--weights streamer/models/student.pt] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def section(results: dict, name: str):
    """Decorator: run fn, store its dict (or the error) under results[name], print progress."""
    def wrap(fn):
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - keep going, record the error
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        print(f"   {name}: {results['section_seconds'][name]} s", flush=True)
        return fn
    return wrap


def student_files(weights: Path | None, workdir: Path) -> tuple[Path, Path, str]:
    """(.pt, .onnx, origin): the trained student if present, else random weights (speed does not depend on them)."""
    import torch

    from engines.student import Student, StudentConfig, load_weights, save_checkpoint_weights

    if weights and weights.is_file():
        model, origin = load_weights(weights), f"trained ({weights})"
    else:
        torch.manual_seed(0)
        model, origin = Student(StudentConfig()).eval(), "random weights (no trained student.pt)"
        torch.nn.init.normal_(model.style_mlp[-1].weight, std=0.02)
    pt, onnx_path = workdir / "student.pt", workdir / "student.onnx"
    save_checkpoint_weights(model, pt)
    torch.onnx.export(model, (torch.rand(1, 3, 64, 64), torch.randn(1, 100)), str(onnx_path), dynamo=False,
                      opset_version=17, input_names=["frame", "style"], output_names=["stylized"],
                      dynamic_axes={"frame": {0: "N", 2: "H", 3: "W"}, "style": {0: "N"},
                                    "stylized": {0: "N", 2: "H", 3: "W"}})
    return pt, onnx_path, origin


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """A 1080p H.264 clip of a panning painting (real texture, real motion), encoded fast."""
    import av
    import cv2

    from streamer.styles import bundled_styles, read_rgb

    img = read_rgb(next(iter(bundled_styles().values())))
    img = cv2.resize(img, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "20"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x, y = (i * 3) % width, (i * 2) % height
            out.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img[y:y + height, x:x + width]),
                                                         format="rgb24")))
        out.mux(vs.encode())
    return path


def open_encoder(path: Path, codec: str, width: int, height: int, fps: int = 30, preset: str | None = None):
    import av

    out = av.open(str(path), "w")
    opts = {"preset": preset or ("ultrafast" if codec == "libx264" else "p4")}
    vs = out.add_stream(codec, rate=fps, options=opts)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.codec_context.time_base = Fraction(1, fps)
    return out, vs


def encode_fps(codec: str, frames: list[np.ndarray], workdir: Path, preset: str | None = None) -> dict:
    import av

    h, w = frames[0].shape[:2]
    out, vs = open_encoder(workdir / f"enc_{codec}_{preset}.mp4", codec, w, h, preset=preset)
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts = i
        out.mux(vs.encode(vf))
    out.mux(vs.encode())
    out.close()
    secs = time.perf_counter() - t0
    return {"codec": codec, "preset": preset or "", "frames": len(frames), "fps": round(len(frames) / secs, 1)}


def e2e(engine, clip: Path, codec: str, workdir: Path, batch: int, style: np.ndarray) -> dict:
    """decode thread -> (this thread) submit/collect uint8 with 2 batches in flight -> encode thread."""
    import av

    busy = {"decode": 0.0, "infer": 0.0, "encode": 0.0}
    q_in: queue.Queue = queue.Queue(maxsize=8)
    q_out: queue.Queue = queue.Queue(maxsize=8)
    errors: list[BaseException] = []

    def decode():
        try:
            with av.open(str(clip)) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                pending = []
                t = time.perf_counter()
                for frame in c.decode(s):
                    pending.append(frame.to_ndarray(format="rgb24"))
                    if len(pending) == batch:
                        busy["decode"] += time.perf_counter() - t
                        q_in.put(np.stack(pending))
                        pending, t = [], time.perf_counter()
                if pending:
                    q_in.put(np.stack(pending))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            q_in.put(None)

    def encode(width, height):
        try:
            out, vs = open_encoder(workdir / f"e2e_{codec}.mp4", codec, width, height)
            i = 0
            while (item := q_out.get()) is not None:
                t = time.perf_counter()
                for f in item:
                    vf = av.VideoFrame.from_ndarray(f, format="rgb24")
                    vf.pts = i
                    i += 1
                    out.mux(vs.encode(vf))
                busy["encode"] += time.perf_counter() - t
            out.mux(vs.encode())
            out.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with av.open(str(clip)) as c:
        width, height = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    threads = [threading.Thread(target=decode), threading.Thread(target=encode, args=(width, height))]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    frames, in_flight = 0, []
    while True:
        item = q_in.get()
        t = time.perf_counter()
        if item is not None:
            in_flight.append(engine.submit_uint8(item, style))
        while in_flight and (len(in_flight) >= 2 or item is None):
            out = engine.collect(in_flight.pop(0))
            frames += len(out)
            busy["infer"] += time.perf_counter() - t
            q_out.put(out)                      # waiting on a full encoder queue is not inference time
            t = time.perf_counter()
        busy["infer"] += time.perf_counter() - t
        if item is None:
            break
    q_out.put(None)
    for th in threads:
        th.join()
    secs = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"codec": codec, "batch": batch, "frames": frames, "seconds": round(secs, 2), "fps": round(frames / secs, 1),
            "busy_seconds": {k: round(v, 2) for k, v in busy.items()},
            "limited_by": max(busy, key=busy.get)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--weights", type=Path, default=REPO / "streamer" / "models" / "student.pt")
    ap.add_argument("--quick", action="store_true", help="fewer iterations and frames")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "device_check"
    work.mkdir(parents=True, exist_ok=True)
    iters = 30 if args.quick else 200
    clip_frames = 120 if args.quick else 600
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}

    import torch

    from engines.torch import TorchEngine

    @section(results, "env")
    def _():
        from streamer.codecs import encoder_usable

        nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True)
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True)
        return {"gpu": torch.cuda.get_device_name(0), "nvidia_smi": smi.stdout.strip(),
                "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                "nvcc": (nvcc.stdout.strip().splitlines() or [""])[-1], "python": platform.python_version(),
                "cpu_count": os.cpu_count(), "nvenc": encoder_usable("h264_nvenc")}

    pt, onnx_path, origin = student_files(args.weights, work)
    results["student"] = origin

    @section(results, "validate")
    def _():
        from streamer.gpu_cli import validate_torch

        return {name: validate_torch(pt, onnx_path, device="cuda", width=w, height=h, batch=2 if name == "720p" else 1)
                for name, (w, h) in SIZES.items()}

    @section(results, "model")
    def _():
        rows = []
        engine = TorchEngine(pt, "cuda")
        for name, (w, h) in SIZES.items():
            for batch in (1, 2, 4, 8):
                rows.append({"size": name, "batch": batch, "variant": "fp16 channels_last graphs",
                             "fps": round(engine.benchmark_model(batch, h, w, iters), 1)})
                print(f"   {rows[-1]}", flush=True)
        engine.close()
        for variant, kw in (("fp16 contiguous graphs", {"channels_last": False}),
                            ("fp32 channels_last graphs", {"precision": "fp32"}),
                            ("fp16 channels_last eager", {"cuda_graphs": False})):
            e = TorchEngine(pt, "cuda", **kw)
            rows.append({"size": "1080p", "batch": 1, "variant": variant,
                         "fps": round(e.benchmark_model(1, 1080, 1920, iters), 1)})
            print(f"   {rows[-1]}", flush=True)
            e.close()
        best = {s: max((r for r in rows if r["size"] == s and r["variant"].startswith("fp16 channels_last graphs")),
                       key=lambda r: r["fps"]) for s in SIZES}
        return {"rows": rows, "best": best}

    style = (np.random.default_rng(0).standard_normal((1, 100)) * 0.5).astype(np.float32)

    @section(results, "uint8")
    def _():
        engine = TorchEngine(pt, "cuda")
        rows = []
        rng = np.random.default_rng(1)
        for batch in (1, 4):
            frames = [rng.integers(0, 256, (batch, 1080, 1920, 3), dtype=np.uint8) for _ in range(4)]
            engine.infer_uint8(frames[0], style)
            n = max(iters // batch, 8)
            t0 = time.perf_counter()
            pending = []
            for i in range(n):
                pending.append(engine.submit_uint8(frames[i % 4], style))
                if len(pending) == 3:
                    engine.collect(pending.pop(0))
            for t in pending:
                engine.collect(t)
            secs = time.perf_counter() - t0
            rows.append({"size": "1080p", "batch": batch, "in_flight": 3, "fps": round(n * batch / secs, 1)})
            print(f"   {rows[-1]}", flush=True)
        engine.close()
        return {"rows": rows}

    clip = make_clip(work / "clip1080.mp4", 1920, 1080, clip_frames)

    @section(results, "encode")
    def _():
        import av

        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(240 if not args.quick else 60),
                                                                    c.decode(video=0))]
        rows = []
        for codec, preset in (("h264_nvenc", "p1"), ("h264_nvenc", "p4"), ("libx264", "ultrafast"), ("libx264", "fast")):
            try:
                rows.append(encode_fps(codec, frames, work, preset))
            except Exception as exc:  # noqa: BLE001
                rows.append({"codec": codec, "preset": preset, "error": f"{type(exc).__name__}: {exc}"})
            print(f"   {rows[-1]}", flush=True)
        return {"rows": rows}

    @section(results, "e2e")
    def _():
        from streamer.codecs import encoder_usable

        engine = TorchEngine(pt, "cuda")
        engine.warmup(1080, 1920, 4)
        rows = []
        for codec in ("h264_nvenc", "libx264"):
            if codec == "h264_nvenc" and not encoder_usable(codec)[0]:
                rows.append({"codec": codec, "error": encoder_usable(codec)[1]})
                continue
            for batch in (1, 4):
                rows.append(e2e(engine, clip, codec, work, batch, style))
                print(f"   {rows[-1]}", flush=True)
        engine.close()
        convert = []
        for codec in ("h264_nvenc", "libx264"):
            cmd = [sys.executable, "-m", "streamer", "convert", str(clip), str(work / f"convert_{codec}.mp4"),
                   "--model", str(pt), "--backend", "torch", "--max-size", "1920", "--batch", "4", "--codec", codec,
                   "--preset", "ultrafast" if codec == "libx264" else "p4", "--json", "-q", "-y"]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO,
                               env=dict(os.environ, PYTHONPATH=f"{REPO}:{os.environ.get('PYTHONPATH', '')}"))
            row = {"codec": codec, "rc": p.returncode, "wall_seconds": round(time.perf_counter() - t0, 1)}
            try:
                row.update(json.loads(p.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                row["stderr"] = p.stderr.strip()[-600:]
            convert.append(row)
            print(f"   {row}", flush=True)
        return {"rows": rows, "streamer_convert": convert}

    (args.out / "device_check.json").write_text(json.dumps(results, indent=1, default=str))
    table = render(results)
    (args.out / "device_check.md").write_text(table)
    print(table)
    return 0


def render(r: dict) -> str:
    lines = [f"# device check {r['date']}", ""]
    env = r.get("env", {})
    lines.append(f"GPU: {env.get('gpu')} | {env.get('nvidia_smi')} | torch {env.get('torch')} CUDA {env.get('cuda')} | "
                 f"student: {r.get('student')} | NVENC: {env.get('nvenc')}")
    lines += ["", "| check | setting | result |", "| --- | --- | --- |"]
    for name, v in (r.get("validate") or {}).items():
        if isinstance(v, dict) and "psnr_db" in v:
            lines.append(f"| validate torch fp16 vs ORT fp32 | {name} b{v['batch']} | PSNR {v['psnr_db']} dB float, "
                         f"{v['psnr_uint8_db']} dB uint8, {'PASS' if v['passed'] else 'FAIL'} |")
    for row in (r.get("model") or {}).get("rows", []):
        lines.append(f"| model-only fps | {row['size']} b{row['batch']} {row['variant']} | {row['fps']} |")
    for row in (r.get("uint8") or {}).get("rows", []):
        lines.append(f"| uint8 H2D+model+D2H fps | {row['size']} b{row['batch']} in flight {row['in_flight']} | {row['fps']} |")
    for row in (r.get("encode") or {}).get("rows", []):
        lines.append(f"| encode fps | {row['codec']} {row.get('preset', '')} | {row.get('fps', row.get('error'))} |")
    for row in (r.get("e2e") or {}).get("rows", []):
        if "fps" in row:
            lines.append(f"| e2e decode/infer/encode fps | {row['codec']} b{row['batch']} | {row['fps']} "
                         f"(busy s {row['busy_seconds']}, limited by {row['limited_by']}) |")
        else:
            lines.append(f"| e2e | {row['codec']} | {row.get('error')} |")
    for row in (r.get("e2e") or {}).get("streamer_convert", []):
        lines.append(f"| streamer convert 1080p | {row['codec']} rc {row['rc']} | fps {row.get('fps')} "
                     f"stages {row.get('stages')} {row.get('stderr', '')[-200:]} |")
    for name in ("env", "validate", "model", "uint8", "encode", "e2e"):
        if isinstance(r.get(name), dict) and "error" in r[name]:
            lines.append(f"| {name} | error | {r[name]['error'][:300]} |")
    lines += ["", f"section seconds: {r.get('section_seconds')}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
