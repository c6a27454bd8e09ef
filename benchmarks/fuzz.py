"""Fuzzing at scale: damaged media made from a real clip, each converted by the real CLI with a per-file timeout.

    python -m benchmarks.fuzz [--count 240] [--seed 1] [--timeout 60] [--jobs 2] [--json out.json] [--keep DIR]

The bases are the first 2 s of the bundled sample clip (``streamer/assets/sample.mp4``: real footage, 30 fps, AAC),
scaled to 320x180 and written as MP4 (index last), MP4 (index first), MOV (PCM audio), MKV (FLAC), MPEG-TS (MP2),
AVI (MPEG-4 Part 2 + MP3) and WebM (VP9 + Opus), video and audio interleaved as a camera or a muxer writes them.
From them the corpus is made (``corpus``):

* ``truncate``: cut at a random offset;  ``flip_header`` / ``flip_payload``: 1-8 bit flips in the container's
  header (the first 4 KiB, or the MP4 index) or in the media data;  ``zero_run``: 16 B-4 KiB zeroed;
  ``cut_chunk``: 1 B-4 KiB removed from the middle;  ``swap_ext``: an intact or damaged file named as another
  container (.mp4 holding Matroska, ...);
* ``zero_stream``: empty files, a header alone, a video stream with no packets (with and without audio), an audio
  stream with no packets;
* ``absurd``: width and height patched to 0, 1 or 65535 in the MP4 track header and sample entry, time scales and
  sample durations patched to 1 or 2^32-1, Matroska's timestamp scale patched, and real clips with extreme
  sizes (16x16, 2048x16) and timestamps (jumps of 2^31 ticks).

Each file goes through ``python -m streamer convert IN OUT --model identity --json`` in its own process, killed at
the timeout.  Outcomes: **converted** (exit 0, no warning: the output must decode to every frame the base had, else
it is a *silent loss*), **converted with warning** (exit 0, one ``streamer: warning:`` line naming the file,
``"damaged": true`` in the JSON, the output decodes to the frames it reports), **clean error** (exit 2, one line
``streamer: error:`` naming the file, no output).  Anything else is a failure: a hang (timeout), a traceback, exit 1
or another code, a leftover temp file, a missing or undecodable output, a silent loss, or an intact file (a swapped
extension) not converted whole.  Exit status 1 when any file failed.

Also reported: each converted output's frame count against a plain one-thread PyAV decode of the same damaged file
that skips the packets it cannot decode (what another decoder gets out of it), as same / more / fewer, and the
frames such a decode gets that streamer neither converted nor counted in ``frames_skipped`` (frames the decoder flags
as corrupt are skipped and counted by design; a plain decode keeps them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.bench import machine_info  # noqa: E402
from streamer.sample_media import write_clip  # noqa: E402

SAMPLE = REPO / "streamer" / "assets" / "sample.mp4"
FRAMES = 60
WIDTH, HEIGHT, FPS = 320, 180, 30
# name: (extension, video encoder, audio encoder, muxer options)
BASES = {
    "mp4": (".mp4", "libx264", "aac", {}),
    "mp4_faststart": (".mp4", "libx264", "aac", {"movflags": "+faststart"}),
    "mov": (".mov", "libx264", "pcm_s16le", {}),
    "mkv": (".mkv", "libx264", "flac", {}),
    "ts": (".ts", "libx264", "mp2", {}),
    "avi": (".avi", "mpeg4", "libmp3lame", {}),
    "webm": (".webm", "libvpx-vp9", "libopus", {}),
}
RANDOM_KINDS = ("truncate", "flip_header", "flip_payload", "zero_run", "cut_chunk", "swap_ext")
TEMP_MARK = ".streamer-tmp-"
OUTCOMES = ("converted", "converted with warning", "clean error")


# --- bases: real footage, interleaved -----------------------------------------------------------------
def sample_media(frames: int = FRAMES) -> tuple[list[np.ndarray], np.ndarray, int]:
    """The sample clip's first ``frames`` frames at WIDTHxHEIGHT (RGB) and its audio over the same span (s16, mono)."""
    with av.open(str(SAMPLE)) as c:
        video = []
        for f in c.decode(video=0):
            video.append(cv2.resize(f.to_ndarray(format="rgb24"), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
            if len(video) == frames:
                break
    with av.open(str(SAMPLE)) as c:
        a = c.streams.audio[0]
        rate = a.codec_context.sample_rate
        res = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = [r.to_ndarray().reshape(-1) for f in c.decode(a) for r in res.resample(f)]
    pcm = np.concatenate(chunks)[: round(frames / FPS * rate)]
    return video, pcm, rate


def write_base(path: Path, video: list[np.ndarray], pcm: np.ndarray, rate: int, vcodec: str, acodec: str,
               options: dict) -> Path:
    """Video and audio muxed in time order, as a recorder writes them."""
    out = av.open(str(path), "w", options=dict(options))
    vs = out.add_stream(vcodec, rate=FPS, options={"preset": "ultrafast"} if vcodec == "libx264" else
                        ({"deadline": "realtime", "cpu-used": "8"} if "vpx" in vcodec else {}))
    vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    vs.codec_context.time_base = Fraction(1, FPS)
    a_rate = 48000 if acodec == "libopus" else rate
    a = out.add_stream(acodec, rate=a_rate)
    a.layout = "mono"
    formats = [f.name for f in (a.codec_context.codec.audio_formats or [])]
    a.format = "s16" if "s16" in formats else formats[0]
    res = av.AudioResampler(format=a.format.name, layout="mono", rate=a_rate,
                            frame_size=a.codec_context.frame_size or None)
    per_frame = rate // FPS
    apts = 0
    for i, img in enumerate(video):
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts, vf.time_base = i, Fraction(1, FPS)
        out.mux(vs.encode(vf))
        af = av.AudioFrame.from_ndarray(pcm[None, i * per_frame:(i + 1) * per_frame].copy(), format="s16",
                                        layout="mono")
        af.sample_rate, af.pts, af.time_base = rate, i * per_frame, Fraction(1, rate)
        for r in res.resample(af):
            r.pts, r.time_base = apts, Fraction(1, a_rate)
            apts += r.samples
            out.mux(a.encode(r))
    out.mux(vs.encode())
    for r in res.resample(None):
        r.pts, r.time_base = apts, Fraction(1, a_rate)
        apts += r.samples
        out.mux(a.encode(r))
    out.mux(a.encode())
    out.close()
    return path


def make_bases(directory: Path, names: tuple[str, ...] = tuple(BASES)) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    video, pcm, rate = sample_media()
    bases = {}
    for name in names:
        ext, vcodec, acodec, options = BASES[name]
        bases[name] = write_base(directory / f"base_{name}{ext}", video, pcm, rate, vcodec, acodec, options)
    return bases


# --- mutations ----------------------------------------------------------------------------------------
def header_span(data: bytes, ext: str) -> tuple[int, int]:
    """Where the container's header lies: the MP4/MOV index (moov), else the first 4 KiB."""
    if ext in (".mp4", ".mov"):
        i = data.find(b"moov")
        if i >= 4:
            size = struct.unpack(">I", data[i - 4:i])[0]
            return i - 4, min(len(data), i - 4 + max(size, 8))
    return 0, min(len(data), 4096)


def payload_span(data: bytes, ext: str) -> tuple[int, int]:
    if ext in (".mp4", ".mov"):
        i = data.find(b"mdat")
        if i >= 4:
            size = struct.unpack(">I", data[i - 4:i])[0]
            return i + 4, min(len(data), i - 4 + max(size, 8))
    return min(len(data) - 1, 4096), len(data)


def mutate(data: bytes, ext: str, kind: str, rng: random.Random) -> tuple[bytes, str]:
    """``data`` damaged one way; the second value says how (for the report)."""
    buf = bytearray(data)
    size = len(buf)
    if kind == "truncate":
        cut = rng.randrange(1, size)
        return bytes(buf[:cut]), f"cut at {cut} of {size} bytes"
    if kind in ("flip_header", "flip_payload"):
        lo, hi = header_span(data, ext) if kind == "flip_header" else payload_span(data, ext)
        n = rng.randint(1, 8)
        for _ in range(n):
            buf[rng.randrange(lo, max(lo + 1, hi))] ^= 1 << rng.randrange(8)
        return bytes(buf), f"{n} bit flips in bytes {lo}-{hi}"
    lo, hi = payload_span(data, ext)
    start = rng.randrange(lo, max(lo + 1, hi))
    length = rng.randint(16, 4096) if kind == "zero_run" else rng.randint(1, 4096)
    if kind == "zero_run":
        buf[start:start + length] = bytes(len(buf[start:start + length]))
        return bytes(buf), f"{length} bytes zeroed at {start}"
    if kind == "cut_chunk":
        del buf[start:start + length]
        return bytes(buf), f"{length} bytes removed at {start}"
    raise ValueError(kind)


def patch_mp4(data: bytes, box: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a field ``offset`` bytes after ``box``'s fourcc (every occurrence)."""
    buf = bytearray(data)
    i = buf.find(box)
    while i >= 0:
        struct.pack_into(fmt, buf, i + 4 + offset, value)
        i = buf.find(box, i + 4)
    return bytes(buf)


def absurd_patches(bases: dict[str, Path]) -> list[tuple[str, bytes, str]]:
    """(extension, data, how) for headers patched to absurd sizes and time scales."""
    out = []
    for name in ("mp4", "mp4_faststart"):
        data = bases[name].read_bytes()
        for w, h in ((0, 0), (1, 1), (65535, 65535), (65535, 1)):
            d = patch_mp4(data, b"tkhd", 76, ">I", w << 16)
            d = patch_mp4(d, b"tkhd", 80, ">I", h << 16)
            out.append((".mp4", d, f"{name}: track header {w}x{h}"))
            d = patch_mp4(data, b"avc1", 24, ">H", w)
            d = patch_mp4(d, b"avc1", 26, ">H", h)
            out.append((".mp4", d, f"{name}: sample entry {w}x{h}"))
        for value in (1, 0xFFFFFFFF):
            out.append((".mp4", patch_mp4(data, b"mdhd", 12, ">I", value), f"{name}: mdhd time scale {value}"))
            out.append((".mp4", patch_mp4(data, b"stts", 12, ">I", value), f"{name}: stts sample delta {value}"))
        out.append((".mp4", patch_mp4(data, b"stts", 4, ">I", 0x7FFFFFFF), f"{name}: stts entry count 2^31-1"))
        out.append((".mp4", patch_mp4(data, b"stsz", 8, ">I", 0x7FFFFFFF), f"{name}: stsz sample count 2^31-1"))
    mkv = bytearray(bases["mkv"].read_bytes())
    i = mkv.find(b"\x2a\xd7\xb1")          # TimestampScale
    if i >= 0:
        for value in (1, 0xFFFFFF):
            d = bytearray(mkv)
            d[i + 3:i + 7] = b"\x83" + value.to_bytes(3, "big")
            out.append((".mkv", bytes(d), f"mkv: timestamp scale {value}"))
    return out


def zero_streams(directory: Path, bases: dict[str, Path]) -> list[tuple[str, bytes, str]]:
    """Files whose streams hold nothing."""
    out = [(".mp4", b"", "empty file"), (".mkv", bases["mkv"].read_bytes()[:300], "Matroska header alone"),
           (".mp4", bases["mp4_faststart"].read_bytes()[:2000], "MP4 index alone (no media data)")]
    for ext, audio in ((".mp4", True), (".mkv", True), (".mkv", False)):
        p = directory / f"_zero{ext}"
        c = av.open(str(p), "w")
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if audio:
            a = c.add_stream("aac", rate=44100)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 44100), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 44100, 0
            c.mux(a.encode(frame))
            c.mux(a.encode())
        c.close()
        out.append((ext, p.read_bytes(), f"video stream with no packets{' (audio present)' if audio else ''}"))
    p = write_clip(directory / "_noaudio.mkv", width=WIDTH, height=HEIGHT, frames=10, audio=None)
    c = av.open(str(p))
    o = av.open(str(directory / "_emptyaudio.mkv"), "w")
    vo = o.add_stream_from_template(c.streams.video[0])
    ao = o.add_stream("flac", rate=44100)
    ao.layout = "mono"
    for pkt in c.demux(c.streams.video[0]):
        if pkt.size:
            pkt.stream = vo
            o.mux(pkt)
    o.close()
    c.close()
    del ao
    out.append((".mkv", (directory / "_emptyaudio.mkv").read_bytes(), "audio stream with no packets"))
    return out


def absurd_clips(directory: Path) -> list[tuple[str, bytes, str]]:
    """Real clips with extreme sizes and timestamps."""
    out = []
    for w, h in ((16, 16), (2048, 16), (16, 1024)):
        p = write_clip(directory / f"_size{w}x{h}.mp4", width=w, height=h, frames=6)
        out.append((".mp4", p.read_bytes(), f"real clip {w}x{h}"))
    jumps = [0, 1, 2, 2 ** 31, 2 ** 31 + 1, 2 ** 31 + 2]
    p = write_clip(directory / "_jump.mkv", frames=6, pts=jumps, time_base=Fraction(1, 1000), audio=None)
    out.append((".mkv", p.read_bytes(), "real clip, timestamps jump by 2^31 ms"))
    p = write_clip(directory / "_slow.mp4", frames=6, pts=[i * 10 ** 6 for i in range(6)], time_base=Fraction(1, 30),
                   audio=None)
    out.append((".mp4", p.read_bytes(), "real clip, a frame every 9 hours"))
    return out


@dataclass
class Case:
    name: str
    path: Path
    kind: str
    how: str
    base: str | None            # the base it was made from (its frame count is what the input held)
    intact: bool = False        # not damaged at all: must convert whole, without a warning


def corpus(directory: Path, count: int = 240, seed: int = 1, bases: dict[str, Path] | None = None) -> list[Case]:
    """Write at least ``count`` damaged files (and a few intact ones with swapped extensions) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    bases = bases or make_bases(directory)
    rng = random.Random(seed)
    cases: list[Case] = []

    def add(kind: str, ext: str, data: bytes, how: str, base: str | None, intact: bool = False) -> None:
        path = directory / f"f{len(cases):03d}_{kind}{ext}"
        path.write_bytes(data)
        cases.append(Case(path.name, path, kind, how, base, intact))

    for ext, data, how in zero_streams(directory, bases):
        add("zero_stream", ext, data, how, None)
    for ext, data, how in absurd_patches(bases) + absurd_clips(directory):
        add("absurd", ext, data, how, how.split(":")[0] if ":" in how else None)
    names = list(bases)
    exts = sorted({BASES[n][0] for n in names})
    for name in names:                         # intact files under another container's extension
        ext = BASES[name][0]
        other = rng.choice([e for e in exts if e != ext])
        add("swap_ext", other, bases[name].read_bytes(), f"intact {name} named {other}", name, intact=True)
    i = 0
    while len(cases) < count:
        kind = RANDOM_KINDS[i % len(RANDOM_KINDS)]
        name = names[(i // len(RANDOM_KINDS)) % len(names)]
        ext = BASES[name][0]
        data = bases[name].read_bytes()
        if kind == "swap_ext":                 # damaged and misnamed
            data, how = mutate(data, ext, rng.choice(RANDOM_KINDS[:-1]), rng)
            other = rng.choice([e for e in exts if e != ext])
            add(kind, other, data, f"{name} {how}, named {other}", name)
        else:
            data, how = mutate(data, ext, kind, rng)
            add(kind, ext, data, f"{name}: {how}", name)
        i += 1
    for p in directory.glob("_*"):
        p.unlink()
    return cases


# --- running one file ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    kind: str
    how: str
    outcome: str                # converted | converted with warning | clean error | failed
    problem: str = ""           # why it failed
    frames: int | None = None   # frames in the output
    expected: int | None = None  # frames the base held
    seconds: float = 0.0
    message: str = ""           # the warning or error line
    extra: dict = field(default_factory=dict)


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def plain_frames(path: Path) -> int | None:
    """Frames a plain PyAV decode (one thread, each packet on its own, errors skipped) gets out of a file: what the
    damaged input holds, by a decoder other than streamer's.  None when the file does not open."""
    try:
        c = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    n = 0
    with c:
        if not c.streams.video:
            return 0
        s = c.streams.video[0]
        packets = c.demux(s)
        while True:
            try:
                pkt = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, ValueError):
                break
            try:
                n += len(pkt.decode())
            except (av.error.FFmpegError, ValueError):
                continue
    return n


def run_case(case: Case, out_dir: Path, *, timeout: float = 60.0, expected: dict[str, int] | None = None,
             extra_args: tuple[str, ...] = ()) -> Outcome:
    """Convert one file with the CLI in its own process and judge the result."""
    work = out_dir / case.name.replace(".", "_")
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out.mp4"
    held = (expected or {}).get(case.base) if case.base else None
    res = Outcome(case.name, case.kind, case.how, "failed", expected=held)
    cmd = [sys.executable, "-m", "streamer", "convert", str(case.path), str(out), "--model", "identity",
           "--preset", "ultrafast", "--smooth", "off", "--json", *extra_args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        res.seconds = time.perf_counter() - t0
        res.problem = f"hang: no exit within {timeout:.0f} s"
        return res
    res.seconds = time.perf_counter() - t0
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    leftovers = [p.name for p in work.iterdir() if TEMP_MARK in p.name]
    res.message = err[0] if len(err) == 1 else " | ".join(err[:3])
    if "Traceback" in proc.stderr:
        res.problem = "traceback"
    elif leftovers:
        res.problem = f"leftover temp file {leftovers[0]}"
    elif proc.returncode == 2:
        if len(err) != 1 or not err[0].startswith("streamer: error: ") or str(case.path) not in err[0]:
            res.problem = "error is not one line naming the file"
        elif out.exists():
            res.problem = "error, but an output exists"
        else:
            res.outcome = "clean error"
    elif proc.returncode != 0:
        res.problem = f"exit {proc.returncode}"
    else:
        res.outcome, res.problem = judge_output(case, out, proc.stdout, err, held, res)
    shutil.rmtree(work, ignore_errors=True)
    if case.intact and res.outcome != "converted":
        res.problem = res.problem or f"intact file gave {res.outcome!r}"
        res.outcome = "failed"
    return res


def judge_output(case: Case, out: Path, stdout: str, err: list[str], held: int | None,
                 res: Outcome) -> tuple[str, str]:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return "failed", "exit 0 without a JSON report"
    if not out.exists():
        return "failed", "exit 0 without an output"
    try:
        res.frames = decoded_frames(out)
    except av.error.FFmpegError as exc:
        return "failed", f"output does not decode ({exc})"
    if res.frames != report.get("frames"):
        return "failed", f"output holds {res.frames} frames, the report says {report.get('frames')}"
    warnings = [ln for ln in err if ln.startswith("streamer: warning: ")]
    if report.get("damaged"):
        res.extra = {k: report.get(k) for k in ("truncated", "frames_expected", "frames_skipped", "frames_missing")}
        if len(warnings) != 1 or str(case.path) not in warnings[0]:
            return "failed", "damaged, but not one warning line naming the file"
        res.extra["plain"] = plain_frames(case.path)
        return "converted with warning", ""
    if warnings:
        return "failed", "a warning without \"damaged\" in the report"
    if held is not None and res.frames < held:
        return "failed", f"silent loss: {res.frames} of {held} frames, no warning"
    res.extra["plain"] = plain_frames(case.path)
    return "converted", ""


# --- the benchmark ------------------------------------------------------------------------------------
def run_corpus(cases: list[Case], out_dir: Path, *, timeout: float, jobs: int, expected: dict[str, int],
               progress: bool = True) -> list[Outcome]:
    results: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for r in pool.map(lambda c: run_case(c, out_dir, timeout=timeout, expected=expected), cases):
            results.append(r)
            if progress:
                mark = r.outcome if r.outcome != "failed" else f"FAILED ({r.problem})"
                print(f"{len(results):4d}/{len(cases)} {r.name:32s} {r.seconds:5.1f} s  {mark}", file=sys.stderr)
    return results


def summarize(results: list[Outcome]) -> dict:
    counts = {k: sum(r.outcome == k for r in results) for k in (*OUTCOMES, "failed")}
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        by_kind.setdefault(r.kind, {k: 0 for k in (*OUTCOMES, "failed")})[r.outcome] += 1
    times = sorted(r.seconds for r in results)
    converted = [r for r in results if r.outcome in OUTCOMES[:2] and r.extra.get("plain") is not None]
    vs_plain = {"files": len(converted),
                "fewer": sum(r.frames < r.extra["plain"] for r in converted),
                "same": sum(r.frames == r.extra["plain"] for r in converted),
                "more": sum(r.frames > r.extra["plain"] for r in converted),
                "frames_fewer": sum(max(0, r.extra["plain"] - r.frames) for r in converted),
                # frames a plain decode gets that streamer neither converted nor counted as skipped
                "frames_unreported": sum(max(0, r.extra["plain"] - r.frames - (r.extra.get("frames_skipped") or 0))
                                         for r in converted)}
    return {"files": len(results), "counts": counts, "by_kind": by_kind, "vs_plain_decode": vs_plain,
            "seconds": {"median": round(times[len(times) // 2], 2), "max": round(times[-1], 2)} if times else {},
            "failures": [asdict(r) for r in results if r.outcome == "failed"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=240, help="files in the corpus (at least 200 for the benchmark)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per file before it counts as a hang")
    ap.add_argument("--jobs", type=int, default=2, help="conversions at once")
    ap.add_argument("--json", type=Path, help="write the counts and the failures here")
    ap.add_argument("--keep", type=Path, help="write the corpus here and keep it (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="streamer-fuzz-"))
    try:
        corpus_dir = args.keep or root / "corpus"
        t0 = time.perf_counter()
        bases = make_bases(corpus_dir)
        expected = {name: decoded_frames(p) for name, p in bases.items()}
        cases = corpus(corpus_dir, args.count, args.seed, bases)
        made = time.perf_counter() - t0
        results = run_corpus(cases, root / "out", timeout=args.timeout, jobs=args.jobs, expected=expected)
        summary = summarize(results)
        summary.update({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(),
                        "command": "python -m benchmarks.fuzz " + " ".join(argv if argv is not None else sys.argv[1:]),
                        "seed": args.seed, "timeout_s": args.timeout, "jobs": args.jobs,
                        "corpus_seconds": round(made, 1), "run_seconds": round(sum(r.seconds for r in results), 1),
                        "bases": {n: expected[n] for n in bases}})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    c = summary["counts"]
    print(f"{summary['files']} files: {c['converted']} converted, {c['converted with warning']} converted with "
          f"warning, {c['clean error']} clean errors, {c['failed']} failed")
    print("| kind | files | converted | with warning | clean error | failed |")
    print("|---|---|---|---|---|---|")
    for kind, k in summary["by_kind"].items():
        print(f"| {kind} | {sum(k.values())} | {k['converted']} | {k['converted with warning']} | "
              f"{k['clean error']} | {k['failed']} |")
    v = summary["vs_plain_decode"]
    print(f"output frames vs a plain one-thread PyAV decode of the same damaged file ({v['files']} converted): "
          f"{v['same']} same, {v['more']} more, {v['fewer']} fewer ({v['frames_fewer']} frames; "
          f"{v['frames_unreported']} not counted in frames_skipped)")
    for f in summary["failures"]:
        print(f"FAILED {f['name']} ({f['how']}): {f['problem']} {f['message']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if c["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
