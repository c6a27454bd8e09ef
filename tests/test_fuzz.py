"""Damaged media: never a traceback, never a hang, never a partial output, and never a frame lost in silence.

Each damaged file ends one of three ways: **converted** (every frame the intact file held), **converted with a
warning** (``damaged``/``truncated`` and the counts in the result, one warning line naming the file; the output holds
the frames the result reports), or a **clean error** (one line naming the file, no output).  The output is compared
with what the input held, not with what the conversion says it wrote.

Most mutations run in-process through the conversion API (fast: one shared style encoder, identity engine); a
subset of the benchmark corpus (``benchmarks/fuzz.py``: truncations, bit flips in headers and payloads, swapped
extensions, zero-length streams, absurd sizes and timestamps, from the bundled real clip in seven containers) goes
through the real CLI, one process per file with a timeout.  The full corpus (240 files) is a benchmark:
``python -m benchmarks.fuzz``, counts in benchmarks/RESULTS.md ("Fuzzing").
"""
from __future__ import annotations

import random
import threading

import av
import pytest

from conftest import leftovers, make_clip
from benchmarks.fuzz import OUTCOMES, corpus, decoded_frames, make_bases, run_case
from streamer.errors import StreamerError

HANG_S = 30
N_API = 220
N_STRICT = 20
PER_KIND_CLI = 2          # files of each kind of the benchmark corpus run through the CLI


def mutations(data: bytes, n: int, seed: int):
    rng = random.Random(seed)
    size = len(data)
    moov = data.find(b"moov")
    for i in range(n):
        kind = i % 6
        buf = bytearray(data)
        if kind == 0:                                   # truncation anywhere
            buf = buf[: rng.randrange(1, size)]
        elif kind == 1:                                 # a few random byte flips
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif kind == 2:                                 # header damage: the first 64 bytes
            for _ in range(rng.randint(1, 6)):
                buf[rng.randrange(64)] = rng.randrange(256)
        elif kind == 3:                                 # damage inside the index (moov)
            for _ in range(rng.randint(1, 10)):
                buf[min(size - 1, moov + rng.randrange(max(1, size - moov)))] = rng.randrange(256)
        elif kind == 4:                                 # a zeroed run
            start = rng.randrange(size)
            length = rng.randint(16, 512)
            buf[start:start + length] = bytes(len(buf[start:start + length]))
        else:                                           # a chunk removed from the middle
            start = rng.randrange(size)
            del buf[start:start + rng.randint(1, 256)]
        yield i, bytes(buf)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """(bytes, frames it holds) of an MP4 with its index last and of one with its index first."""
    d = tmp_path_factory.mktemp("fuzzbase")
    return [(make_clip(d / "moov_end.mp4").read_bytes(), 10),
            (make_clip(d / "faststart.mp4", faststart=True, frames=8).read_bytes(), 8)]


def convert_in_thread(conv, src, out) -> dict:
    box: dict = {}

    def work():
        try:
            box["result"] = conv.convert(src, out)
        except StreamerError as exc:          # the only kind of failure allowed
            box["error"] = exc
        except BaseException as exc:          # noqa: BLE001 - anything else is a bug
            box["bug"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(HANG_S)
    assert not t.is_alive(), f"{src.name} hangs"
    assert "bug" not in box, f"{src.name}: {type(box['bug']).__name__}: {box['bug']}"
    return box


def outcome(src, out, box: dict, held: int) -> str:
    """Judge one conversion against what the intact input held; returns the outcome."""
    if "error" in box:
        assert str(box["error"]).count("\n") == 0 and str(src) in str(box["error"])
        assert not out.exists()
        return "clean error"
    r = box["result"]
    frames = decoded_frames(out)
    assert frames == r.frames > 0, f"{src.name}: the output holds {frames} frames, the result says {r.frames}"
    if not r.damaged:
        assert frames == held, f"{src.name}: {frames} of {held} frames converted without a warning"
        assert r.warnings == [] and not r.truncated
        return "converted"
    assert len(r.warnings) == 1 and r.warnings[0].startswith(f"{src}: ") and "\n" not in r.warnings[0]
    assert f"converted {r.frames}" in r.warnings[0]
    assert r.frames_expected is None or r.frames_expected >= r.frames
    assert r.frames_skipped + r.frames_missing > 0 or r.truncated or "damaged" in r.warnings[0]
    return "converted with warning"


def test_fuzz_api(tmp_path, bases, identity_converter):
    conv = identity_converter(overwrite=True)
    strict = identity_converter(overwrite=True, strict=True)
    counts = dict.fromkeys(OUTCOMES, 0)
    strict_checked = 0
    for b, (base, held) in enumerate(bases):
        for i, data in mutations(base, N_API // len(bases), seed=1000 + b):
            src = tmp_path / f"m{b}_{i}.mp4"
            src.write_bytes(data)
            out = tmp_path / "out" / f"m{b}_{i}.mp4"
            out.parent.mkdir(exist_ok=True)
            result = outcome(src, out, convert_in_thread(conv, src, out), held)
            counts[result] += 1
            assert leftovers(out.parent) == []
            if result == "converted with warning" and strict_checked < N_STRICT:   # --strict refuses it
                strict_checked += 1
                out.unlink()
                box = convert_in_thread(strict, src, out)
                assert "error" in box and "result" not in box, f"{src.name}: --strict converted a damaged file"
                assert str(src) in str(box["error"]) and "\n" not in str(box["error"]) and not out.exists()
                assert leftovers(out.parent) == []
            src.unlink()
    print(f"fuzz (API, {sum(counts.values())} mutations): {counts}")
    assert sum(counts.values()) >= 200
    assert all(counts[k] > 0 for k in OUTCOMES), counts       # the mutations exercise every path
    assert strict_checked == N_STRICT


def test_zeroed_run_and_removed_chunk_in_a_faststart_mp4_are_reported(tmp_path, bases, identity_converter):
    """Issue 22's two mutations that converted 7 of 8 frames with exit 0 and no word (frame threading swallowed the
    decoder's error): now a warning with the count."""
    conv = identity_converter(overwrite=True)
    base, held = bases[1]
    picked = {46: None, 101: None}
    for i, data in mutations(base, 110, seed=1001):
        if i in picked:
            picked[i] = data
    for i, data in picked.items():
        src = tmp_path / f"m{i}.mp4"
        src.write_bytes(data)
        with av.open(str(src)) as c, pytest.raises(av.error.InvalidDataError):
            for _ in c.decode(video=0):       # a plain decode knows the file is damaged
                pass
        r = conv.convert(src, tmp_path / f"o{i}.mp4")
        assert r.frames == decoded_frames(tmp_path / f"o{i}.mp4") == held - 1
        assert r.damaged and r.frames_skipped == 1 and r.frames_expected == held
        assert r.warnings == [f"{src}: damaged: 1 corrupt frame skipped; converted {held - 1} of {held}"]


@pytest.fixture(scope="module")
def cli_subset(tmp_path_factory):
    """The first PER_KIND_CLI files of each kind of the benchmark corpus, and the frames each base holds."""
    d = tmp_path_factory.mktemp("fuzzcorpus")
    bases = make_bases(d)
    held = {name: decoded_frames(p) for name, p in bases.items()}
    cases, seen = [], {}
    for case in corpus(d, 90, seed=7, bases=bases):
        if seen.get(case.kind, 0) < PER_KIND_CLI or case.intact and seen.get("intact", 0) < 1:
            seen[case.kind] = seen.get(case.kind, 0) + 1
            seen["intact"] = seen.get("intact", 0) + case.intact
            cases.append(case)
    return cases, held


def test_fuzz_cli_subset_of_the_benchmark_corpus(tmp_path, cli_subset):
    cases, held = cli_subset
    assert len({c.kind for c in cases}) == 8 and any(c.intact for c in cases)
    counts = dict.fromkeys(OUTCOMES, 0)
    for case in cases:
        r = run_case(case, tmp_path, timeout=HANG_S, expected=held)
        assert r.outcome != "failed", f"{case.name} ({case.how}): {r.problem}: {r.message}"
        counts[r.outcome] += 1
    print(f"fuzz (CLI, {len(cases)} files): {counts}")
    assert counts["clean error"] > 0 and counts["converted with warning"] > 0 and counts["converted"] > 0
    assert leftovers(tmp_path) == []
