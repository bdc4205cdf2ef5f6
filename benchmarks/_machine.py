"""What every benchmark prints and needs about this machine: the CPU (model, int8/bf16 flags, cores), a free port,
and a wait for a server it started."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["cpu_name", "free_port", "wait_ready"]


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


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until GET url/ready answers 200; RuntimeError when `timeout_s` passes or `proc` exits first."""
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready within {timeout_s:g} s")
