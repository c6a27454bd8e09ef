"""Fidelity of `convert`: every frame, its timestamp, size, rotation and the audio survive."""
from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from conftest import leftovers, make_clip, painting, probe
from streamer.convert import ConvertOptions, Converter
from streamer.errors import InputError


def assert_faithful(src, dst, *, audio_codec=None):
    a, b = probe(src), probe(dst)
    assert (b["width"], b["height"]) == (a["width"], a["height"])
    assert len(b["pts"]) == len(a["pts"])
    # same timestamps in seconds (the muxer may pick its own time base; the pipeline keeps the input's)
    ta = [float(p * a["time_base"]) for p in a["pts"]]
    tb = [float(p * b["time_base"]) for p in b["pts"]]
    assert np.allclose(ta, tb, atol=1e-6), (ta, tb)
    assert b["rotation"] == a["rotation"]
    assert len(b["audio"]) == len(a["audio"])
    if a["audio"]:
        assert b["audio"][0][0] == (audio_codec or a["audio"][0][0])
        frame = float(ta[1] - ta[0]) if len(ta) > 1 else 0.04
        for x, y in zip(a["audio_seconds"], b["audio_seconds"]):
            assert abs(x - y) <= frame
    return a, b


def test_identity_roundtrip_keeps_frames_pts_audio(tmp_path, clip, identity_converter):
    out = tmp_path / "out.mp4"
    r = identity_converter().convert(clip, out)
    assert r.frames == 10 and (r.width, r.height) == (64, 48) and r.status == "ok"
    assert r.audio == ["copy aac"]
    a, b = assert_faithful(clip, out)
    assert b["time_base"] == a["time_base"]
    assert b["pts"] == a["pts"]
    # identity engine: pixels are the input's up to encoding loss (measured 1.5 gray levels; a one-pixel shift of
    # this clip gives 5.5 and a 2x down-and-up resample 5.7, so 3 tells a faithful copy from a damaged one)
    assert np.abs(a["first"].astype(int) - b["first"].astype(int)).mean() < 3
    assert {"decode", "preprocess", "infer", "postprocess", "encode"} <= set(r.stage_ms_per_frame)
    assert leftovers(tmp_path) == []


def test_audio_bytes_are_copied_not_reencoded(tmp_path, clip, identity_converter):
    import av

    out = tmp_path / "out.mp4"
    identity_converter().convert(clip, out)

    def audio_packets(p):
        with av.open(str(p)) as c:
            return [bytes(k) for k in c.demux(c.streams.audio[0]) if k.size]

    assert audio_packets(out) == audio_packets(clip)


@pytest.mark.parametrize("width,height,pix_fmt", [(641, 359, "yuv444p"), (64, 48, "gray"), (64, 48, "yuv420p10le"),
                                                  (63, 47, "yuv444p10le")])
def test_odd_sizes_grayscale_10bit(tmp_path, identity_converter, width, height, pix_fmt):
    src = make_clip(tmp_path / "in.mp4", width=width, height=height, frames=6, pix_fmt=pix_fmt)
    out = tmp_path / "out.mp4"
    r = identity_converter().convert(src, out)
    assert (r.width, r.height, r.frames) == (width, height, 6)
    a, b = assert_faithful(src, out)
    if pix_fmt == "gray":   # grey in, colour-capable out, still grey content
        rgb = b["first"].astype(int)
        assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() < 6


def test_variable_frame_rate_timestamps(tmp_path, identity_converter):
    tb = Fraction(1, 1000)
    pts = [0, 33, 50, 120, 121, 300, 333, 600, 640, 1000]          # irregular gaps, 1 ms to 360 ms
    src = make_clip(tmp_path / "vfr.mkv", pts=pts, time_base=tb, fps=30)
    out = tmp_path / "vfr_out.mkv"
    identity_converter().convert(src, out)
    a, b = assert_faithful(src, out)
    assert b["pts"] == a["pts"] == pts


def test_rotation_metadata_carried(tmp_path, identity_converter):
    src = make_clip(tmp_path / "rot.mp4", rotation=90)
    assert probe(src)["rotation"] == 90
    out = tmp_path / "rot_out.mp4"
    identity_converter().convert(src, out)
    assert probe(out)["rotation"] == 90


def test_audio_reencoded_when_container_refuses_codec(tmp_path, identity_converter):
    src = make_clip(tmp_path / "wv.mkv", audio="wavpack", frames=15)       # mp4 cannot hold WavPack
    out = tmp_path / "wv.mp4"
    r = identity_converter().convert(src, out)
    assert r.audio == ["wavpack -> aac"]
    assert_faithful(src, out, audio_codec="aac")


def test_no_audio_track(tmp_path, identity_converter):
    src = make_clip(tmp_path / "silent.mp4", audio=None)
    out = tmp_path / "silent_out.mp4"
    r = identity_converter().convert(src, out)
    assert r.audio == [] and probe(out)["audio"] == []


def test_teacher_real_onnxruntime(tmp_path, encoder):
    """The real teacher network on a tiny clip: output differs from input and keeps every frame."""
    src = make_clip(tmp_path / "in.mp4", width=96, height=64, frames=4)
    out = tmp_path / "out.mp4"
    conv = Converter(ConvertOptions(model="teacher", style="starry_night", preset="ultrafast", max_size=96),
                     encoder=encoder)
    r = conv.convert(src, out)
    assert (r.backend, r.model, r.frames) == ("onnxruntime", "teacher", 4)
    a, b = assert_faithful(src, out)
    assert np.abs(a["first"].astype(int) - b["first"].astype(int)).mean() > 10   # stylized, not a copy


def test_strength_moves_the_output_from_the_clips_own_look_to_the_style(tmp_path, encoder):
    """--strength mixes the style vector with the first frame's own: in the teacher's style space, the output moves
    towards the painting as the strength grows, and the picture at 0.5 lies between those at 0 and 1."""
    src = make_clip(tmp_path / "in.mp4", width=96, height=64, frames=2, audio=None)
    outputs = {}
    for strength in (0.0, 0.5, 1.0):
        out = tmp_path / f"s{strength}.mp4"
        Converter(ConvertOptions(style="kandinsky", strength=strength, preset="ultrafast", smooth="off"),
                  encoder=encoder).convert(src, out)
        outputs[strength] = probe(out)["first"].astype(np.float32)
    target = encoder.encode("kandinsky")
    dist = {k: float(np.linalg.norm(encoder.encode_image(v.astype(np.uint8)) - target)) for k, v in outputs.items()}
    assert dist[0.0] > dist[0.5] > dist[1.0], dist
    between = float(np.abs(outputs[0.5] - outputs[0.0]).mean()), float(np.abs(outputs[0.5] - outputs[1.0]).mean())
    assert max(between) < float(np.abs(outputs[1.0] - outputs[0.0]).mean())


def test_image_to_image(tmp_path, identity_converter):
    src = tmp_path / "photo.png"
    img = painting("kandinsky")[:101, :77]                                   # odd size
    cv2.imwrite(str(src), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = tmp_path / "photo_out.png"
    r = identity_converter().convert(src, out)
    res = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert res.shape == img.shape and r.frames == 1
    assert np.abs(res.astype(int) - img.astype(int)).mean() < 1.0
    assert leftovers(tmp_path) == []


def test_output_equal_to_input_refused(tmp_path, clip, identity_converter):
    with pytest.raises(InputError, match="same file"):
        identity_converter().convert(clip, clip)


def test_existing_output_kept_without_overwrite(tmp_path, clip, identity_converter):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        identity_converter().convert(clip, out)
    assert out.read_bytes() == b"keep me"
    identity_converter(overwrite=True).convert(clip, out)
    assert len(probe(out)["pts"]) == 10


def test_batch_directory_resumes_and_survives_a_bad_file(tmp_path, identity_converter):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "a.mp4")
    make_clip(src / "b.mkv", frames=5)
    cv2.imwrite(str(src / "c.png"), painting()[:64, :64])
    (src / "d.mp4").write_bytes(b"this is not a video")
    (src / "notes.txt").write_text("ignored")
    dst = tmp_path / "out"
    results = identity_converter().convert_dir(src, dst)
    status = {r.input.rsplit("/", 1)[-1]: r.status for r in results}
    assert status == {"a.mp4": "ok", "b.mkv": "ok", "c.png": "ok", "d.mp4": "failed"}
    assert sorted(p.name for p in dst.iterdir()) == ["a.mp4", "b.mp4", "c.png"]
    # resume: complete outputs are skipped, a removed one is redone
    (dst / "b.mp4").unlink()
    results = identity_converter().convert_dir(src, dst)
    status = {r.input.rsplit("/", 1)[-1]: r.status for r in results}
    assert status == {"a.mp4": "skipped", "b.mkv": "ok", "c.png": "skipped", "d.mp4": "failed"}
    assert len(probe(dst / "b.mp4")["pts"]) == 5
    assert leftovers(dst) == []


def test_truncated_file_with_index_first_is_refused_when_strict(tmp_path, identity_converter):
    """A cut-off MP4 whose index comes first decodes fine up to the cut: with --strict an error, never a short output
    (without it the frames that exist are converted with a warning: tests/test_reliability.py)."""
    full = make_clip(tmp_path / "full.mp4", faststart=True, frames=30, width=96, height=64)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.8)])
    out = tmp_path / "out.mp4"
    with pytest.raises(InputError, match="truncated"):
        identity_converter(strict=True).convert(cut, out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_webm_output_picks_vp9_and_reencodes_audio(tmp_path, identity_converter):
    src = make_clip(tmp_path / "in.mp4", frames=6)
    out = tmp_path / "out.webm"
    r = identity_converter().convert(src, out)
    assert r.audio == ["aac -> opus"] or r.audio == ["aac -> libopus"]
    a, b = probe(src), probe(out)
    assert b["video_codec"] == "vp9" and b["audio"][0][0] == "opus"
    assert len(b["pts"]) == 6 and (b["width"], b["height"]) == (64, 48)
    assert abs(a["audio_seconds"][0] - b["audio_seconds"][0]) <= 0.05


@pytest.mark.parametrize("mode", ["ema", "flow"])
def test_smoothing_stage_keeps_every_frame(tmp_path, clip, identity_converter, mode):
    out = tmp_path / f"{mode}.mp4"
    r = identity_converter(smooth=mode).convert(clip, out)
    assert r.frames == 10 and r.stage_ms_per_frame["smooth"] > 0
    assert probe(out)["pts"] == probe(clip)["pts"]
