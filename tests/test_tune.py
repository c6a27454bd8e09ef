"""`streamer tune`: a tiny real tune (seconds) improves its own objective on held-out crops and writes an ONNX that
`streamer convert` runs; bad inputs are one-line errors before any work; Ctrl-C keeps the best checkpoint and leaves
nothing at --out; without torch the command says what to install. Every command runs as a real subprocess."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from conftest import REPO, leftovers, make_clip, run_cli

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="streamer tune needs the 'distill' extra (torch)")
PAINTING = REPO / "streamer" / "assets" / "styles" / "kandinsky.jpg"
# seconds, not minutes: few pairs, small crops, one held-out photo, the small live tier (the default base, named so
# the tests say what they run; student-hq takes 6x its time per step, its tune scopes are tested in test_student_hq.py)
TINY = ("--minutes", "0.5", "--pairs", "6", "--crop", "96", "--batch", "4", "--holdout", "2", "--lr", "0.01",
        "--threads", "1", "--model", "student-live")


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("streamer: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def unseen_painting(path: Path) -> Path:
    """A bundled painting with its hues turned half way round: a palette the student never trained on."""
    hsv = cv2.cvtColor(cv2.imread(str(PAINTING)), cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 90) % 180
    cv2.imwrite(str(path), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))
    return path


@needs_torch
@pytest.mark.slow
def test_tiny_tune_improves_its_objective_and_writes_an_onnx_that_convert_runs(tmp_path):
    painting = unseen_painting(tmp_path / "painting.png")
    out = tmp_path / "tuned.onnx"
    proc = run_cli("tune", painting, "--out", out, *TINY, "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # the objective (distillation terms + style-space terms + temporal) on centre crops of the held-out photo
    assert result["last"]["objective"] < result["before"]["objective"]
    assert result["after"]["style_score"] >= result["before"]["style_score"]   # the best by held-out score is kept
    assert result["steps"] > 0 and result["pairs"] >= 4 and result["photos_used"] == 22
    assert result["base"] == "student-live"
    assert len(result["heldout_photos"]) == 2
    for key in ("style_score", "ssim_quarter", "periodic_peak", "flicker"):
        assert key in result["before"] and key in result["after"]
    # the kept checkpoint passed the guard: it flickers at most 25% more than the base on the held-out photos
    assert result["after"]["flicker"] <= result["before"]["flicker"] * 1.25 + 1e-7
    assert result["onnx_max_abs_diff_vs_torch"] <= 1e-4

    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["frame", "style"]
    assert [o.name for o in graph.graph.output] == ["stylized"]
    assert Path(result["checkpoint"]) == out.with_suffix(".pt") and out.with_suffix(".pt").is_file()
    assert result["scope"] == "body"
    # the default scope tunes the style MLP and the residual blocks; the resampling layers stay as distilled
    import torch
    def weights(path: Path) -> dict:
        return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    base, tuned = weights(REPO / "streamer" / "models" / "student_live.pt"), weights(out.with_suffix(".pt"))
    resampling = [k for k in base if k.split(".")[0] in ("stem", "down", "up", "head")]
    assert resampling and all(torch.equal(base[k], tuned[k]) for k in resampling)
    if result["best_step"] > 0:
        changed = {k.split(".")[0] for k in base if not torch.equal(base[k], tuned[k])}
        assert "style_mlp" in changed and "blocks" in changed, changed
    assert leftovers(tmp_path) == []

    clip = make_clip(tmp_path / "in.mp4")
    styled = tmp_path / "styled.mp4"
    proc = run_cli("convert", clip, styled, "--model", out, "--style", painting, "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == 10 and styled.stat().st_size > 0


@needs_torch
@pytest.mark.parametrize("case", ["missing painting", "unreadable image", "zero minutes", "unwritable out",
                                  "out not onnx", "model without weights", "holdout of every photo"])
def test_bad_inputs_are_one_line_errors_before_any_work(tmp_path, case):
    out = tmp_path / "tuned.onnx"
    args, needles = [PAINTING, "--out", out], []
    if case == "missing painting":
        args[0], needles = tmp_path / "nope.jpg", ["nope.jpg", "not found"]
    elif case == "unreadable image":
        bad = tmp_path / "broken.jpg"
        bad.write_bytes(b"this is not a JPEG" * 10)
        args[0], needles = bad, ["broken.jpg", "not an image"]
    elif case == "zero minutes":
        args += ["--minutes", "0"]
        needles = ["--minutes 0", "positive"]
    elif case == "unwritable out":
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        out = blocker / "tuned.onnx"      # a directory that is a file: nothing can be written there
        args[2], needles = out, ["tuned.onnx"]
    elif case == "out not onnx":
        out = tmp_path / "tuned.mp4"
        args[2], needles = out, [".onnx"]
    elif case == "holdout of every photo":
        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(3):
            cv2.imwrite(str(photos / f"p{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
        args += ["--photos", photos, "--holdout", "3"]
        needles = ["--holdout 3", "3 photos", "at most 2"]
    else:
        args += ["--model", "teacher"]
        needles = ["teacher"]
    t0 = time.time()
    proc = run_cli("tune", *args, timeout=120)
    one_line_error(proc, *needles)
    assert time.time() - t0 < 60            # refused before the teacher runs
    assert not out.exists() and not out.with_suffix(".pt").exists() and leftovers(tmp_path) == []


@needs_torch
def test_existing_out_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "tuned.onnx"
    out.write_bytes(b"mine")
    one_line_error(run_cli("tune", PAINTING, "--out", out, timeout=120), "already exists")
    assert out.read_bytes() == b"mine"


@needs_torch
def test_existing_checkpoint_and_the_base_weights_are_never_overwritten(tmp_path):
    """NAME.pt beside --out is written from the first improvement on: an existing one needs -y like NAME.onnx, and
    the base's own weights (tuning mine/student.pt into mine/student.onnx) are refused even with -y."""
    out = tmp_path / "tuned.onnx"
    out.with_suffix(".pt").write_bytes(b"mine")
    one_line_error(run_cli("tune", PAINTING, "--out", out, timeout=120), "tuned.pt", "already exists")
    assert out.with_suffix(".pt").read_bytes() == b"mine"
    base = tmp_path / "student.pt"
    base.write_bytes((REPO / "streamer" / "models" / "student_live.pt").read_bytes())
    one_line_error(run_cli("tune", PAINTING, "--out", tmp_path / "student.onnx", "--model", base, "-y", timeout=120),
                   "is the base")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("garbage\n")
    one_line_error(run_cli("tune", PAINTING, "--out", tmp_path / "g.onnx", "--model", garbage, timeout=120),
                   "garbage.pt", "not student weights")
    one_line_error(run_cli("tune", PAINTING, "--out", tmp_path / "c.onnx", "--crop", "13", timeout=120), "--crop 13")
    one_line_error(run_cli("tune", tmp_path, "--out", tmp_path / "d.onnx", timeout=120), "a folder, not a style image")
    assert base.read_bytes() == (REPO / "streamer" / "models" / "student_live.pt").read_bytes()


@needs_torch
@pytest.mark.slow
def test_ctrl_c_keeps_the_best_checkpoint_and_leaves_nothing_at_out(tmp_path):
    out = tmp_path / "tuned.onnx"
    ckpt = out.with_suffix(".pt")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "tune", str(PAINTING), "--out", str(out), "--minutes", "5",
                             "--pairs", "4", "--crop", "64", "--batch", "2", "--holdout", "1", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.time() + 180
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), "no checkpoint written"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert str(ckpt) in err and "interrupted" in err
    assert not out.exists() and leftovers(tmp_path) == []
    # the checkpoint is a complete student: it loads and exports
    from distill.export import export   # torch: only when the extra is installed (this test is skipped otherwise)

    assert export(str(ckpt), str(tmp_path / "again.onnx"))["max_abs_diff_vs_torch"] <= 1e-4


def test_without_torch_it_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"     # torch cannot be imported, as on a runtime-only install
            "from streamer.cli import main\n"
            f"sys.exit(main(['tune', {str(PAINTING)!r}, '--out', {str(tmp_path / 'x.onnx')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    one_line_error(proc, "torch", "pip install 'streamer[distill]'")
    assert list(tmp_path.iterdir()) == []


@needs_torch
def test_the_checkpoint_guard_refuses_more_flicker_less_ssim_or_a_periodic_peak():
    from distill.tune import TuneOptions, _Score, acceptable

    o = TuneOptions(painting="kandinsky", out="x.onnx")
    base = _Score(style_score=0.6, ssim_quarter=0.70, periodic_peak=20.0, flicker=0.010)
    better = dict(style_score=0.8, ssim_quarter=0.69, periodic_peak=30.0, flicker=0.0105)
    assert acceptable(_Score(**better), base, o)
    for change in ({"flicker": 0.0126}, {"ssim_quarter": 0.66}, {"periodic_peak": 61.0}):
        assert not acceptable(_Score(**{**better, **change}), base, o), change
    strict = TuneOptions(painting="kandinsky", out="x.onnx", max_flicker_rise=0.10)     # --max-flicker-rise 0.1
    assert not acceptable(_Score(**{**better, "flicker": 0.0111}), base, strict)
