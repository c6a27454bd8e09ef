"""Bundled styles that ship tuned (issue 16 item 3): `--style NAME` runs the tier tuned for that painting; an image
path, a style cycle or `--arbitrary` run the arbitrary student; a tuned model whose base or painting changed is
never used. Real CLI runs on a clip made here, real ONNX Runtime sessions."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from conftest import make_clip, run_cli
from streamer import model_registry
from streamer.model_registry import TUNED_MANIFEST, tier_files, tuned_model, tuned_styles
from streamer.styles import bundled_styles

TIER = "student-live"
FAST = ("--preset", "ultrafast", "--smooth", "off", "--threads", "1", "--json", "-y")


def shipped() -> dict[str, dict]:
    return tuned_styles(TIER)


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("tuned") / "clip.mp4", width=128, height=72, frames=4)


def first_frame(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.int16)


def test_every_shipped_tuned_model_is_current_and_keeps_the_architecture():
    manifest = json.loads(TUNED_MANIFEST.read_text())[TIER]
    assert set(manifest) <= set(bundled_styles())
    # an entry whose base or painting changed would fall back silently: shipping one is a mistake
    assert set(shipped()) == set(manifest), "stale tuned models: run python -m distill.tune_bundled"
    base = onnx.load(str(tier_files(TIER)[0]))
    shape = [(i.name, tuple(i.dims)) for i in base.graph.initializer]
    for style, entry in manifest.items():
        assert entry["after"]["style_score"] > entry["before"]["style_score"], style
        tuned = onnx.load(str(tuned_model(TIER, style).onnx))
        assert [(i.name, tuple(i.dims)) for i in tuned.graph.initializer] == shape, style   # same MACs, same speed
        assert [n.op_type for n in tuned.graph.node] == [n.op_type for n in base.graph.node], style


def test_convert_runs_the_tuned_model_for_a_bundled_style(tmp_path, wide_clip):
    style = sorted(shipped())[0]
    image = tmp_path / f"{style}.jpg"
    shutil.copy(bundled_styles()[style], image)
    runs = {"tuned": ["--style", style], "arbitrary": ["--style", style, "--arbitrary"],
            "image path": ["--style", image], "explicit": ["--style", style, "--model", f"{TIER}/{style}"]}
    models, frames = {}, {}
    for name, args in runs.items():
        out = tmp_path / f"{name.replace(' ', '_')}.mp4"
        proc = run_cli("convert", wide_clip, out, "--model", TIER, *FAST, *args) if name != "explicit" else \
            run_cli("convert", wide_clip, out, *FAST, *args)
        assert proc.returncode == 0, proc.stderr
        models[name] = json.loads(proc.stdout)["model"]
        frames[name] = first_frame(out)
    assert models == {"tuned": f"{TIER}/{style}", "arbitrary": TIER, "image path": TIER,
                      "explicit": f"{TIER}/{style}"}
    assert np.abs(frames["image path"] - frames["arbitrary"]).max() <= 2          # the same network and style
    assert np.abs(frames["tuned"] - frames["arbitrary"]).mean() > 1.0             # the tuned one paints differently


def test_default_model_strength_and_a_same_named_file_in_the_folder(tmp_path, wide_clip):
    """No --model: the default tier, tuned. --strength below 1 mixes vectors: arbitrary. A file named like the
    style in the working folder is the style the user meant (resolve_style takes it first): arbitrary."""
    style = sorted(shipped())[0]
    (tmp_path / style).write_bytes(bundled_styles()["starry_night"].read_bytes())
    models = {}
    for name, args, cwd in [("default", [], None), ("strength", ["--strength", "0.5"], None),
                            ("file in cwd", [], tmp_path)]:
        out = tmp_path / f"{name.replace(' ', '_')}.mp4"
        proc = run_cli("convert", wide_clip, out, "--style", style, *FAST, *args, **({"cwd": cwd} if cwd else {}))
        assert proc.returncode == 0, proc.stderr
        models[name] = json.loads(proc.stdout)["model"]
    assert models == {"default": f"{TIER}/{style}", "strength": TIER, "file in cwd": TIER}


def test_a_tuned_model_is_refused_for_another_style_or_the_browser_page(tmp_path, wide_clip):
    style = sorted(shipped())[0]
    other = next(s for s in bundled_styles() if s != style)
    for cmd in (["convert", wide_clip, tmp_path / "x.mp4", "--style", other],
                ["convert", wide_clip, tmp_path / "x.mp4", "--style", style, "--strength", "0.5"],
                ["live", "--source", wide_clip, "--sink", "null", "--style", style, "--styles", f"{style},{other}"]):
        proc = run_cli(*cmd, "--model", f"{TIER}/{style}", "--threads", "1")
        assert proc.returncode == 2, proc.stderr
        assert f"tuned for --style {style} at full strength only" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    from streamer.errors import InputError
    from streamer.web_server import web_model

    with pytest.raises(InputError, match="the page switches styles"):
        web_model(f"{TIER}/{style}")


def test_live_uses_the_tuned_model_only_for_a_fixed_style(wide_clip):
    style, other = sorted(shipped())[0], next(s for s in bundled_styles() if s != sorted(shipped())[0])
    models = {}
    for name, extra in {"fixed": [], "cycle": ["--styles", f"{style},{other}"]}.items():
        r = run_cli("live", "--source", wide_clip, "--sink", "null", "--model", TIER, "--style", style, "--json",
                    "--quiet", "--smooth", "off", "--threads", "1", *extra)
        assert r.returncode == 0, r.stderr
        models[name] = json.loads(r.stdout)["model"]
    assert models == {"fixed": f"{TIER}/{style}", "cycle": TIER}


def test_styles_lists_what_is_tuned_and_unknown_tuned_names_fail_in_one_line(wide_clip, tmp_path):
    proc = run_cli("styles", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert set(rows) == set(bundled_styles())
    assert {s for s, row in rows.items() if TIER in row["tuned"]} == set(shipped())
    text = run_cli("styles").stdout
    assert f"tuned for {TIER}" in text
    proc = run_cli("convert", wide_clip, tmp_path / "x.mp4", "--model", f"{TIER}/no_such_style", "-y")
    assert proc.returncode == 2 and "no tuned model for 'no_such_style'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_stale_tuned_model_is_not_used(tmp_path, monkeypatch):
    """A manifest entry whose base ONNX or style image has another hash is ignored (the tier was retrained)."""
    style = sorted(shipped())[0]
    entry = dict(json.loads(TUNED_MANIFEST.read_text())[TIER][style])
    folder = tmp_path / "tuned"
    folder.mkdir()
    for name in (entry["onnx"], entry["pt"]):
        shutil.copy(model_registry.TUNED_DIR / name, folder / name)
    monkeypatch.setattr(model_registry, "TUNED_DIR", folder)
    monkeypatch.setattr(model_registry, "TUNED_MANIFEST", folder / "MANIFEST.json")
    (folder / "MANIFEST.json").write_text(json.dumps({TIER: {style: entry}}))
    assert tuned_model(TIER, style) is not None
    for key in ("base_sha256", "style_sha256"):
        (folder / "MANIFEST.json").write_text(json.dumps({TIER: {style: {**entry, key: "0" * 64}}}))
        assert tuned_model(TIER, style) is None, key
    (folder / "MANIFEST.json").write_text(json.dumps({TIER: {style: entry}}))
    (folder / entry["onnx"]).unlink()                   # a tuned file gone missing: not used either
    assert tuned_model(TIER, style) is None
    (folder / "MANIFEST.json").write_text("[1, 2]")     # a manifest that is not an object: nothing is tuned
    assert tuned_styles(TIER) == {}
