"""Reliability of `streamer convert` with real damage and real filesystems (issue 21): damaged inputs give what
they hold (with a warning, or refused under --strict), a full or read-only disk stops with one line and leaves
nothing behind, and two runs writing one output end with one complete file.

Full and read-only disks are real: a 1 MiB tmpfs (``mount -t tmpfs``) and a read-only tmpfs, mounted by the test;
where mounting is not permitted (not root, no CAP_SYS_ADMIN) those tests skip and say so.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import REPO, leftovers, make_clip, probe, run_cli
from benchmarks.fuzz import decoded_frames, make_bases
from streamer.errors import InputError

FAST = ("--model", "identity", "--preset", "ultrafast", "--smooth", "off")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def warnings_of(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("streamer: warning: ")]


def spans(path: Path) -> dict[str, tuple[float, float]]:
    """(start, end) seconds of each stream type's packets."""
    out: dict[str, tuple[float, float]] = {}
    with av.open(str(path)) as c:
        for pk in c.demux():
            if pk.pts is None or not pk.size:
                continue
            t0 = float(pk.pts * pk.time_base)
            t1 = t0 + float((pk.duration or 0) * pk.time_base)
            a, b = out.get(pk.stream.type, (t0, t1))
            out[pk.stream.type] = (min(a, t0), max(b, t1))
    return out


# --- damaged inputs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """Real footage (the bundled sample's first 2 s, 60 frames) as a camera writes it: AVI (MPEG-4 + MP3), MP4 with
    the index first (H.264 + AAC) and MKV (H.264 + FLAC), video and audio interleaved."""
    d = tmp_path_factory.mktemp("recordings")
    return make_bases(d, ("avi", "mp4_faststart", "mkv"))


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("kind,fraction", [("avi", 0.55), ("mp4_faststart", 0.55), ("mkv", 0.55), ("mkv", 0.35),
                                           ("mkv", 0.75)])
def test_truncated_recording_converts_what_it_holds_with_a_warning(tmp_path, recordings, kind, fraction):
    """A recording cut off by a crash: the frames that are there, audio trimmed to them, a one-line warning, exit 0.
    The count expected is the recording's own (60 frames), also where the cut took B-frames shown before the last
    frame that decodes."""
    src = cut(recordings[kind], tmp_path / f"clip{recordings[kind].suffix}", fraction)
    before = sha(src)
    out = tmp_path / "out.mp4"
    proc = run_cli("convert", src, out, *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    frames = decoded_frames(out)
    assert r["truncated"] is True and r["damaged"] is True
    assert frames == r["frames"] and 10 < frames < 60
    # the AVI's index holds 62 slots for its 60 frames (packed B-frames leave two empty chunks): its own count
    assert r["frames_expected"] == (62 if kind == "avi" else 60) and r["frames_missing"] > 0
    present = r["frames_expected"] - r["frames_missing"]
    assert warnings_of(proc) == [f"streamer: warning: {src}: truncated: {present} of {r['frames_expected']} "
                                 f"frames present" + (f", {r['frames_skipped']} corrupt frame"
                                                      f"{'s' * (r['frames_skipped'] != 1)} skipped"
                                                      if r["frames_skipped"] else "") + f"; converted {frames}"]
    assert r["warnings"] == [warnings_of(proc)[0].removeprefix("streamer: warning: ")]
    s = spans(out)
    assert s["audio"][1] <= s["video"][1] + 0.1, s             # the audio ends with the video, not after it
    assert sha(src) == before and leftovers(tmp_path) == []


def test_re_encoded_audio_of_a_cut_file_ends_with_its_video(tmp_path, recordings):
    """FLAC into WebM is re-encoded (Opus), so the audio can stop inside one of the source's 104 ms packets: it ends
    where the last frame that decodes ends, not with the audio the cut file still holds."""
    src = cut(recordings["mkv"], tmp_path / "clip.mkv", 0.75)
    out = tmp_path / "out.webm"
    proc = run_cli("convert", src, out, *FAST[:2], "--smooth", "off", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["audio"] == ["flac -> libopus"]
    s = spans(out)
    assert abs(s["audio"][1] - s["video"][1]) < 0.03, s


def test_strict_refuses_a_truncated_file(tmp_path, recordings):
    src = cut(recordings["avi"], tmp_path / "clip.avi", 0.55)
    out = tmp_path / "out.mp4"
    proc = run_cli("convert", src, out, *FAST, "--strict")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"streamer: error: {src}: truncated: ") and "--strict" in lines[0]
    assert not out.exists() and leftovers(tmp_path) == []


def test_corrupt_frames_in_the_middle_are_skipped_and_counted(tmp_path, recordings, identity_converter):
    """A zeroed run in the middle of the media data: the frames around it convert, the lost ones are counted."""
    data = bytearray(recordings["mp4_faststart"].read_bytes())
    mid = len(data) // 2
    data[mid:mid + 3000] = bytes(3000)
    src = tmp_path / "zeroed.mp4"
    src.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    r = identity_converter().convert(src, out)
    assert r.damaged and not r.truncated
    assert r.frames_skipped > 0 and r.frames + r.frames_skipped == r.frames_expected == 60
    assert decoded_frames(out) == r.frames
    assert r.warnings == [f"{src}: damaged: {r.frames_skipped} corrupt frames skipped; converted {r.frames} of 60"]
    # frames after the damage are there: the output's last timestamp is the input's last
    assert probe(out)["pts"][-1] == probe(recordings["mp4_faststart"])["pts"][-1]
    out.unlink()
    with pytest.raises(InputError, match="--strict"):
        identity_converter(strict=True).convert(src, out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_intact_files_carry_no_damage_fields(tmp_path, recordings):
    for kind, src in recordings.items():
        proc = run_cli("convert", src, tmp_path / f"{kind}.mp4", *FAST, "--json")
        assert proc.returncode == 0 and warnings_of(proc) == [], proc.stderr
        r = json.loads(proc.stdout)
        assert r["frames"] == 60 and r["damaged"] is False and r["truncated"] is False and r["warnings"] == []


def test_batch_summary_lists_damaged_files(tmp_path, recordings):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "good.mp4")
    cut(recordings["avi"], src / "short.avi", 0.55)
    proc = run_cli("convert", src, tmp_path / "out", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "2 files: 2 converted (1 damaged), 0 skipped, 0 failed" in proc.stdout
    damaged = [ln for ln in proc.stdout.splitlines() if ln.startswith("damaged ")]
    assert len(damaged) == 1 and str(src / "short.avi") in damaged[0] and "truncated" in damaged[0]
    assert len(warnings_of(proc)) == 1
    proc = run_cli("convert", src, tmp_path / "out_json", *FAST, "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] == 2 and report["damaged"] == 1
    assert [f["truncated"] for f in report["files"]] == [False, True]
    proc = run_cli("convert", src, tmp_path / "out_strict", *FAST, "--strict")
    assert proc.returncode == 2 and "1 converted, 0 skipped, 1 failed" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out_strict").iterdir()) == ["good.mp4"]


# --- full and read-only disks -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    """A clip whose lossless output (--crf 0) needs more than 1 MiB."""
    return make_clip(tmp_path_factory.mktemp("big") / "big.mp4", width=320, height=240, frames=120)


def test_full_disk_stops_with_one_line_and_leaves_nothing(tmp_path, mount_tmpfs, big_clip):
    disk = mount_tmpfs("disk")
    before = sha(big_clip)
    out = disk / "out.mp4"
    proc = run_cli("convert", big_clip, out, *FAST, "--crf", "0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"streamer: error: {out}: cannot write (no space left on device)"]
    assert list(disk.iterdir()) == []                          # no output, no temp file
    assert sha(big_clip) == before


def test_full_disk_in_batch_mode_stops_after_one_failure(tmp_path, mount_tmpfs, big_clip):
    disk = mount_tmpfs("disk")
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (src / name).write_bytes(big_clip.read_bytes())
    t0 = time.perf_counter()
    proc = run_cli("convert", src, disk, *FAST, "--crf", "0", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 2
    assert [f["status"] for f in report["files"]] == ["failed", "not_attempted", "not_attempted"]
    assert "no space left on device" in report["files"][0]["error"]
    assert report["files"][1]["error"] == f"not attempted: {disk} is full (no space left on device)"
    assert list(disk.iterdir()) == []
    proc = run_cli("convert", src, disk, *FAST, "--crf", "0")
    assert proc.returncode == 2
    assert "3 files: 0 converted, 0 skipped, 1 failed" in proc.stdout
    assert f"stopped: 2 files not attempted: {disk} is full (no space left on device)" in proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "no space left on device" in errors[0]
    assert list(disk.iterdir()) == [] and time.perf_counter() - t0 < 60


def test_read_only_output_location(tmp_path, mount_tmpfs, clip):
    ro = mount_tmpfs("ro", ro=True)
    out = ro / "out.mp4"
    proc = run_cli("convert", clip, out, *FAST)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"streamer: error: {out}: ") and "not writable" in lines[0]
    proc = run_cli("convert", clip.parent, ro / "styled", *FAST)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"streamer: error: {ro / 'styled'}: cannot create output directory "
                                                "(Read-only file system)"]


# --- two writers, one output ----------------------------------------------------------------------------
def test_two_writers_one_output_end_with_one_complete_file(tmp_path):
    """Two real `streamer convert -y` processes write the same OUTPUT at once (from different inputs, so the result
    shows whose it is): the file that stays is one of them, whole, never a mix or a half."""
    # long enough (seconds each) that the two overlap even when one interpreter starts a second later on a busy machine
    a = make_clip(tmp_path / "a.mp4", width=320, height=240, frames=450, style="hokusai_bridge", audio=None)
    b = make_clip(tmp_path / "b.mp4", width=320, height=240, frames=480, style="starry_night", audio=None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "same.mp4"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "streamer", "convert", "-y", *FAST, "--crf", "0"]
    procs = [subprocess.Popen([*cmd, str(src), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=REPO) for src in (a, b)]
    both_writing = False
    while any(p.poll() is None for p in procs):
        both_writing = both_writing or len(leftovers(out_dir)) == 2
        time.sleep(0.005)
    results = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert both_writing, "the two runs did not overlap; the test proves nothing"
    assert sorted(p.name for p in out_dir.iterdir()) == ["same.mp4"]
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]
    winner = a if len(got) == 450 else b
    assert len(got) in (450, 480)
    with av.open(str(winner)) as c:
        want = [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]
    diffs = [np.abs(g - w).mean() for g, w in zip(got, want)]
    assert max(diffs) < 3, f"frames differ from {winner.name}'s (mean |diff| up to {max(diffs):.1f})"
