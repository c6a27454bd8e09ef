"""`streamer convert IN_DIR OUT_DIR --ray ADDRESS` on a real Ray cluster (issue 20).

The cluster is two real nodes on this machine, one CPU each: `ray start --head` and a second `ray start --address`,
run with --block as subprocesses in their own process group (ended by their PIDs and that group, never by
`ray stop`, which ends every Ray process of the machine by name).  The CLI runs as a subprocess, with the identity
model, on clips written by the project's one clip writer; nothing is mocked.  A worker is killed with a real SIGKILL
while it converts a file, and while it converts a part of a long file (--segment); Ray restarts it and the driver
hands the work to the other worker.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import REPO, leftovers, make_clip, probe, run_cli

from benchmarks.ray_scaling import free_port, start_node, stop, wait_for_cpus   # the one local-cluster helper

FAST = ("--model", "identity", "--smooth", "off", "--preset", "ultrafast")
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'streamer[ray]')")
NODE = r"[0-9a-fA-F.:]+/[0-9a-f]{8}"          # a file's "node": the IP the node registered with / its ID's first digits


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, scratch root): a head node and a worker node, one CPU each; the actors' node scratch folders (their
    TMPDIR) lie under the scratch root, where a test can see which process is converting which file."""
    if not HAVE_RAY:
        pytest.skip("ray is not installed (pip install 'streamer[ray]')")
    base = tmp_path_factory.mktemp("r")
    scratch = base / "t"
    scratch.mkdir()
    # RAY_AUTH_MODE: `ray start` (Ray 2.60) turns token authentication on where a token file exists; this cluster is
    # private to the test, and its drivers (the CLI runs, which get os.environ) connect without one
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(scratch), RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="disabled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        yield from run_cluster(base, env)


def run_cluster(base: Path, env: dict):
    scratch = Path(env["TMPDIR"])
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs = [start_node(["--head", "--port", str(port), "--include-dashboard", "false",
                         "--ray-client-server-port", str(free_port())], base / "h", 1, env)]
    try:
        time.sleep(3)
        assert procs[0].poll() is None, (base / "h" / "ray-start.log").read_text()[-2000:]
        procs.append(start_node(["--address", address], base / "w", 1, env))
        wait_for_cpus(address, 2, env)
        yield address, scratch
    finally:
        for p in reversed(procs):
            stop(p)


def kill_the_worker_writing(scratch: Path, pattern: str, proc: subprocess.Popen) -> int | None:
    """SIGKILL the worker whose temp output matches ``pattern`` once it has bytes; its PID, or None if none was seen.
    An actor converts into its node's scratch folder, named by its PID, through AtomicOutput's temp name."""
    deadline = time.time() + 150
    while proc.poll() is None and time.time() < deadline:
        busy = [p for p in scratch.glob(pattern) if p.stat().st_size > 0]
        if busy:
            pid = int(busy[0].parent.name)
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.02)
    return None


def frames_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


def audio_packets(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(*c.streams.audio) if p.size)


def ray_temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".streamer-tmp" in p.name or ".streamer-ray-probe" in p.name]


def by_name(report: dict) -> dict[str, dict]:
    return {Path(f["input"]).name: f for f in report["files"]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two clips with AAC audio (mp4 and mkv), an image, and a file that is not a video."""
    d = tmp_path_factory.mktemp("in")
    make_clip(d / "a.mp4", width=160, height=96, frames=30, audio="aac")
    make_clip(d / "b.mkv", width=160, height=96, frames=24, audio="aac", style="starry_night")
    make_clip(d / "c.mp4", width=96, height=64, frames=12, audio=None)
    (d / "d.mp4").write_bytes(b"this is not a video")
    return d


@needs_ray
def test_cluster_output_matches_one_machine_and_a_corrupt_file_fails_alone(cluster, folder, tmp_path):
    address, _ = cluster
    local, remote = tmp_path / "local", tmp_path / "remote"
    one = run_cli("convert", folder, local, *FAST, "--json", timeout=120)
    proc = run_cli("convert", folder, remote, *FAST, "--json", "--ray", address, timeout=180)
    assert proc.returncode == one.returncode == 2, proc.stderr[-3000:]          # d.mp4 is bad input: exit 2
    report, single = json.loads(proc.stdout), json.loads(one.stdout)
    assert {k: report[k] for k in ("ok", "skipped", "failed", "not_attempted", "damaged")} == \
           {k: single[k] for k in ("ok", "skipped", "failed", "not_attempted", "damaged")} == \
           {"ok": 3, "skipped": 0, "failed": 1, "not_attempted": 0, "damaged": 0}
    files = by_name(report)
    assert files["d.mp4"]["status"] == "failed" and str(folder / "d.mp4") in files["d.mp4"]["error"]
    assert files["d.mp4"]["error"] == by_name(single)["d.mp4"]["error"]
    assert set(report["files"][0]) == set(single["files"][0]) | {"node"}
    nodes = {f["node"] for f in report["files"] if f["status"] == "ok"}
    assert all(re.fullmatch(NODE, n) for n in nodes) and len(nodes) == 2, nodes                # both nodes worked
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in local.iterdir()) == \
           ["a.mp4", "b.mp4", "c.mp4"]
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        a, b = probe(local / name), probe(remote / name)
        assert len(b["pts"]) == len(a["pts"]) == files[name.replace("b.mp4", "b.mkv")]["frames"]
        assert [p * b["time_base"] for p in b["pts"]] == [p * a["time_base"] for p in a["pts"]]
        assert audio_packets(remote / name) == audio_packets(local / name)
        diffs = [np.abs(x - y).mean() for x, y in zip(frames_rgb(local / name), frames_rgb(remote / name))]
        assert max(diffs) <= 1.0, (name, max(diffs))
    assert ray_temps(remote) == []


@needs_ray
def test_resume_skips_existing_outputs_and_redoes_a_missing_one(cluster, folder, tmp_path):
    address, _ = cluster
    out = tmp_path / "out"
    proc = run_cli("convert", folder, out, *FAST, "--ray", address, timeout=180)
    assert proc.returncode == 2 and "4 files: 3 converted, 0 skipped, 1 failed" in proc.stdout, proc.stderr[-3000:]
    (out / "b.mp4").unlink()
    proc = run_cli("convert", folder, out, *FAST, "--ray", address, "--json", timeout=180)
    report = json.loads(proc.stdout)
    status = {name: f["status"] for name, f in by_name(report).items()}
    assert status == {"a.mp4": "skipped", "b.mkv": "ok", "c.mp4": "skipped", "d.mp4": "failed"}
    assert re.fullmatch(NODE, by_name(report)["b.mkv"]["node"]) and by_name(report)["a.mp4"]["node"] is None
    assert len(probe(out / "b.mp4")["pts"]) == 24
    proc = run_cli("convert", folder, out, *FAST, "--ray", address, timeout=180)
    assert "4 files: 0 converted, 3 skipped, 1 failed" in proc.stdout
    assert ray_temps(out) == []


@needs_ray
def test_a_worker_killed_mid_file_is_retried_on_the_other_and_leaves_a_complete_output(cluster, tmp_path):
    address, scratch = cluster
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4", width=160, height=96, frames=30, audio="aac")
    long = make_clip(src / "long.mp4", width=320, height=240, frames=450, audio="aac")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "convert", str(src), str(out), *FAST, "--json",
                             "--ray", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    killed = kill_the_worker_writing(scratch, "streamer-ray/*/.long.streamer-tmp-*.mp4", proc)
    stdout, stderr = proc.communicate(timeout=240)
    assert killed is not None, f"no worker was seen converting long.mp4: {stderr[-3000:]}"
    assert proc.returncode == 0, stderr[-3000:]
    files = by_name(json.loads(stdout))
    assert files["long.mp4"]["status"] == files["a.mp4"]["status"] == "ok"
    assert files["long.mp4"]["node"] == files["a.mp4"]["node"]         # the other actor (one per node) took it over
    a, b = probe(long), probe(out / "long.mp4")
    assert len(b["pts"]) == len(a["pts"]) == files["long.mp4"]["frames"] == 450
    assert np.allclose([float(p * b["time_base"]) for p in b["pts"]], [float(p * a["time_base"]) for p in a["pts"]],
                       atol=1e-6)
    assert audio_packets(out / "long.mp4") == audio_packets(long)
    assert np.abs(a["first"].astype(int) - b["first"].astype(int)).mean() < 3
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "long.mp4"] and leftovers(out) == []


def test_segment_needs_ray(tmp_path, clip):
    proc = run_cli("convert", clip, tmp_path / "out.mp4", *FAST, "--segment", "2")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["streamer: error: --segment splits long videos across a Ray cluster: "
                                                "it needs --ray"]
    assert not (tmp_path / "out.mp4").exists()


def test_without_ray_the_flag_names_the_extra_to_install(tmp_path, folder):
    """A `ray` that cannot be imported (a package on the path that raises ImportError, as a missing one does)."""
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    out = tmp_path / "out"
    proc = run_cli("convert", folder, out, *FAST, "--ray", "auto", cwd=fake.parent)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["streamer: error: --ray needs Ray, which is not installed: "
                                                "pip install 'streamer[ray]'"]
    assert not out.exists()


@needs_ray
def test_ray_takes_a_directory(tmp_path, clip):
    proc = run_cli("convert", clip, tmp_path / "out.mp4", *FAST, "--ray", "auto")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"streamer: error: {clip}: --ray converts a directory of videos and "
                                                "images; INPUT is not one"]


@needs_ray
def test_an_output_folder_the_workers_cannot_write_stops_the_run_with_one_line(cluster, folder, mount_tmpfs):
    """Checked by every worker before any file: a read-only folder (a real read-only tmpfs) as OUTPUT."""
    address, _ = cluster
    ro = mount_tmpfs("ro", ro=True)
    proc = run_cli("convert", folder, ro, *FAST, "--ray", address, timeout=180)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(rf"streamer: error: {re.escape(str(ro))}: not writable on Ray node {NODE} "
                                            r"\(read-only file system\); --ray needs storage every node shares at the "
                                            r"same paths", lines[0]), lines
    assert list(ro.iterdir()) == []


@needs_ray
def test_a_long_file_in_parts_equals_a_one_pass_conversion(cluster, tmp_path):
    """--segment 2 on a 5 s clip with a keyframe every 12 frames (MPEG-4 Part 2, FFmpeg's default GOP): three parts
    cut at 2 s and 4 s, converted on both nodes, joined without re-encoding, the audio copied once.  EMA smoothing
    carries state from frame to frame and the encoding is lossless (--crf 0), so the pixels show the smoothing alone:
    parts started cold differ in their first frames by 2-3 gray levels (measured), with the warm-up by 0.00."""
    address, _ = cluster
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "long.mp4", width=160, height=96, frames=150, codec="mpeg4", audio="aac")
    flags = ("--model", "identity", "--smooth", "ema", "--preset", "ultrafast", "--crf", "0", "--json")   # lossless
    one = run_cli("convert", src, tmp_path / "one", *flags, timeout=120)
    proc = run_cli("convert", src, tmp_path / "parts", *flags, "--ray", address, "--segment", "2", timeout=180)
    assert proc.returncode == one.returncode == 0, proc.stderr[-3000:]
    r, single = json.loads(proc.stdout)["files"][0], json.loads(one.stdout)["files"][0]
    assert r["status"] == "ok" and r["frames"] == single["frames"] == 150 and r["audio"] == single["audio"]
    assert len(set(r["node"].split(","))) == 2 and all(re.fullmatch(NODE, n) for n in r["node"].split(","))
    a, b = probe(tmp_path / "one" / "long.mp4"), probe(tmp_path / "parts" / "long.mp4")
    assert [p * b["time_base"] for p in b["pts"]] == [p * a["time_base"] for p in a["pts"]]
    assert b["audio"] == a["audio"] and b["audio_seconds"] == a["audio_seconds"]
    assert audio_packets(tmp_path / "parts" / "long.mp4") == audio_packets(tmp_path / "one" / "long.mp4")
    diffs = [np.abs(x - y).mean() for x, y in zip(frames_rgb(tmp_path / "one" / "long.mp4"),
                                                  frames_rgb(tmp_path / "parts" / "long.mp4"))]
    assert len(diffs) == 150 and max(diffs) <= 0.5, " ".join(f"{d:.2f}" for d in diffs)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["long.mp4"]


@needs_ray
def test_a_worker_killed_mid_part_leaves_a_complete_joined_output(cluster, tmp_path):
    address, scratch = cluster
    src = tmp_path / "in"
    src.mkdir()
    long = make_clip(src / "long.mp4", width=320, height=240, frames=600, codec="mpeg4", audio="aac")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "convert", str(src), str(out), *FAST, "--json",
                             "--ray", address, "--segment", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    killed = kill_the_worker_writing(scratch, "streamer-ray/*/.long.streamer-tmp-ray-part*.streamer-tmp-*.mp4", proc)
    stdout, stderr = proc.communicate(timeout=240)
    assert killed is not None, f"no worker was seen converting a part: {stderr[-3000:]}"
    assert proc.returncode == 0, stderr[-3000:]
    r = json.loads(stdout)["files"][0]
    a, b = probe(long), probe(out / "long.mp4")
    assert r["status"] == "ok" and len(b["pts"]) == len(a["pts"]) == r["frames"] == 600
    assert np.allclose([float(p * b["time_base"]) for p in b["pts"]], [float(p * a["time_base"]) for p in a["pts"]],
                       atol=1e-6)
    assert audio_packets(out / "long.mp4") == audio_packets(long)
    assert np.abs(a["first"].astype(int) - b["first"].astype(int)).mean() < 3
    assert sorted(p.name for p in out.iterdir()) == ["long.mp4"]


@needs_ray
def test_an_address_nothing_answers_at_fails_at_once_with_one_line(tmp_path, folder):
    port = free_port()                                   # bound and released: nothing listens there
    t0 = time.perf_counter()
    proc = run_cli("convert", folder, tmp_path / "out", *FAST, "--ray", f"127.0.0.1:{port}")
    assert proc.returncode == 2 and time.perf_counter() - t0 < 30
    assert proc.stderr.strip().splitlines() == [f"streamer: error: --ray 127.0.0.1:{port}: cannot connect (nothing "
                                                f"answers at 127.0.0.1:{port}: connection refused)"]
    assert not (tmp_path / "out").exists()
