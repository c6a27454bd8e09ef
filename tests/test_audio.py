"""What a converted file carries besides its pictures: audio, and the colour tags.

Audio: any audio FFmpeg decodes reaches every output container the README names (MP4, MKV, MOV, WebM), copied where
the container takes it and re-encoded where not, and stays in step with the video.

Every source clip is real (``make_clip``: a panning picture with a chirp) and its audio starts 0.5 s after its video,
so a re-encode that loses the start time shows.  Timing is read back by decoding: the sound's onset and end (the
first and last sample louder than a tenth of full scale), which is what a listener hears, whatever priming or
padding a codec adds; the tolerance is one audio frame of the output codec (AAC 1024 samples, Opus 20 ms).

Colour: the output is tagged with the input's primaries, transfer, matrix and range (BT.709 limited where the input
has none), read back with PyAV, and its pixels are converted with the matrix and range it is tagged with.
"""
from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import make_clip, probe, run_cli

OUTPUTS = ["mp4", "mkv", "mov", "webm"]
FRAMES, FPS, LATE = 15, 30, 0.5          # 0.5 s of video; the audio starts 0.5 s in and lasts 0.5 s
COPY_TOLERANCE_S = 0.002                 # packets copied as they are: the container's timestamp rounding (MKV: 1 ms)
FRAME_SAMPLES = {"aac": 1024, "opus": 960, "mp3": 1152, "ac3": 1536, "vorbis": 2048}

# name -> (container, encoder, sample rate, layout, sample format or None for the encoder's first)
SOURCES = {
    "pcm_s16le-stereo-48k.mkv": ("mkv", "pcm_s16le", 48000, "stereo", None),     # the camera case of the issue
    "pcm_s16le-stereo-48k.mov": ("mov", "pcm_s16le", 48000, "stereo", None),
    "pcm_s24le-5.1-96k.mkv": ("mkv", "pcm_s24le", 96000, "5.1(side)", None),
    "pcm_f32le-mono-22k.mov": ("mov", "pcm_f32le", 22050, "mono", None),
    "pcm_u8-mono-8k.mkv": ("mkv", "pcm_u8", 8000, "mono", None),
    "adpcm_ima_qt-stereo-44k.mov": ("mov", "adpcm_ima_qt", 44100, "stereo", None),
    "adpcm_ima_wav-mono-22k.avi": ("avi", "adpcm_ima_wav", 22050, "mono", None),
    "mp3-stereo-44k.mkv": ("mkv", "libmp3lame", 44100, "stereo", None),
    "opus-5.1-48k.mkv": ("mkv", "libopus", 48000, "5.1", None),
    "flac-stereo-96k-s32.mkv": ("mkv", "flac", 96000, "stereo", "s32"),
    "ac3-5.1-48k.mp4": ("mp4", "ac3", 48000, "5.1(side)", None),
    "aac-mono-44k.mp4": ("mp4", "aac", 44100, "mono", None),
    "wavpack-mono-44k.mkv": ("mkv", "wavpack", 44100, "mono", None),
}


def has_encoder(name: str) -> bool:
    try:
        return av.codec.Codec(name, "w").type == "audio"
    except Exception:   # noqa: BLE001 - UnknownCodecError
        return False


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Source clips, made once per module on first use."""
    folder, made = tmp_path_factory.mktemp("audio-sources"), {}

    def get(name: str):
        if name not in made:
            container, encoder, rate, layout, fmt = SOURCES[name]
            if not has_encoder(encoder):
                pytest.skip(f"this FFmpeg has no {encoder} encoder to make the source clip")
            made[name] = make_clip(folder / name, frames=FRAMES, fps=FPS, audio=encoder, audio_rate=rate,
                                   audio_layout=layout, audio_format=fmt, audio_start=LATE, audio_seconds=0.5)
        return made[name]

    return get


def sound(path) -> dict:
    """Decoded audio of the first audio stream, mixed to mono float at 48 kHz on the file's time axis, plus the stream's
    codec, channel count and rate, and the first video frame's time."""
    with av.open(str(path)) as c:
        v = next(c.decode(video=0))
        video_start = float(v.pts * v.time_base)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        ctx = a.codec_context
        info = {"codec": ctx.name, "channels": ctx.channels, "rate": ctx.sample_rate, "video_start": video_start}
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        chunks, start = [], None
        for f in c.decode(a):
            if start is None:
                start = float(f.pts * f.time_base)
            chunks += [g.to_ndarray()[0] for g in resampler.resample(f)]
        chunks += [g.to_ndarray()[0] for g in resampler.resample(None)]
    x = np.concatenate(chunks) / info["channels"]          # identical channels: the mix has the source's level
    loud = np.nonzero(np.abs(x) > 0.1)[0]
    assert loud.size, f"{path}: the audio is silent"
    info.update(onset=start + loud[0] / 48000, end=start + (loud[-1] + 1) / 48000,
                peak=float(np.abs(x).max()))
    return info


def one_frame(info: dict) -> float:
    """Seconds of one audio frame of the stream's codec (0 for PCM and other codecs without a fixed frame)."""
    return FRAME_SAMPLES.get(info["codec"].replace("mp3float", "mp3"), 0) / info["rate"]


def assert_in_step(src, out, mode: str) -> tuple[dict, dict]:
    """The sound starts and ends where it did relative to the video: within one audio frame of the output codec when
    re-encoded, within the container's timestamp rounding when copied.  The video keeps its start time; only an
    audio copy whose first packet lies before 0 (AAC priming) into Matroska, which holds no negative times, shifts
    the whole file by that packet, as FFmpeg does."""
    a, b = sound(src), sound(out)
    tol = COPY_TOLERANCE_S if mode.startswith("copy ") else max(one_frame(b), COPY_TOLERANCE_S)
    assert abs(b["video_start"] - a["video_start"]) <= max(one_frame(a), 1e-3) + 1e-3, (mode, a, b)
    for key in ("onset", "end"):
        assert abs((b[key] - b["video_start"]) - (a[key] - a["video_start"])) <= tol, (key, mode, a, b)
    assert b["peak"] == pytest.approx(a["peak"], rel=0.35), (mode, a, b)    # the chirp, not noise or silence
    assert b["channels"] == a["channels"]
    return a, b


@pytest.mark.parametrize("ext", OUTPUTS)
@pytest.mark.parametrize("name", list(SOURCES))
def test_any_decodable_audio_converts_into_every_container(name, ext, sources, identity_converter, tmp_path):
    src = sources(name)
    out = tmp_path / f"out.{ext}"
    r = identity_converter().convert(src, out)
    assert r.status == "ok" and r.frames == FRAMES and len(r.audio) == 1
    mode = r.audio[0]
    a, b = assert_in_step(src, out, mode)
    source_codec = a["codec"].replace("mp3float", "mp3")
    if mode.startswith("copy "):
        assert b["codec"] == a["codec"] and b["rate"] == a["rate"]
    else:
        # re-encoded: to AAC where the container takes it, else the container's own (WebM: Opus)
        assert mode in (f"{source_codec} -> aac", f"{source_codec} -> libopus", f"{source_codec} -> opus"), mode
        assert b["codec"] == ("opus" if ext == "webm" else "aac")
        if b["codec"] == "aac":
            assert b["rate"] == a["rate"]                   # AAC takes every rate used here: no resampling
        else:
            assert b["rate"] == 48000                       # Opus runs at 48 kHz whatever it is given
    # what is copied where: WebM holds only Opus/Vorbis; MP4 gets AAC for PCM (its 'ipcm' plays almost nowhere)
    if ext == "webm":
        assert b["codec"] == "opus"
    if ext == "mp4" and source_codec.startswith("pcm_"):
        assert mode == f"{source_codec} -> aac"
    if ext == "mkv" and not source_codec.startswith("adpcm_"):
        assert mode.startswith("copy "), "Matroska holds every codec used here but ADPCM"


def test_camera_pcm_mkv_to_mp4_through_the_cli(sources, tmp_path):
    """The issue's case: an MKV with pcm_s16le stereo 48 kHz -> MP4 used to fail with 'encoding failed'."""
    src = sources("pcm_s16le-stereo-48k.mkv")
    out = tmp_path / "out.mp4"
    r = run_cli("convert", src, out, "--model", "identity", "--preset", "ultrafast", "--json", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["audio"] == ["pcm_s16le -> aac"]
    b = sound(out)
    assert (b["codec"], b["channels"], b["rate"]) == ("aac", 2, 48000)
    assert abs(b["onset"] - LATE) <= 1024 / 48000


@pytest.mark.parametrize("ext", OUTPUTS)
@pytest.mark.parametrize("audio", ["aac", "pcm_s16le"])
def test_late_video_keeps_its_offset_to_the_audio(ext, audio, identity_converter, tmp_path):
    """Video that starts 0.5 s after the audio: both keep their times, copied or re-encoded."""
    pts = [round(LATE * FPS) + i for i in range(FRAMES)]
    src = make_clip(tmp_path / f"late-video.{'mkv' if audio.startswith('pcm') else 'mp4'}", frames=FRAMES, fps=FPS,
                    pts=pts, audio=audio, audio_rate=48000, audio_seconds=1.0)
    out = tmp_path / f"out.{ext}"
    r = identity_converter().convert(src, out)
    a, b = assert_in_step(src, out, r.audio[0])
    assert a["video_start"] == pytest.approx(LATE, abs=1e-3)
    assert a["onset"] < 0.01 and b["onset"] < 0.01 + 1024 / 48000


def write_gapped(path, gap_at: float, gap: float, rate: int = 48000):
    """An MKV with PCM audio that stops at ``gap_at`` seconds and resumes ``gap`` seconds later (a dropout)."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    a = out.add_stream("pcm_s16le", rate=rate)
    a.layout = "stereo"
    n = round(1.2 * FPS)
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5 % 255, np.uint8), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, FPS)
        out.mux(vs.encode(f))
    out.mux(vs.encode())
    t = np.arange(round(gap_at * rate)) / rate
    tone = (0.4 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    for start in (0.0, gap_at + gap):
        af = av.AudioFrame.from_ndarray(np.repeat(tone[None], 2, axis=0), format="s16p", layout="stereo")
        af.sample_rate, af.pts, af.time_base = rate, round(start * rate), Fraction(1, rate)
        out.mux(a.encode(af))
    out.mux(a.encode())
    out.close()
    return path


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_a_dropout_in_the_source_audio_stays_a_dropout(ext, identity_converter, tmp_path):
    """Re-encoded audio is timed by sample count; a jump in the source's timestamps becomes silence, so what follows
    the jump still plays at its time."""
    src = write_gapped(tmp_path / "gap.mkv", gap_at=0.4, gap=0.3)
    out = tmp_path / f"out.{ext}"
    r = identity_converter().convert(src, out)
    assert not r.audio[0].startswith("copy ")
    with av.open(str(out)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        frames = list(c.decode(audio=0))
        start = float(frames[0].pts * frames[0].time_base)
        x = np.concatenate([g.to_ndarray()[0] for f in frames + [None] for g in resampler.resample(f)])
    loud = np.abs(x) > 0.1
    times = start + np.nonzero(loud)[0] / 48000
    resumed = times[times > 0.45][0]
    tol = 1024 / 48000
    assert abs(times[0] - 0.0) <= tol and abs(resumed - 0.7) <= tol, (times[0], resumed)
    assert abs(times[-1] - 1.1) <= tol


# --- colour tags ---------------------------------------------------------------------------------------------------
BARS = [(220, 40, 40), (40, 200, 60), (30, 60, 230), (235, 235, 40), (128, 128, 128)]   # saturated: matrices differ


def bars(width: int = 80, height: int = 48) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    for i, c in enumerate(BARS):
        img[:, i * width // len(BARS):(i + 1) * width // len(BARS)] = c
    return img


def write_tagged(path, tags: tuple[int, int, int, int] | None, frames: int = 3):
    """A clip of colour bars whose pixels are converted with, and tagged as, ``tags`` (primaries, transfer, matrix,
    range as FFmpeg numbers); None: untagged, converted as FFmpeg does by default."""
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "8"})
    s.width, s.height, s.pix_fmt = 80, 48, "yuv420p"
    if tags:
        ctx = s.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = tags
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(bars(), format="rgb24")
        if tags:
            f = f.reformat(format="yuv420p", dst_colorspace={6: 5}.get(tags[2], tags[2]), dst_color_range=tags[3])
            f.color_primaries, f.color_trc, f.colorspace, f.color_range = tags
        f.pts, f.time_base = i, Fraction(1, FPS)
        out.mux(s.encode(f))
    out.mux(s.encode())
    out.close()
    return path


def bar_error(path) -> float:
    """Largest mean |difference| of a bar from its colour, in 8-bit levels, as a player honouring the tags sees it."""
    with av.open(str(path)) as c:
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    w = rgb.shape[1] // len(BARS)
    return max(float(np.abs(rgb[:, i * w + 3:(i + 1) * w - 3] - np.array(c)).mean()) for i, c in enumerate(BARS))


BT709_LIMITED = (1, 1, 1, 1)


@pytest.mark.parametrize("ext", OUTPUTS)
@pytest.mark.parametrize("tags", [None, (1, 1, 1, 2), (5, 6, 5, 1), (6, 6, 6, 2), (9, 16, 9, 1)],
                         ids=["untagged", "bt709-full", "bt470bg-limited", "smpte170m-full", "bt2020-pq-limited"])
def test_output_carries_the_inputs_colour_tags(tags, ext, identity_converter, tmp_path):
    src = write_tagged(tmp_path / "in.mp4", tags)
    assert probe(src)["colour"] == (tags or (2, 2, 2, 0))
    out = tmp_path / f"out.{ext}"
    identity_converter(smooth="off", crf=8).convert(src, out)
    assert probe(out)["colour"] == (tags or BT709_LIMITED)
    # the pixels were converted with the matrix and range of the tags: a player that honours them sees the bars'
    # colours (measured 0.7-3.3 levels; converted as BT.601 limited but tagged BT.709 or full range: 9.7 to 14)
    assert bar_error(src) < 4 and bar_error(out) < 5, (bar_error(src), bar_error(out))


def test_partly_tagged_input_keeps_its_tags_and_gets_bt709_for_the_rest(identity_converter, tmp_path):
    """Tags the input has are kept, the missing matrix becomes BT.709 (the pixels are converted with it)."""
    src = write_tagged(tmp_path / "in.mkv", (1, 13, 2, 2))          # sRGB transfer, matrix unspecified, full range
    out = tmp_path / "out.mp4"
    identity_converter(smooth="off", crf=8).convert(src, out)
    assert probe(out)["colour"] == (1, 13, 1, 2)
    assert bar_error(out) < 5
