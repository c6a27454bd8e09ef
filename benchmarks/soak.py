"""Soak benchmark: `streamer live` for a long time, watched from outside like any process.

A looping file source (streamer/assets/sample.mp4, 30 fps) goes through a real `streamer live` subprocess to
a UDP sink (H.264 MPEG-TS to 127.0.0.1, drained by a receiver here) and a recording.  Every --every seconds
(default 10) it samples the process's RSS, open file descriptors and threads (/proc), and the output fps and
p95 latency of the stats lines printed since the last sample.  After the first minute, it compares the median
of the first fifth of the samples with the median of the last fifth, and fails when

- RSS grows by more than 5%,
- the number of file descriptors or threads grows at all,
- p95 latency drifts by more than 20%.

Medians over a fifth of the run, not single samples: FFmpeg's decoder threads come and go when the looping
source reopens its file (the count moves between 27 and 31 around 29), and on a shared machine another process
can raise one 10-s latency sample; neither is a trend.  The maxima are recorded too.

    python -m benchmarks.soak [--minutes 20] [--every 10] [--max-size 480] [--model student]
                              [--json benchmarks/soak.json] [--plot benchmarks/figures/soak.png]
    python -m benchmarks.soak --from-json benchmarks/soak.json     # judge and plot recorded samples again

The processing size is fixed (default 480: what the adaptive size settles at on a 2-core machine), so a
change in latency is the process's, not the size controller's.  Linux only (/proc).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.bench import machine_info  # noqa: E402

STATS = re.compile(r"out\s+([\d.]+) fps .* p95\s+(\d+) ms")
WARMUP_S = 60.0
LIMITS = {"rss_growth": 0.05, "p95_drift": 0.20}


def proc_status(pid: int) -> dict:
    """RSS (MB), threads and open fds of a live process, read from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Receiver:
    """Drains the UDP stream (a player that stays), counting bytes, so the sink sends to a real listener."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.bytes += len(self.sock.recv(65536))
            except socket.timeout:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def read_stats(stream, lines: list[tuple[float, float, float]]) -> None:
    for line in stream:
        m = STATS.search(line)
        if m:
            lines.append((time.perf_counter(), float(m.group(1)), float(m.group(2))))


def run(minutes: float, every: float, max_size: str, model: str | None, record_dir: Path) -> tuple[list[dict], dict]:
    receiver = Receiver()
    cmd = [sys.executable, "-m", "streamer", "live", "--source", str(REPO / "streamer/assets/sample.mp4"), "--loop",
           "--sink", f"udp://127.0.0.1:{receiver.port}", "--sink", str(record_dir / "soak.mp4"),
           "--max-size", max_size, "--duration", str(minutes * 60), "--json"] + (["--model", model] if model else [])
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats: list[tuple[float, float, float]] = []
    reader = threading.Thread(target=read_stats, args=(proc.stderr, stats), daemon=True)
    reader.start()
    samples: list[dict] = []
    t0, seen = time.perf_counter(), 0
    try:
        while proc.poll() is None:
            time.sleep(every - (time.perf_counter() - t0) % every)
            try:
                sample = proc_status(proc.pid)
            except (FileNotFoundError, ProcessLookupError, KeyError):
                break
            recent, seen = stats[seen:], len(stats)
            sample["t_s"] = round(time.perf_counter() - t0, 1)
            sample["fps"] = round(statistics.mean(s[1] for s in recent), 2) if recent else 0.0
            sample["p95_ms"] = round(statistics.median(s[2] for s in recent), 1) if recent else 0.0
            samples.append(sample)
            print(f"{sample['t_s']:7.0f} s  rss {sample['rss_mb']:7.1f} MB  fds {sample['fds']:3d}  "
                  f"threads {sample['threads']:3d}  out {sample['fps']:5.1f} fps  p95 {sample['p95_ms']:5.0f} ms",
                  flush=True)
        out, _ = proc.communicate(timeout=60)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        raise
    finally:
        receiver.close()
    result = json.loads(out) if out.strip() else {"error": f"exit {proc.returncode}"}
    result["udp_bytes_received"] = receiver.bytes
    if "source" in result:                       # records name what ran, not this machine's folders
        result["source"] = "streamer/assets/sample.mp4"
        result["sinks"] = ["udp://127.0.0.1:PORT", "soak.mp4 (a temporary folder)"]
    return samples, result


def judge(samples: list[dict]) -> dict[str, dict]:
    """The pass/fail checks: median of the first fifth against the last fifth of the samples after the first minute."""
    steady = [s for s in samples if s["t_s"] >= WARMUP_S] or samples
    k = max(1, len(steady) // 5)
    start = {key: statistics.median(s[key] for s in steady[:k]) for key in ("rss_mb", "fds", "threads", "p95_ms")}
    end = {key: statistics.median(s[key] for s in steady[-k:]) for key in start}
    peak = {key: max(s[key] for s in steady) for key in start}
    rss_growth = (end["rss_mb"] - start["rss_mb"]) / start["rss_mb"]
    drift = abs(end["p95_ms"] - start["p95_ms"]) / max(start["p95_ms"], 1e-6)

    def values(key: str) -> dict:
        return {"start": start[key], "end": end[key], "max": peak[key]}

    return {
        "rss grows <= 5% after the first minute": {"ok": rss_growth <= LIMITS["rss_growth"],
                                                   "growth": round(rss_growth, 4), **values("rss_mb")},
        "file descriptors do not grow": {"ok": end["fds"] <= start["fds"], **values("fds")},
        "threads do not grow": {"ok": end["threads"] <= start["threads"], **values("threads")},
        "p95 latency drifts <= 20%": {"ok": drift <= LIMITS["p95_drift"], "drift": round(drift, 3),
                                      **values("p95_ms")},
    }


def plot(samples: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, [s["rss_mb"] for s in samples])
    axes[0].set_ylabel("RSS (MB)")
    axes[1].plot(t, [s["p95_ms"] for s in samples], label="p95 latency")
    axes[1].set_ylabel("p95 latency (ms)")
    axes[2].plot(t, [s["fps"] for s in samples])
    axes[2].set_ylabel("output fps")
    axes[2].set_xlabel("minutes")
    for ax in axes:
        ax.axvline(WARMUP_S / 60, color="gray", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--max-size", default="480", help="processing size (default 480; auto: the adaptive size)")
    ap.add_argument("--model", default=None, help="default: streamer live's default")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "soak.json"))
    ap.add_argument("--plot", default=str(REPO / "benchmarks" / "figures" / "soak.png"))
    ap.add_argument("--from-json", default=None, help="judge and plot the samples of an earlier run again")
    args = ap.parse_args(argv)
    if args.from_json:
        return report_again(Path(args.from_json), Path(args.plot))
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        samples, result = run(args.minutes, args.every, args.max_size, args.model, Path(tmp))
        recorded_mb = round(sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6, 1)
    checks = judge(samples)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "minutes": args.minutes,
              "command": "python -m benchmarks.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
              "max_size": args.max_size, "checks": checks, "live": result, "recorded_mb": recorded_mb,
              "samples": samples}
    Path(args.json).write_text(json.dumps(report, indent=1))
    return finish(report, Path(args.plot))


def report_again(path: Path, plot_path: Path) -> int:
    report = json.loads(path.read_text())
    report["checks"] = judge(report["samples"])
    path.write_text(json.dumps(report, indent=1))
    return finish(report, plot_path)


def finish(report: dict, plot_path: Path) -> int:
    """Plot, print the checks and the run's summary; exit status 0 only when every check passes."""
    machine, checks, result = report["machine"], report["checks"], report["live"]
    title = (f"streamer live soak, {report['minutes']:g} min, {machine['cpu']} ({machine['cores']} cores, "
             f"{' '.join(machine['cpu_flags'])}), {report['date']}")
    plot(report["samples"], plot_path, title)
    for name, c in checks.items():
        print(f"  {'PASS' if c['ok'] else 'FAIL'}  {name}: " + ", ".join(f"{k} {v}" for k, v in c.items() if k != "ok"))
    print(f"live: {result.get('output_fps')} fps out, {result.get('dropped')} dropped, latency {result.get('latency_ms')}"
          f", ended {result.get('ended')!r}; recording {report['recorded_mb']} MB; plot {plot_path}")
    return 0 if all(c["ok"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
