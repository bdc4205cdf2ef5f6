"""What every benchmark prints and needs about this machine: the CPU (model, int8/bf16 flags, cores), a free port."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

__all__ = ["cpu_name", "free_port"]


def cpu_name() -> str:
    """E.g. "AMD EPYC (AVX2, no VNNI), 2 cores" or "Intel(R) Xeon(R) Processor (avx512_vnni, amx_int8), 2 cores"."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    flags = [f for f in ("avx512_vnni", "amx_int8", "avx512_bf16") if f in info]
    return f"{model} ({', '.join(flags) or 'AVX2, no VNNI'}), {os.cpu_count()} cores"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
