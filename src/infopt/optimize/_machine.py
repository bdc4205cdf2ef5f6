"""The machine the variants run on, measured: CPU flags that decide which kernels are fast, cores, memory.

    Machine.probe()                                      # this machine (/proc/cpuinfo, affinity, a timed copy)
    Machine.from_flags({"avx2", "avx512f", "avx512_vnni"}, cores=2, model_name="AMD EPYC")   # for tests
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CPU_FLAGS", "Machine", "memory_bandwidth_gbs"]

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that change which variants are fast."""


def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags":
            flags.update(value.split())
    return name or platform.processor() or platform.machine(), frozenset(flags)


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def memory_bandwidth_gbs(megabytes: int = 128, repeats: int = 3) -> float:
    """Copy bandwidth in GB/s (bytes read + written, 1e9) of a `megabytes` numpy array into another (256 MB in
    all by default, far beyond any cache); the best of `repeats`, well under a second."""
    src = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages first
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


@dataclass(frozen=True)
class Machine:
    """What the candidate rule needs to know about a CPU, and what the report says about it."""

    model_name: str
    """The CPU's model name (e.g. "AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+")."""
    flags: frozenset[str]
    """The flags of CPU_FLAGS the CPU has."""
    cores: int
    """Cores this process may run on (its CPU affinity)."""
    memory_gib: float = 0.0
    """Total memory in GiB (0: unknown)."""
    bandwidth_gbs: float | None = None
    """Measured memory copy bandwidth in GB/s (None: not measured)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", frozenset(f for f in self.flags if f in CPU_FLAGS))
        if not isinstance(self.cores, int) or self.cores < 1:
            raise ValueError(f"Machine.cores must be an integer >= 1, not {self.cores!r}")

    @classmethod
    def probe(cls, bandwidth: bool = True) -> Machine:
        """This machine: /proc/cpuinfo, the CPU affinity, /proc/meminfo and (if `bandwidth`) a timed copy."""
        name, flags = _cpuinfo()
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        return cls(name, flags, max(1, cores), round(_memory_gib(), 1),
                   round(memory_bandwidth_gbs(), 1) if bandwidth else None)

    @classmethod
    def from_flags(cls, flags: Iterable[str], cores: int = 2, model_name: str = "test CPU",
                   memory_gib: float = 8.0, bandwidth_gbs: float | None = None) -> Machine:
        """A machine described by its flags (for tests of the candidate rule)."""
        return cls(model_name, frozenset(flags), cores, memory_gib, bandwidth_gbs)

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        """int8 dot products that add in 32 bits (AVX-512 VNNI or AVX-VNNI): full-range int8 weights are safe."""
        return bool({"avx512_vnni", "avx_vnni"} & self.flags)

    @property
    def amx(self) -> bool:
        """Intel AMX tiles with int8 and bf16 (Sapphire Rapids and later)."""
        return "amx_tile" in self.flags and bool({"amx_int8", "amx_bf16"} & self.flags)

    @property
    def bf16(self) -> bool:
        """bf16 matrix kernels: AMX-BF16 or AVX-512 BF16."""
        return "avx512_bf16" in self.flags or ("amx_tile" in self.flags and "amx_bf16" in self.flags)

    def summary(self) -> str:
        """E.g. "AMD EPYC, 2 cores, AVX-512 VNNI, AVX-512 BF16, 12.3 GB/s"."""
        feats = [label for ok, label in ((self.amx, "AMX"), (self.avx512, "AVX-512"),
                                         (self.vnni, "VNNI"), ("avx512_bf16" in self.flags, "AVX-512 BF16"),
                                         (self.avx2 and not self.avx512, "AVX2")) if ok]
        bw = f", copy bandwidth {self.bandwidth_gbs:g} GB/s" if self.bandwidth_gbs else ""
        return f"{self.model_name}, {self.cores} cores, {', '.join(feats) or 'no AVX2'}{bw}"

    def to_dict(self) -> dict[str, Any]:
        """As stored in `RunResult.machine`."""
        d = asdict(self)
        d["flags"] = sorted(self.flags)
        return d | {"avx2": self.avx2, "avx512": self.avx512, "vnni": self.vnni, "amx": self.amx,
                    "bf16": self.bf16, "summary": self.summary()}
