"""The high-quality student: the teacher's own layers (checked against the teacher's ONNX), no whole-frame statistic
once its instance norms are replaced by local ones, whole-frame moments carried from frame to frame (the shipped
tier: a still is the teacher's picture, something entering moves the far side of the frame slowly, a cut starts
afresh), and the whole path hq-init -> train -> export -> ONNX Runtime on real parts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the hq student needs the 'distill' extra (torch)")

from distill.evaluate import TEACHER_MACS_384  # noqa: E402
from distill.hq_init import from_teacher, hq_init  # noqa: E402
from distill.teacher import Teacher  # noqa: E402
from engines.student import Student, count_macs_per_pixel, load_weights  # noqa: E402
from streamer.media_files import center_square, read_image  # noqa: E402
from streamer.metrics import downscale, ssim  # noqa: E402

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
HQ_ONNX = REPO / "streamer" / "models" / "student_hq.onnx"
TEACHER_VIDEO = REPO / "streamer" / "models" / "teacher_video.onnx"


def _photo() -> np.ndarray:
    return center_square(read_image(sorted((DATA / "content").iterdir())[0]), 384)


def test_instance_norm_mode_is_the_teacher() -> None:
    """With the teacher's own normalization back on, the copied weights give the teacher's picture (its int8 weights
    run here in float: a few grey levels apart, not a different network)."""
    teacher = Teacher()
    img = _photo()
    vec = teacher.style_vector(read_image(sorted((REPO / "streamer" / "assets" / "styles").glob("*.jpg"))[0]))
    model = from_teacher()
    model.set_instance_norm(True)
    with torch.no_grad():
        y = model(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255),
                  torch.from_numpy(vec[None].astype(np.float32)))[0].numpy().transpose(1, 2, 0)
    out = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
    ref = teacher.stylize(img, vec)
    assert np.abs(out.astype(int) - ref).mean() < 12
    assert ssim(downscale(out), downscale(ref)) > 0.9
    assert ssim(downscale(img), downscale(ref)) < 0.8          # the teacher did change the photo


@pytest.mark.skipif(not TEACHER_VIDEO.exists(), reason="teacher-video is not bundled")
def test_teacher_video_is_the_teachers_own_network() -> None:
    """`--model teacher-video` ships the teacher's weights unpruned and untrained (`make teacher-video`), so a still
    comes out as the teacher paints it, through the bundled ONNX too."""
    from engines.onnxruntime import OnnxRuntimeEngine

    shipped, ref = load_weights(TEACHER_VIDEO.with_suffix(".pt")), from_teacher(keep=0.98)
    assert shipped.config == ref.config
    assert all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), ref.state_dict().values()))
    teacher = Teacher()
    img = _photo()
    vec = teacher.style_vector(read_image(REPO / "streamer" / "assets" / "styles" / "kandinsky.jpg"))
    y = OnnxRuntimeEngine(TEACHER_VIDEO).infer(img.transpose(2, 0, 1)[None].astype(np.float32) / 255,
                                               vec[None].astype(np.float32))
    out = (np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert ssim(downscale(out), downscale(teacher.stylize(img, vec))) > 0.9


@pytest.mark.parametrize("window", [0, 64])
def test_no_whole_frame_statistic(window: int) -> None:
    """Without instance norm (moments predicted from the style, or measured over a bounded window), a change in one
    corner leaves the far corner exactly as it was: video does not pulse when something enters the frame elsewhere,
    and tiles with a margin agree."""
    torch.manual_seed(0)
    model = from_teacher(window)
    for norm in model.norms():                         # non-trivial moment predictors
        torch.nn.init.normal_(norm.mean.weight, std=0.01)
    frame = torch.rand(1, 3, 320, 320)
    style = torch.randn(1, 100) * 0.3
    changed = frame.clone()
    changed[:, :, :48, :48] = 1.0 - changed[:, :, :48, :48]
    with torch.no_grad():
        a, b = model(frame, style), model(changed, style)
    near, far = (a - b)[:, :, :64, :64].abs().max(), (a - b)[:, :, 224:, 224:].abs().max()
    assert near > 1e-4                                          # the change shows where it happened...
    assert far <= 1e-5 and far < near / 100                     # ...and not far from it (float rounding aside)
    model.set_instance_norm(True)                               # the teacher's normalization reaches everywhere
    with torch.no_grad():
        assert (model(frame, style) - model(changed, style))[:, :, 224:, 224:].abs().max() > 1e-4


def _photo_frame(name: str) -> np.ndarray:
    """A bundled photo at 192x108, RGB uint8."""
    import cv2

    return cv2.resize(read_image(REPO / "streamer" / "assets" / "photos" / name), (192, 108),
                      interpolation=cv2.INTER_AREA)


def _as_input(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)


def _clip(n_before: int = 3, n_enter: int = 6) -> list[np.ndarray]:
    """A bundled photo, then a saturated disc sliding in from the left edge (benchmarks/pulse.py's clip, smaller):
    frames [1,3,H,W] float32."""
    import cv2

    bg = _photo_frame("building.jpg")
    frames = [bg] * n_before
    for i in range(n_enter):
        f = bg.copy()
        cv2.circle(f, (-14 + 6 * (i + 1), 54), 28, (230, 40, 200), -1)
        frames.append(f)
    return [_as_input(f) for f in frames]


def _bundled_style(name: str = "starry_night") -> np.ndarray:
    return Teacher().style_vector(read_image(REPO / "streamer" / "assets" / "styles" / f"{name}.jpg"))[None]


def test_frame_moments_on_a_still_are_the_teacher_normalization() -> None:
    """No previous frame: the carried-moment network is exactly the teacher's network (instance norm), so a still
    image gets the teacher's picture (which test_instance_norm_mode_is_the_teacher checks against its ONNX)."""
    frame = torch.from_numpy(_clip()[0])
    style = torch.from_numpy(_bundled_style().astype(np.float32))
    carried, teacher = from_teacher(keep=0.98).eval(), from_teacher()
    teacher.set_instance_norm(True)
    with torch.no_grad():
        assert (carried(frame, style) - teacher(frame, style)).abs().max() < 1e-5
        carried(frame, style)                                      # now with a previous frame: the same one
        assert (carried(frame, style) - teacher(frame, style)).abs().max() < 1e-4


def test_carried_moments_move_the_far_side_slowly_and_a_cut_starts_afresh(tmp_path: Path) -> None:
    """The exported graph in ONNX Runtime, through the engine that carries its state: a disc entering at the left
    edge moves the right third of the picture a fraction of what the teacher's per-frame normalization moves it;
    a different photo (a cut) and a new style each get the picture of a first frame."""
    from distill.export import export
    from engines.onnxruntime import OnnxRuntimeEngine

    hq_init("", str(tmp_path / "hq.pt"), keep=0.98)
    export(str(tmp_path / "hq.pt"), str(tmp_path / "hq.onnx"))
    carried = OnnxRuntimeEngine(tmp_path / "hq.onnx", bake_style=False)
    fresh = OnnxRuntimeEngine(tmp_path / "hq.onnx", bake_style=False)
    style = _bundled_style().astype(np.float32)
    clip = _clip()

    def far_steps(run) -> list[float]:
        out = [run(f)[:, :, :, 128:] for f in clip]
        return [float(np.abs(b - a).mean()) for a, b in zip(out, out[1:])]

    def per_frame(f: np.ndarray) -> np.ndarray:
        fresh.reset_state()
        return fresh.infer(f, style)

    slow, teacher_like = far_steps(lambda f: carried.infer(f, style)), far_steps(per_frame)
    assert max(teacher_like) > 2 / 255                              # the teacher's normalization does pulse...
    assert max(slow) < max(teacher_like) / 4, (slow, teacher_like)  # ...and carried moments move a fraction of it
    cut = _as_input(_photo_frame("coffee.jpg"))                     # another scene
    assert np.abs(carried.infer(cut, style) - per_frame(cut)).max() < 1e-5
    other = _bundled_style("kandinsky").astype(np.float32)
    carried.infer(clip[0], style)
    fresh.reset_state()
    assert np.abs(carried.infer(clip[0], other) - fresh.infer(clip[0], other)).max() < 1e-5


def test_torch_and_onnxruntime_engines_carry_the_same_state(tmp_path: Path) -> None:
    """The torch engine (here on the CPU; CUDA graphs replay the same in-place state) and ONNX Runtime agree frame by
    frame on a clip that carries state, through a style change and a reset."""
    from distill.export import export
    from engines.onnxruntime import OnnxRuntimeEngine
    from engines.torch import TorchEngine

    hq_init("", str(tmp_path / "hq.pt"), keep=0.98)
    export(str(tmp_path / "hq.pt"), str(tmp_path / "hq.onnx"))
    engines = TorchEngine(tmp_path / "hq.pt", device="cpu"), OnnxRuntimeEngine(tmp_path / "hq.onnx", bake_style=False)
    starry, kandinsky = _bundled_style().astype(np.float32), _bundled_style("kandinsky").astype(np.float32)
    steps = [(f, starry) for f in _clip()] + [(_clip()[-1], kandinsky), (_clip()[0], kandinsky)]
    outs = [[e.infer(f, s) for f, s in steps] for e in engines]
    for a, b in zip(*outs):
        assert np.abs(a - b).max() < 1e-4
    for e in engines:
        e.reset_state()
    assert np.abs(engines[0].infer(steps[0][0], starry) - outs[0][0]).max() < 1e-5   # afresh: the first frame again


@pytest.mark.skipif(not HQ_ONNX.exists(), reason="student-hq is not bundled")
def test_the_device_check_of_the_carried_state_passes_on_the_cpu() -> None:
    """benchmarks/device_check.py runs this on CUDA (graphs, fp16); here the same comparison on the CPU engine."""
    from streamer.gpu_tools import validate_carried_state

    result = validate_carried_state(REPO / "streamer" / "models" / "student_hq.pt", HQ_ONNX, device="cpu",
                                    width=192, height=108, frames=5)
    assert result["passed"] and result["psnr_db_min"] > 45, result


@pytest.mark.skipif(not HQ_ONNX.exists(), reason="student-hq is not bundled")
def test_each_file_of_a_folder_starts_afresh(tmp_path: Path) -> None:
    """`streamer convert DIR` runs one engine over every file: a picture must come out as it does alone, not with
    the moments the previous picture left (two versions of one photo, too alike for the cut detector)."""
    import cv2

    from streamer.convert import ConvertOptions, Converter

    photo = _photo_frame("building.jpg")
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    brighter = np.clip(photo.astype(int) * 6 // 5, 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in" / "b.png"), cv2.cvtColor(brighter, cv2.COLOR_RGB2BGR))
    options = dict(style="starry_night", model="student-hq", backend="onnxruntime", overwrite=True)
    batch, alone = Converter(ConvertOptions(**options)), Converter(ConvertOptions(**options))
    try:
        assert [r.status for r in batch.convert_dir(tmp_path / "in", tmp_path / "out")] == ["ok", "ok"]
        alone.convert(tmp_path / "in" / "b.png", tmp_path / "b_alone.png")
    finally:
        batch.close()
        alone.close()
    # within a grey level: the second file runs in the session with the style baked in (engines/style_baking.py)
    diff = np.abs(cv2.imread(str(tmp_path / "out" / "b.png")).astype(int) - cv2.imread(str(tmp_path / "b_alone.png")))
    assert diff.max() <= 1, diff.max()


def test_stateful_guards(tmp_path: Path) -> None:
    """One frame per call in every engine (a batch would blend each frame with the same carried moments); a state
    that is not finite starts afresh instead of carrying forever; the fp16 graph is recognized as converted (its
    state defaults stay float32 like every graph input), so the TensorRT loader does not convert it twice."""
    import onnx

    from distill.export import export
    from engines.fp16_onnx import is_fp16_model
    from engines.onnxruntime import OnnxRuntimeEngine
    from engines.torch import TorchEngine

    hq_init("", str(tmp_path / "hq.pt"), keep=0.98)
    export(str(tmp_path / "hq.pt"), str(tmp_path / "hq.onnx"))
    export(str(tmp_path / "hq.pt"), str(tmp_path / "hq16.onnx"), fp16=True)
    assert OnnxRuntimeEngine(tmp_path / "hq.onnx").info.max_batch == 1
    assert TorchEngine(tmp_path / "hq.pt", device="cpu").info.max_batch == 1
    assert is_fp16_model(onnx.load(str(tmp_path / "hq16.onnx")))
    model = load_weights(tmp_path / "hq.pt")
    frame, style = torch.from_numpy(_clip()[0]), torch.from_numpy(_bundled_style().astype(np.float32))
    with torch.no_grad():
        fresh = model.step(frame, style, torch.zeros(1, model.state_size()), torch.full((1,), 0.98))[0]
        for bad in (float("inf"), float("nan")):
            state = torch.full((1, model.state_size()), bad)
            assert (model.step(frame, style, state, torch.full((1,), 0.98))[0] - fresh).abs().max() < 1e-6


def test_the_stateful_graph_keeps_the_two_input_contract(tmp_path: Path) -> None:
    """A caller that knows nothing of the state (the browser page, another runtime) runs it with frame and style
    alone; feeding state_out back is what carries it; TensorRT gets `state` as a plain input to bind."""
    import onnx

    from distill.export import export
    from engines.onnxruntime import make_session
    from engines.carried_state import state_as_input

    hq_init("", str(tmp_path / "hq.pt"), keep=0.98)
    export(str(tmp_path / "hq.pt"), str(tmp_path / "hq.onnx"))
    session = make_session(tmp_path / "hq.onnx")
    assert {i.name for i in session.get_inputs()} == {"frame", "style"}
    a, b = _clip()[0], _clip()[3]          # the disc just entering: no cut
    style = _bundled_style().astype(np.float32)
    first, state = session.run(["stylized", "state_out"], {"frame": a, "style": style})
    alone = session.run(["stylized"], {"frame": b, "style": style})[0]
    carried = session.run(["stylized"], {"frame": b, "style": style, "state": state})[0]
    assert first.shape == a.shape and state.shape == (1, from_teacher(keep=0.98).state_size())
    assert np.abs(carried - alone).max() > 1e-3
    graph = onnx.load_from_string(state_as_input(tmp_path / "hq.onnx")).graph
    assert "state" in {i.name for i in graph.input} and "state" not in {t.name for t in graph.initializer}
    assert "keep" in {t.name for t in graph.initializer}


def test_costs_the_teacher_and_at_most_ten_live_tiers() -> None:
    macs = count_macs_per_pixel(from_teacher())
    assert abs(macs * 384 * 384 - TEACHER_MACS_384) / TEACHER_MACS_384 < 0.01
    from engines.student import StudentConfig

    live = count_macs_per_pixel(Student(StudentConfig(c3=48, blocks3=2)))
    assert macs <= 10 * live, (macs, live)


def test_a_pruned_start_keeps_the_teachers_layers_it_has() -> None:
    """Fewer residual blocks (spread over the teacher's five) and a smaller outer kernel: each layer kept is the
    teacher's, the outer kernels are the centre of its 9x9 rescaled per channel, and the MACs fall by exactly what
    was cut."""
    full, pruned = from_teacher(keep=0.98), from_teacher(keep=0.98, blocks=3, kernel=5)
    assert pruned.state_size() < full.state_size() and pruned.config.blocks == 3 and pruned.config.kernel == 5
    for mine, theirs in zip(pruned.residual, [full.residual[i] for i in (0, 2, 4)]):
        for a, b in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(a, b)
    for a, b in ((pruned.contract[0].weight, full.contract[0].weight), (pruned.expand[2].weight, full.expand[2].weight)):
        centre = b[..., 2:7, 2:7]
        scale = (a * centre).sum((1, 2, 3), keepdim=True) / centre.pow(2).sum((1, 2, 3), keepdim=True)
        assert a.shape[-1] == 5 and torch.allclose(a, centre * scale, atol=1e-6)   # one scale per output channel
        assert scale.min() >= 0.5 - 1e-5 and scale.max() <= 2 + 1e-5
    saved = 2 * 1152 + 2 * (81 - 25) * 3 * 8     # two residual blocks at 1/4 resolution, the outer convs' taps
    assert abs(count_macs_per_pixel(full) - count_macs_per_pixel(pruned) - saved) < 1


@pytest.mark.parametrize("window,keep,blocks", [(0, None, 5), (64, None, 5), (0, 0.98, 5), (0, 0.98, 3)])
def test_hq_init_train_export_run(prepared: Path, tmp_path: Path, window: int, keep: float | None,
                                  blocks: int) -> None:
    from distill.export import export
    from distill.train import TrainConfig, train
    from engines.onnxruntime import OnnxRuntimeEngine

    kernel = 9 if blocks == 5 else 5
    info = hq_init(str(prepared), str(tmp_path / "init.pt"), styles=8, photos=2, side=128, window=window, keep=keep,
                   blocks=blocks, kernel=kernel)
    assert (tmp_path / "init.pt").is_file()
    init = load_weights(tmp_path / "init.pt")
    assert init.config.arch == "hq" and init.config.window == window
    assert (init.config.blocks, init.config.kernel, len(init.residual)) == (blocks, kernel, blocks)
    assert init.config.frame_moments == (keep is not None)
    if not window and keep is None:   # the moments were fitted, not left at zero
        assert info["styles"] == 8 and any(n.mean.weight.abs().sum() > 0 for n in init.norms())
    cfg = TrainConfig(data=str(prepared), out=str(tmp_path / "run"), steps=3, batch=2, crop=64, lr=1e-4,
                      arch="hq", init=str(tmp_path / "init.pt"), w_temporal=1.0, ckpt_every=10)
    assert train(cfg, progress=False)["step"] == 3
    trained = load_weights(tmp_path / "run" / "student.pt")
    assert any((a - b).abs().max() > 0 for a, b in zip(trained.parameters(), init.parameters()))
    result = export(str(tmp_path / "run" / "student.pt"), str(tmp_path / "hq.onnx"))
    assert result["max_abs_diff_vs_torch"] <= 1e-4
    engine = OnnxRuntimeEngine(tmp_path / "hq.onnx")
    frames = np.random.default_rng(0).random((1, 3, 61, 83), dtype=np.float32)   # odd sizes are padded inside
    out = engine.infer(frames, np.random.default_rng(1).standard_normal((1, 100)).astype(np.float32) * 0.3)
    assert out.shape == frames.shape and 0 <= out.min() and out.max() <= 1


def test_train_arch_hq_without_init_is_one_line(prepared: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "distill", "train", "--data", str(prepared), "--out",
                           str(tmp_path / "r"), "--arch", "hq"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--init" in proc.stderr and "Traceback" not in proc.stderr


def test_tune_scopes_of_the_hq_student() -> None:
    """`streamer tune --model student-hq`: the style path is every StyleNorm; 'body' adds the residual convs and
    leaves the resolution-changing convs (contract, expand) as distilled."""
    from distill.tune import parameter_groups

    model = from_teacher()
    names = {id(p): n for n, p in model.named_parameters()}
    style, body = parameter_groups(model, "body")
    assert {names[id(p)].split(".")[-2] for p in style} == {"gamma", "beta", "mean", "log_std"}
    assert len(style) == 4 * 2 * len(model.norms())
    assert {names[id(p)].split(".")[0] for p in body} == {"residual"}
    _, everything = parameter_groups(model, "all")
    assert len(style) + len(everything) == len(list(model.parameters()))


@pytest.mark.skipif(not HQ_ONNX.exists(), reason="student-hq is not bundled")
def test_big_frames_run_whole_with_hq_and_an_explicit_tile_is_refused(tmp_path: Path) -> None:
    """Its whole-frame moments reach every pixel, so it cannot be tiled exactly: a frame past the automatic tiling
    size runs whole, and --tile asks for what it cannot do, so it is a one-line error, not a silently approximate
    picture."""
    import cv2

    src = tmp_path / "wide.png"
    cv2.imwrite(str(src), cv2.resize(cv2.imread(str(REPO / "streamer" / "assets" / "styles" / "kandinsky.jpg")),
                                     (2112, 96)))
    base = [sys.executable, "-m", "streamer", "convert", str(src), "--model", "student-hq", "--style", "kandinsky",
            "--max-size", "0", "-q", "-y"]
    ok = subprocess.run(base[:5] + [str(tmp_path / "out.png")] + base[5:], capture_output=True, text=True, cwd=REPO,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert cv2.imread(str(tmp_path / "out.png")).shape[:2] == (96, 2112)
    bad = subprocess.run(base[:5] + [str(tmp_path / "tiled.png")] + base[5:] + ["--tile", "1024"], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and "cannot be tiled" in bad.stderr and bad.stderr.strip().count("\n") == 0
    assert not (tmp_path / "tiled.png").exists()


@pytest.mark.skipif(not HQ_ONNX.exists(), reason="student-hq is not bundled")
def test_half_precision_stays_within_a_grey_level() -> None:
    """The torch engine runs float16 on a GPU; the variances are taken in float32 so squared activations do not
    overflow, and the picture stays within a grey level of float32 on average (a few where float16 convolutions
    round differently; checked here with CPU half kernels)."""
    model = load_weights(REPO / "streamer" / "models" / "student_hq.pt")
    frame = torch.from_numpy(_photo()[:192, :320].transpose(2, 0, 1)[None].astype(np.float32) / 255)
    style = torch.from_numpy(Teacher().style_vector(read_image(REPO / "streamer" / "assets" / "styles" /
                                                                 "starry_night.jpg"))[None].astype(np.float32))
    with torch.no_grad():
        full = model(frame, style)
        half = model.half()(frame.half(), style.half()).float()
    assert torch.isfinite(half).all()
    diff = (full - half).abs()
    assert diff.mean() < 1 / 255 and diff.max() < 8 / 255, (float(diff.mean()) * 255, float(diff.max()) * 255)
