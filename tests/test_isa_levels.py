"""benchmarks/cpuid_mask.c: the preload that lets one machine run the AVX2-only code path. The speed numbers live
in the benchmark; here only that the mask takes effect in a real child process, and that a process without it
still sees the machine as it is."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.isa_levels import build_mask, effective_features, level_env, why_no_mask

pytestmark = pytest.mark.skipif(why_no_mask() is not None, reason=str(why_no_mask()))


def test_the_mask_hides_avx512_and_keeps_avx2(tmp_path):
    lib = build_mask(tmp_path)
    masked = effective_features(level_env("avx2", lib))
    assert masked["AVX2"] and masked["FMA3"]
    assert not masked["AVX512F"] and not masked["AVX512_SKX"]
    native = effective_features(level_env("native", lib))
    if "avx512f" in Path("/proc/cpuinfo").read_text():
        assert native["AVX512F"]   # only the preloaded process is told otherwise
