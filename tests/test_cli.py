"""The `streamer` command as a user runs it: real subprocesses, one-line errors, exit codes, signals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import cv2
import pytest

from conftest import REPO, leftovers, make_clip, painting, probe, run_cli

FAST = ("--model", "identity", "--preset", "ultrafast")


def assert_one_line_error(proc, out, *names):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for name in names:
        assert str(name) in lines[0]
    assert not out.exists()
    if out.parent.is_dir():
        assert leftovers(out.parent) == []


def test_json_prints_one_object(tmp_path, clip):
    out = tmp_path / "out.mp4"
    proc = run_cli("convert", clip, out, "--json", *FAST)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert {"input", "output", "frames", "width", "height", "seconds", "fps", "backend", "model", "style"} <= set(obj)
    assert (obj["frames"], obj["width"], obj["height"]) == (10, 64, 48)
    assert len(proc.stdout.strip().splitlines()) == 1


def test_styles_and_info():
    proc = run_cli("styles")
    assert proc.returncode == 0 and "starry_night" in proc.stdout
    proc = run_cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    names = {b["name"]: b for b in info["backends"]}
    assert names["onnxruntime"]["available"] is True
    assert set(names) == {"onnxruntime", "tensorrt", "torch"}
    assert all(b["reason"] for b in info["backends"])


def _bad_inputs(tmp, clip):
    """(name, input path, extra args, text the error must contain)"""
    data = clip.read_bytes()
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "text.mp4").write_text("hello, I am not a video\n" * 20)
    (tmp / "trunc.mp4").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    for i in range(48, len(corrupt), 7):
        corrupt[i] ^= 0x5A
    (tmp / "corrupt.mp4").write_bytes(bytes(corrupt))
    (tmp / "unsupported.mp4").write_bytes(data.replace(b"avc1", b"zzz1"))   # unknown sample entry fourcc
    (tmp / "style.jpg").write_text("not an image")
    cv2.imwrite(str(tmp / "tiny.png"), painting()[:16, :16])
    cv2.imwrite(str(tmp / "whole.png"), painting())
    (tmp / "cut.png").write_bytes((tmp / "whole.png").read_bytes()[:3000])   # libpng would add its own stderr line
    (tmp / "afile").write_text("x")
    return [
        ("missing", tmp / "nope.mp4", (), "no such file"),
        ("empty", tmp / "empty.mp4", (), "empty file"),
        ("not a video", tmp / "text.mp4", (), "not a readable video"),
        ("truncated", tmp / "trunc.mp4", (), "trunc.mp4: an MP4/MOV without its index (moov atom)"),
        ("corrupt", tmp / "corrupt.mp4", (), "corrupt.mp4"),
        ("unsupported codec", tmp / "unsupported.mp4", (), "unsupported"),
        ("unreadable style", clip, ("--style", str(tmp / "style.jpg")), "style.jpg"),
        ("missing style", clip, ("--style", "no_such_style"), "no_such_style"),
        ("tiny image", tmp / "tiny.png", (), "smaller than the network needs"),
        ("truncated png style", clip, ("--style", str(tmp / "cut.png")), "cut.png: a PNG cut short"),
        ("truncated png input", tmp / "cut.png", (), "cut.png: a PNG cut short"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_input_one_line_exit_2(tmp_path, clip, case):
    name, src, extra, text = _bad_inputs(tmp_path, clip)[case]
    out = tmp_path / "outdir" / ("out.png" if src.suffix == ".png" else "out.mp4")
    out.parent.mkdir()
    proc = run_cli("convert", src, out, *FAST, *extra)
    assert_one_line_error(proc, out, text)


@pytest.mark.parametrize("where", ["missing dir", "parent is a file"])
def test_unwritable_output_location(tmp_path, clip, where):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / ("no_dir" if where == "missing dir" else "afile") / "out.mp4"
    proc = run_cli("convert", clip, out, *FAST)
    assert_one_line_error(proc, out, out)


def test_output_same_as_input_and_existing_output(tmp_path, clip):
    src = tmp_path / "in.mp4"
    src.write_bytes(clip.read_bytes())
    proc = run_cli("convert", src, src, *FAST)
    assert proc.returncode == 2 and "same file" in proc.stderr and src.read_bytes() == clip.read_bytes()
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"precious")
    proc = run_cli("convert", src, out, *FAST)
    assert proc.returncode == 2 and "already exists" in proc.stderr and out.read_bytes() == b"precious"
    proc = run_cli("convert", src, out, *FAST, "-y")
    assert proc.returncode == 0 and len(probe(out)["pts"]) == 10


def test_usage_error_exit_2(clip, tmp_path):
    proc = run_cli("convert", clip)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_cli("convert", clip, tmp_path / "o.mp4", "--strength", "3", *FAST)
    assert proc.returncode == 2 and proc.stderr.startswith("streamer: error: --strength")


def test_debug_shows_traceback(tmp_path):
    proc = run_cli("convert", tmp_path / "nope.mp4", tmp_path / "o.mp4", "--debug", *FAST)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_batch_cli_summary_and_exit_code(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "good.mp4")
    (src / "bad.mp4").write_bytes(b"\x00" * 100)
    proc = run_cli("convert", src, tmp_path / "out", *FAST)
    assert proc.returncode == 2
    assert "1 converted, 0 skipped, 1 failed" in proc.stdout
    assert [ln for ln in proc.stderr.splitlines() if ln] == [proc.stderr.strip()]   # one error line
    proc = run_cli("convert", src, tmp_path / "out", *FAST)
    assert "0 converted, 1 skipped, 1 failed" in proc.stdout


def test_stale_temp_of_a_killed_run_is_removed(tmp_path, clip):
    stale = tmp_path / ".out.streamer-tmp-4194300.mp4"        # above pid_max defaults: no such process
    stale.write_bytes(b"half a file")
    proc = run_cli("convert", clip, tmp_path / "out.mp4", *FAST)
    assert proc.returncode == 0 and not stale.exists()


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_leaves_nothing_behind(tmp_path, signum, code):
    src = make_clip(tmp_path / "long.mp4", width=96, height=64, frames=60)
    out = tmp_path / "out.mp4"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "convert", str(src), str(out), "--model", "teacher",
                             "--max-size", "96"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    while not leftovers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)                                        # wait until the temp output exists
    assert leftovers(tmp_path), "the conversion never started writing"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_unknown_encoder_and_wrong_container(tmp_path, clip):
    out = tmp_path / "o.mp4"
    proc = run_cli("convert", clip, out, *FAST, "--codec", "no_such_encoder")
    assert_one_line_error(proc, out, "no_such_encoder")
    out = tmp_path / "o.webm"
    proc = run_cli("convert", clip, out, *FAST, "--codec", "libx264")
    assert_one_line_error(proc, out, "cannot hold h264")


@pytest.mark.parametrize("extra, out_name, needle", [
    (("--preset", "nonsense"), "o.mp4", "--preset nonsense"),
    (("--crf", "-3"), "o.mp4", "--crf -3"),
    (("--crf", "60"), "o.mp4", "--crf 60"),
    ((), "o.xyz", "o.xyz: unknown video format"),
    ((), "o", "(no extension)"),
])
def test_encoder_options_and_output_format_refused_before_any_work(tmp_path, clip, extra, out_name, needle):
    """What FFmpeg would refuse only when the encoder opens (after the model loaded, with its own log line on
    stderr, exit 1) is refused up front: exit 2, one line naming the option or the file."""
    out = tmp_path / out_name
    proc = run_cli("convert", clip, out, "--model", "identity", *extra)
    assert_one_line_error(proc, out, needle)


def test_stream_preset_refused_up_front(tmp_path, clip):
    proc = run_cli("live", "--source", clip, "--sink", "null", "--model", "identity", "--stream-preset", "nonsense")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "streamer: error: --stream-preset nonsense: not an x264 or NVENC preset (use ultrafast, superfast, "
        "veryfast, faster, fast, medium, ... or p1..p7)"], proc.stderr


def test_json_of_a_failed_file_is_one_object(tmp_path):
    out = tmp_path / "o.mp4"
    proc = run_cli("convert", tmp_path / "missing.mp4", out, *FAST, "--json")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "failed" and report["exit_code"] == 2 and "missing.mp4" in report["error"]
    assert report["output"] == str(out) and not out.exists()


def test_pt_model_runs_on_onnx_runtime_through_the_onnx_beside_it(tmp_path, clip):
    """A tuned model (NAME.onnx + NAME.pt) named by its .pt: ONNX Runtime runs the .onnx; a lone .pt is refused in
    one line that says what runs it."""
    models = REPO / "streamer" / "models"
    for suffix in (".onnx", ".pt"):
        (tmp_path / f"mine{suffix}").write_bytes((models / f"student_live{suffix}").read_bytes())
    out = tmp_path / "o.mp4"
    proc = run_cli("convert", clip, out, "--model", tmp_path / "mine.pt", "--backend", "onnxruntime", "--json",
                   "--max-size", "64", "--preset", "ultrafast")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "mine" and out.exists()
    (tmp_path / "mine.onnx").unlink()
    out2 = tmp_path / "o2.mp4"
    proc = run_cli("convert", clip, out2, "--model", tmp_path / "mine.pt", "--backend", "onnxruntime")
    assert_one_line_error(proc, out2, "mine.pt", "torch backend", "distill export")


def test_batch_says_it_leaves_subfolders(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "a.png"), painting()[:64, :64])
    make_clip(src / "sub" / "b.mp4")
    proc = run_cli("convert", src, tmp_path / "out", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "1 subfolder not converted" in proc.stderr and "1 file: 1 converted" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_web_refuses_a_bad_port_and_a_model_onnx_runtime_cannot_load(tmp_path):
    proc = run_cli("web", "--port", "99999")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "streamer: error: --port 99999: not a TCP port (0..65535; 0 picks a free one)"], proc.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 50)
    proc = run_cli("web", "--port", "0", "--model", bad, timeout=30)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "cannot load ONNX model" in lines[0], proc.stderr
    proc = run_cli("web", "--port", "0", "--model", tmp_path / "clip.mp4", timeout=30)
    assert proc.returncode == 2 and "the page runs student, student-live, student-hq, teacher-video or a .onnx" in proc.stderr


def test_bench_names_the_model_no_backend_can_run(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 50)
    proc = run_cli("bench", "--quick", "--model", bad)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "no backend can run this model here" in lines[0] and str(bad) in lines[0], lines[0]


def test_max_size_too_small_for_the_input_names_the_flag(tmp_path, clip):
    out = tmp_path / "o.mp4"
    w, h = probe(clip)["width"], probe(clip)["height"]
    proc = run_cli("convert", clip, out, "--model", "student-live", "--max-size", "16")
    assert_one_line_error(proc, out, "--max-size 16: too small for", f"{w}x{h}", "use at least")
