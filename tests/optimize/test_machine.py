"""The machine: flags from /proc/cpuinfo (this machine's, really read), and the derived capabilities."""

from __future__ import annotations

import os
import time
from pathlib import Path

from infopt.optimize import Machine
from infopt.optimize._machine import memory_bandwidth_gbs


def test_flags_decide_the_capabilities() -> None:
    avx2 = Machine.from_flags({"avx2", "fma", "sse4_2"}, model_name="AMD EPYC 7763")
    assert avx2.flags == {"avx2"} and avx2.avx2 and not (avx2.vnni or avx2.bf16 or avx2.amx or avx2.avx512)
    zen4 = Machine.from_flags({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, model_name="AMD EPYC 9654")
    assert zen4.vnni and zen4.bf16 and zen4.avx512 and not zen4.amx
    spr = Machine.from_flags({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"})
    assert spr.amx and spr.vnni and spr.bf16
    alder = Machine.from_flags({"avx2", "avx_vnni"})
    assert alder.vnni and not alder.avx512
    assert "AMX" in spr.summary() and "AVX2" in avx2.summary()
    d = spr.to_dict()
    assert d["amx"] is True and d["flags"] == sorted(spr.flags) and d["cores"] == 2


def test_probe_reads_this_machine() -> None:
    t0 = time.perf_counter()
    m = Machine.probe()
    assert time.perf_counter() - t0 < 3
    assert m.cores == len(os.sched_getaffinity(0))
    info = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in info.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    assert m.flags == {f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                                 "amx_tile", "amx_int8", "amx_bf16"}}
    assert m.model_name and m.model_name in info
    assert m.memory_gib > 0.5
    assert m.bandwidth_gbs is not None and 0.5 < m.bandwidth_gbs < 2000


def test_bandwidth_is_quick() -> None:
    t0 = time.perf_counter()
    assert memory_bandwidth_gbs() > 0
    assert time.perf_counter() - t0 < 2
