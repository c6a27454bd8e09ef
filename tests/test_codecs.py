"""Encoder choice on machines without NVENC (CPU-only, or a GPU without it such as the H100/H200).

Real PyAV encoders throughout: libx264 is opened with the presets the mapping gives, and NVENC is really
tried (it does not open without an NVIDIA driver with NVENC, so the fallback and its notice run for real;
on a machine where NVENC does open those tests skip).
"""
from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import pytest

from streamer import codecs
from streamer.convert import ConvertOptions
from conftest import probe, run_cli

NVENC_OPENS, NVENC_WHY = codecs.encoder_usable(codecs.NVENC_H264)
needs_no_nvenc = pytest.mark.skipif(NVENC_OPENS, reason="h264_nvenc opens here: the fallback path is not taken")


def open_encoder(name: str, preset: str | None, threads: int = 0) -> av.CodecContext:
    ctx = av.CodecContext.create(name, "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 144, "yuv420p", Fraction(1, 30)
    ctx.options = {"preset": preset} if preset else {}
    ctx.thread_count = threads
    ctx.open()
    return ctx


# ---------------------------------------------------------------- the preset mapping

def test_x264_rejects_an_nvenc_preset():
    """The bug being fixed: `--codec h264_nvenc --preset p4` fell back to libx264 with preset p4."""
    with pytest.raises(av.error.FFmpegError):
        open_encoder("libx264", "p4")


@pytest.mark.parametrize("preset", codecs.NVENC_PRESETS)
def test_every_nvenc_preset_maps_to_a_preset_libx264_opens_with(preset):
    mapped = codecs.map_preset(preset, "libx264")
    assert mapped in codecs.X264_PRESETS
    assert open_encoder("libx264", mapped, threads=2).is_open


def test_mapping_keeps_the_order_and_the_defaults():
    x264 = [codecs.map_preset(p, "libx264") for p in codecs.NVENC_PRESETS]
    assert [codecs.X264_PRESETS.index(p) for p in x264] == sorted(codecs.X264_PRESETS.index(p) for p in x264)
    nvenc = [codecs.map_preset(p, "h264_nvenc") for p in codecs.X264_PRESETS]
    assert nvenc == sorted(nvenc) and set(nvenc) == set(codecs.NVENC_PRESETS)
    assert codecs.map_preset("p4", "libx264") == "medium" and codecs.map_preset("medium", "h264_nvenc") == "p4"
    assert codecs.map_preset("veryfast", "h264_nvenc") == "p2" and codecs.map_preset("p2", "libx265") == "veryfast"
    assert codecs.map_preset("p1", "libx264") == "ultrafast" and codecs.map_preset("p7", "libx264") == "veryslow"


def test_mapping_leaves_matching_and_unknown_presets_alone():
    assert codecs.map_preset("slow", "libx264") == "slow"
    assert codecs.map_preset("p5", "hevc_nvenc") == "p5"
    assert codecs.map_preset("p4", "libvpx-vp9") == "p4"           # no preset family: the sink ignores it
    assert codecs.map_preset("film", "libx264") == "film"          # not a preset of either family
    assert codecs.map_preset(None, "h264_nvenc") is None


# ---------------------------------------------------------------- the whole choice, NVENC really tried

@needs_no_nvenc
def test_nvenc_request_falls_back_to_libx264_with_the_nearest_preset_and_one_notice():
    choice = codecs.pick_encoder("h264_nvenc", gpu=True, preset="p4", default_preset="veryfast")
    assert (choice.codec, choice.preset) == ("libx264", "medium")
    assert choice.threads == codecs.x264_threads() >= 1
    notice = choice.notice
    assert notice.startswith("notice: h264_nvenc cannot be opened") and "\n" not in notice
    assert "p4" in notice and "medium" in notice
    assert open_encoder(choice.codec, choice.preset, choice.threads).is_open


@needs_no_nvenc
def test_auto_on_the_gpu_path_falls_back_to_libx264():
    silent = codecs.pick_encoder("auto", gpu=True, preset="veryfast", default_preset="veryfast")
    assert silent == ("libx264", "veryfast", codecs.x264_threads(), None)
    mapped = codecs.pick_encoder("auto", gpu=True, preset="p6", default_preset="veryfast")
    assert (mapped.codec, mapped.preset) == ("libx264", "slower")
    assert mapped.notice == "notice: preset p6 is an NVENC preset; libx264 uses its nearest, slower"
    assert open_encoder(mapped.codec, mapped.preset, mapped.threads).is_open


def test_when_nvenc_opens_an_x264_preset_is_mapped_and_the_default_silently(monkeypatch):
    monkeypatch.setattr(codecs, "encoder_usable", lambda name: (True, ""))
    assert codecs.pick_encoder("auto", gpu=True, preset="veryfast", default_preset="veryfast") == \
        ("h264_nvenc", "p2", 0, None)
    choice = codecs.pick_encoder("h264_nvenc", gpu=True, preset="slow", default_preset="veryfast")
    assert (choice.codec, choice.preset) == ("h264_nvenc", "p5")
    assert choice.notice == "notice: preset slow is an x264 preset; h264_nvenc uses its nearest, p5"
    assert codecs.pick_encoder("auto", gpu=False, preset="slow").codec == "libx264"    # CPU path: never NVENC


def test_other_encoders_keep_their_preset_and_ffmpeg_threads():
    assert codecs.pick_encoder("libvpx-vp9", gpu=False, preset="veryfast") == ("libvpx-vp9", "veryfast", 0, None)
    assert codecs.pick_encoder("libx265", gpu=False, preset="p3").preset == "faster"


# ---------------------------------------------------------------- threads

def test_x264_threads_follow_the_usable_cpus():
    cpus = codecs.usable_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    assert codecs.x264_threads(16) == 24 and codecs.x264_threads(1) == 1
    assert codecs.x264_threads() == codecs.x264_threads(cpus)


def test_a_cgroup_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert codecs.cgroup_cpu_limit(tmp_path) == 2.5
    assert codecs.usable_cpus(tmp_path) == min(3, codecs.usable_cpus(tmp_path / "none"))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert codecs.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert codecs.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert codecs.cgroup_cpu_limit(tmp_path) == 4.0


# ---------------------------------------------------------------- through convert

def test_convert_default_preset_is_the_silent_one():
    assert ConvertOptions.preset == "veryfast" and codecs.preset_family(ConvertOptions.preset) == "x264"


@needs_no_nvenc
def test_converter_with_an_nvenc_request_writes_libx264_with_the_mapped_preset(identity_converter, clip, tmp_path):
    conv = identity_converter(codec="h264_nvenc", preset="p4", smooth="off")
    try:
        result = conv.convert(clip, tmp_path / "out.mp4")
    finally:
        conv.close()
    assert result.frames == 10 and len(result.notices) == 1
    assert "h264_nvenc cannot be opened" in result.notices[0] and "medium" in result.notices[0]
    assert probe(tmp_path / "out.mp4")["video_codec"] == "h264"


@needs_no_nvenc
def test_cli_nvenc_preset_on_a_machine_without_nvenc(clip, tmp_path):
    out = tmp_path / "out.mp4"
    p = run_cli("convert", clip, out, "--model", "identity", "--smooth", "off", "--codec", "h264_nvenc",
                "--preset", "p4", "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["frames"] == 10 and out.is_file()
    assert any("medium" in n for n in result["notices"])
