"""Scaling of `streamer convert IN_DIR OUT_DIR --ray ADDRESS` from one worker node to two.

A folder of generated clips (the project's clip writer) is converted three ways, each a `streamer convert`
subprocess timed on the wall clock, start-up included (Ray connect, actors building their engines):

1. one machine, no Ray (the reference);
2. `--ray` on a cluster of one node (`ray start --head --num-cpus N`);
3. `--ray` on the same cluster after a second node joined (`ray start --address ... --num-cpus N`).

Both nodes run on this machine (each a real raylet with its own CPU slots), so the numbers show what the
actors and the driver cost and how the work spreads, not what a second machine adds.  The nodes are ended
through the `ray start --block` processes this script started and their process groups, never `ray stop`.

    python -m benchmarks.ray_scaling [--clips 8] [--frames 90] [--size 320x180] [--cpus-per-node 1]
                                     [--model student] [--smooth off] [--json benchmarks/ray_scaling.json]

Prints a table and writes JSON (date, machine: CPU model and flags, the command, every run).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.bench import machine_info  # noqa: E402
from streamer.sample_media import write_clip  # noqa: E402

STYLES = ("hokusai_bridge", "starry_night", "kandinsky")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], temp: Path, cpus: int, env: dict) -> subprocess.Popen:
    temp.mkdir(parents=True, exist_ok=True)
    ray = Path(sys.executable).parent / "ray"
    cmd = [str(ray), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", "0",
           "--temp-dir", str(temp), "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
           "--dashboard-agent-listen-port", str(free_port()), *args]
    with open(temp / "ray-start.log", "wb") as log:        # a file, not a pipe nobody reads while it blocks
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for_cpus(address: str, cpus: int, env: dict, timeout: float = 120) -> None:
    code = ("import ray, sys, time\n"
            f"ray.init(address={address!r}, logging_level='ERROR')\n"
            f"t = time.time() + {timeout}\n"
            f"while ray.cluster_resources().get('CPU', 0) < {cpus} and time.time() < t: time.sleep(0.5)\n"
            f"sys.exit(0 if ray.cluster_resources().get('CPU', 0) >= {cpus} else 1)\n")
    if subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=timeout + 60).returncode:
        raise RuntimeError(f"the cluster at {address} did not reach {cpus} CPUs")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the `ray start --block` we started, then SIGKILL to its process group (ours: start_new_session)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


def convert(src: Path, dst: Path, flags: list[str], env: dict) -> dict:
    """One timed `streamer convert` of the folder; its JSON report plus the wall clock."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "streamer", "convert", str(src), str(dst), *flags, "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"streamer convert failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads(proc.stdout)
    frames = sum(f["frames"] for f in report["files"])
    return {"files": report["ok"], "frames": frames, "seconds": round(wall, 2),
            "files_per_min": round(report["ok"] * 60 / wall, 2), "fps": round(frames / wall, 2),
            "nodes_used": sorted({f["node"] for f in report["files"] if f.get("node")})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--model", default="student")
    ap.add_argument("--smooth", default="off")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "ray_scaling.json"))
    args = ap.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    flags = ["--model", args.model, "--smooth", args.smooth]
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="rs") as tmp:
        work = Path(tmp)
        src = work / "in"
        src.mkdir()
        for i in range(args.clips):
            write_clip(src / f"clip{i:02d}.mp4", width=width, height=height, frames=args.frames,
                       style=STYLES[i % len(STYLES)])
        # a cluster private to this run: no token authentication (Ray's `ray start` default), for it and its drivers
        env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        runs = [dict(setup="one machine, no Ray", nodes=0, **convert(src, work / "local", flags, env))]
        port = free_port()
        address = f"127.0.0.1:{port}"
        procs = [start_node(["--head", "--port", str(port), "--include-dashboard", "false",
                             "--ray-client-server-port", str(free_port())], work / "h", args.cpus_per_node, env)]
        try:
            wait_for_cpus(address, args.cpus_per_node, env)
            runs.append(dict(setup="--ray, 1 node", nodes=1,
                             **convert(src, work / "ray1", [*flags, "--ray", address], env)))
            procs.append(start_node(["--address", address], work / "w", args.cpus_per_node, env))
            wait_for_cpus(address, 2 * args.cpus_per_node, env)
            runs.append(dict(setup="--ray, 2 nodes", nodes=2,
                             **convert(src, work / "ray2", [*flags, "--ray", address], env)))
        finally:
            for p in reversed(procs):
                stop(p)
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
              "load_avg_end": [round(x, 2) for x in os.getloadavg()],
              "command": "python -m benchmarks.ray_scaling " + " ".join(argv if argv is not None else sys.argv[1:]),
              "clips": {"count": args.clips, "frames": args.frames, "size": args.size, "audio": "aac"},
              "convert_flags": flags, "cpus_per_node": args.cpus_per_node, "runs": runs}
    print(f"{'setup':22} {'files':>5} {'frames':>6} {'seconds':>8} {'files/min':>9} {'frames/s':>8}")
    for r in runs:
        print(f"{r['setup']:22} {r['files']:>5} {r['frames']:>6} {r['seconds']:>8.1f} {r['files_per_min']:>9.1f} "
              f"{r['fps']:>8.1f}")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['cpu_flags']) or '-'}")
    Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
