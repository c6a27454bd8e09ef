"""Distillation with real parts: the real teacher (ONNX Runtime), real EfficientNet-Lite0 weights, real photos."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="distillation needs the 'distill' extra (torch)")

from distill.data import PreparedSet  # noqa: E402
from distill.evaluate import evaluate  # noqa: E402
from distill.export import export  # noqa: E402
from engines.student import Student, StudentConfig, count_macs_per_pixel, save_checkpoint_weights  # noqa: E402
from distill.train import TrainConfig, train  # noqa: E402

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def test_prepare_caches_teacher_targets(prepared: Path) -> None:
    data = PreparedSet.load(prepared)
    assert data.content.shape == data.target.shape == (10, 384, 384, 3)
    assert data.style.shape == (10, 100)
    # the teacher really stylized: its output is far from its input
    diff = np.abs(data.content.astype(int) - data.target.astype(int)).mean()
    assert diff > 10
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert len(manifest["heldout_content"]) == 1 and manifest["heldout_content"][0] not in manifest["train_content"]


def test_short_training_lowers_the_loss(prepared: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(prepared), out=str(tmp_path / "run"), steps=40, batch=4, crop=64, lr=3e-3, seed=0,
                      w_temporal=1.0, ckpt_every=20)
    result = train(cfg, progress=False)
    assert result["step"] == 40
    assert result["fixed_loss_end"] < 0.85 * result["fixed_loss_start"]
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "student.pt").exists()
    # resuming from the checkpoint continues the step count instead of starting over
    cfg.steps = 44
    assert train(cfg, progress=False)["step"] == 44


def test_export_follows_the_onnx_contract(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Student(StudentConfig())
    for p in model.style_mlp[-1].parameters():   # make FiLM non-trivial so the style input matters
        torch.nn.init.normal_(p, std=0.05)
    save_checkpoint_weights(model, tmp_path / "s.pt")
    result = export(str(tmp_path / "s.pt"), str(tmp_path / "s.onnx"))
    assert result["max_abs_diff_vs_torch"] <= 1e-4
    graph = onnx.load(str(tmp_path / "s.onnx"))
    onnx.checker.check_model(graph)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ins = {i.name: i for i in graph.graph.input}
    assert set(ins) == {"frame", "style"} and [o.name for o in graph.graph.output] == ["stylized"]
    dims = [d.dim_param or d.dim_value for d in ins["frame"].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))

    from engines.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(tmp_path / "s.onnx")
    frames = np.random.default_rng(0).random((2, 3, 61, 83), dtype=np.float32)   # odd sizes are padded inside
    styles = np.random.default_rng(1).standard_normal((2, 100)).astype(np.float32)
    out = engine.infer(frames, styles)
    assert out.shape == frames.shape and out.min() >= 0 and out.max() <= 1
    with torch.no_grad():
        ref = model(torch.from_numpy(np.pad(frames, ((0, 0), (0, 0), (0, 3), (0, 5)), mode="reflect")),
                    torch.from_numpy(styles)).numpy()[:, :, :61, :83]
    assert np.abs(out - ref).max() <= 1e-4
    # the style vector changes the picture
    assert np.abs(engine.infer(frames[:1], styles[:1]) - engine.infer(frames[:1], styles[1:])).mean() > 1e-3


def test_ssim_loss_is_one_minus_the_eval_metric() -> None:
    """The training term must measure exactly what `distill eval` reports, or optimizing it proves nothing."""
    import cv2

    from distill.losses import ssim_downscaled_loss
    from streamer.metrics import downscale, ssim

    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.random((128, 96, 3)).astype(np.float32), (9, 9), 3)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    to = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None]  # noqa: E731
    expected = ssim(downscale(a), downscale(b))
    assert 0.2 < expected < 0.9
    assert abs((1 - ssim_downscaled_loss(to(a), to(b)).item()) - expected) < 1e-4
    assert ssim_downscaled_loss(to(a), to(a)).item() < 1e-6


def test_student_costs_at_most_a_fifth_of_the_teacher() -> None:
    from distill.evaluate import TEACHER_MACS_384

    assert count_macs_per_pixel(Student()) * 384 * 384 * 5 <= TEACHER_MACS_384


@pytest.mark.parametrize("tier", ["student_live", "student_hq"])
def test_shipped_student_beats_a_colour_transfer_on_heldout_images(tmp_path: Path, tier: str) -> None:
    """Each shipped distilled tier against the teacher, next to what no network at all reaches: a Reinhard colour
    transfer (the photo's Lab mean and std matched to the painting's) measured on the same pairs; and the spectrum of
    its outputs on photos and on a flat field against the teacher's (no periodic pattern it does not paint)."""
    onnx = REPO / "streamer" / "models" / f"{tier}.onnx"
    if not onnx.exists():
        pytest.skip(f"{tier} is not bundled")
    from distill.evaluate import heldout_files
    from distill.teacher import Teacher
    from streamer.media_files import center_square, read_image
    from streamer.metrics import color_error, downscale, psnr, reinhard_transfer, ssim

    report = evaluate(str(onnx), None, content_dir=str(DATA / "content"), styles_dir=str(DATA / "styles"),
                      side=256, max_pairs=6, sheet=str(tmp_path / "sheet.png"))
    m = report["mean"]
    contents, styles = heldout_files(None, str(DATA / "content"), str(DATA / "styles"))
    teacher, ct = Teacher(), {"ssim_quarter": [], "psnr_full": [], "color_error": []}
    for cpath in contents:
        img = center_square(read_image(cpath), 256)
        for spath in styles:
            painting = read_image(spath)
            t, c = teacher.stylize(img, teacher.style_vector(painting)), reinhard_transfer(img, painting)
            ct["ssim_quarter"].append(ssim(downscale(c), downscale(t)))
            ct["psnr_full"].append(psnr(c, t))
            ct["color_error"].append(color_error(c, t))
    ct = {k: float(np.mean(v)) for k, v in ct.items()}
    assert report["pairs"] == 6 and abs(ct["ssim_quarter"] - m["colortransfer_ssim_quarter"]) < 1e-6
    # Measured 2026-12-01 on these 6 pairs at 256 px, shipped streamer/models/student_live.onnx (the v2 live tier) vs
    # the colour transfer (vs the photo itself): style score 0.734 vs 0.500, colour error 16.2 vs 22.5 (36.4), PSNR
    # 16.02 vs 15.08 (12.44) dB, SSIM/4 0.659 vs 0.662 (0.593), periodic peak 18.5 (the teacher against itself
    # shifted by 3 px: 3-5; a crosshatch: hundreds). The v2 student trades some pixel fidelity for stylization: a
    # colour transfer keeps the photo's structure, which SSIM/4 rewards, so the lines that a network that learned no
    # more than the palette cannot pass are the style score and the colour error. The distilled student-hq
    # (2026-12-02) on the same pairs: style 0.951, colour error 10.0, PSNR 19.42 dB, SSIM/4 0.807, periodic peak
    # 8.3 on photos and 7.0 on a flat field (the live tier as shipped now: style 0.832, peaks 9.7 and 23.2).
    assert m["style_score"] >= m["colortransfer_style_score"] + 0.15, (m["style_score"], m["colortransfer_style_score"])
    assert m["color_error"] <= 0.85 * ct["color_error"], (m["color_error"], ct["color_error"])
    assert m["psnr_full"] >= ct["psnr_full"] + 0.5, (m["psnr_full"], ct["psnr_full"])
    assert m["ssim_quarter"] >= m["baseline_ssim_quarter"] + 0.04, (m["ssim_quarter"], m["baseline_ssim_quarter"])
    assert m["periodic_peak"] < 50 and m["flat_periodic_peak"] < 150   # no crosshatch the teacher does not paint
    assert m["texture_ratio"] >= 0.6                      # and not by blurring
    assert (tmp_path / "sheet.png").stat().st_size > 10_000


def test_distill_cli_bad_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "distill", "prepare", "--content", str(tmp_path / "nope"),
                           "--styles", str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def _distill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distill", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def _one_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distill: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("extra, needle", [
    (("--steps", "-5"), "--steps -5"), (("--minutes", "-1"), "--minutes -1"), (("--batch", "0"), "--batch 0"),
    (("--crop", "250"), "--crop 250"),
    (("--crop", "1000"), "--crop 1000"), (("--crop", "0"), "--crop 0"), (("--lr", "0"), "--lr 0"),
])
def test_train_refuses_numbers_it_would_fail_on_before_making_the_run(prepared: Path, tmp_path: Path, extra,
                                                                       needle) -> None:
    run = tmp_path / "run"
    _one_line(_distill("train", "--data", prepared, "--out", run, *extra), needle)
    assert not run.exists()


def test_train_names_a_bad_init_and_a_checkpoint_of_another_network(prepared: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("garbage\n")
    run = tmp_path / "run"
    _one_line(_distill("train", "--data", prepared, "--out", run, "--init", garbage), str(garbage), "not student weights")
    assert not run.exists()
    base = ("train", "--data", prepared, "--out", run, "--steps", "1", "--batch", "16", "--crop", "64", "--quiet")
    assert _distill(*base).returncode == 0
    _one_line(_distill(*base, "--c1", "24"), str(run / "last.pt"), "another network", "--c1 16")


def test_export_refuses_to_overwrite_its_weights_and_eval_its_counts(prepared: Path, tmp_path: Path) -> None:
    weights = tmp_path / "student.pt"
    save_checkpoint_weights(Student(), weights)
    before = weights.read_bytes()
    _one_line(_distill("export", "--weights", weights, "--out", weights, "--format", "torchscript"),
              "is the --weights file")
    assert weights.read_bytes() == before
    _one_line(_distill("eval", "--model", weights, "--content", tmp_path, "--styles", tmp_path, "--pairs", "0"),
              "--pairs 0")
    _one_line(_distill("hq-init", "--data", prepared, "--out", tmp_path / "hq.pt", "--frame-moments", "1.5"),
              "--frame-moments 1.5")
    _one_line(_distill("hq-init", "--data", prepared, "--out", tmp_path / "hq.pt", "--blocks", "6"), "--blocks 6")
    _one_line(_distill("hq-init", "--data", prepared, "--out", tmp_path / "hq.pt", "--kernel", "4"), "--kernel 4")
    assert not (tmp_path / "hq.pt").exists()
