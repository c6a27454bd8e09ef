"""Damaged MP4s (truncations, byte flips, header damage): never a traceback, never a hang, never a partial output.

Most mutations run in-process through the conversion API (fast: one shared style encoder, identity
engine); a handful go through the real CLI in a subprocess with a 30 s timeout.
"""
from __future__ import annotations

import random
import threading

import av
import pytest

from conftest import leftovers, make_clip, run_cli
from streamer.errors import StreamerError

HANG_S = 30
N_API = 220
N_CLI = 6


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
    d = tmp_path_factory.mktemp("fuzzbase")
    return [make_clip(d / "moov_end.mp4").read_bytes(),
            make_clip(d / "faststart.mp4", faststart=True, frames=8).read_bytes()]


def check_output(out, result):
    """A success must be a complete, decodable file with every frame it claims."""
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == result.frames > 0


def test_fuzz_api(tmp_path, bases, identity_converter):
    conv = identity_converter(overwrite=True)
    outcomes = {"ok": 0, "error": 0}
    for b, base in enumerate(bases):
        for i, data in mutations(base, N_API // len(bases), seed=1000 + b):
            src = tmp_path / f"m{b}_{i}.mp4"
            src.write_bytes(data)
            out = tmp_path / "out" / f"m{b}_{i}.mp4"
            out.parent.mkdir(exist_ok=True)
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
            assert not t.is_alive(), f"mutation {b}/{i} hangs"
            assert "bug" not in box, f"mutation {b}/{i}: {type(box['bug']).__name__}: {box['bug']}"
            if "error" in box:
                outcomes["error"] += 1
                assert str(box["error"]).count("\n") == 0 and str(src) in str(box["error"])
                assert not out.exists()
            else:
                outcomes["ok"] += 1
                check_output(out, box["result"])
            assert leftovers(out.parent) == []
            src.unlink()
    assert sum(outcomes.values()) >= 200
    assert outcomes["error"] > 0 and outcomes["ok"] > 0       # the mutations exercise both paths


def test_fuzz_cli(tmp_path, bases):
    for i, data in mutations(bases[0], N_CLI, seed=7):
        src = tmp_path / f"c{i}.mp4"
        src.write_bytes(data)
        out = tmp_path / f"c{i}_out.mp4"
        proc = run_cli("convert", src, out, "--model", "identity", "--preset", "ultrafast", timeout=HANG_S)
        assert "Traceback" not in proc.stderr
        assert proc.returncode in (0, 2), proc.stderr
        if proc.returncode == 2:
            assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
        else:
            with av.open(str(out)) as c:
                assert sum(1 for _ in c.decode(video=0)) > 0
        assert leftovers(tmp_path) == []
