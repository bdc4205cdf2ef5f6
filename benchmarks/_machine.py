"""What every benchmark prints and needs about this machine: the CPU (model, int8/bf16 flags, cores), a free port,
a wait for a server it started, and a raw HTTP/1.1 client light enough not to compete with that server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["Conn", "connect", "cpu_name", "free_port", "raw_post", "server_timing_ms", "wait_ready"]

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


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


async def connect(url: str, n: int) -> list[Conn]:
    """`n` keep-alive connections to `url` (http://host:port)."""
    host, port = url.removeprefix("http://").split(":")
    return [await asyncio.open_connection(host, int(port)) for _ in range(n)]


async def raw_post(conn: Conn, path: str, body: dict[str, Any]) -> tuple[float, int, dict[bytes, bytes]]:
    """One JSON POST on a keep-alive connection: (ms, status, lower-cased headers). A raw HTTP/1.1 client, so its own
    CPU (it shares the cores with the server it measures) is about 0.1 ms a request, against about 0.5 ms for a sync
    httpx client and 1.8 ms for `infopt loadtest`'s async one. Reads Content-Length and chunked answers; an answer
    with neither ends with the connection."""
    reader, writer = conn
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(data), data))
    status, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines if h)}
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":  # e.g. Ray Serve's proxy
        while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
            await reader.readexactly(size + 2)
        await reader.readline()
    else:
        await reader.read()
    return (time.perf_counter() - t0) * 1e3, int(status.split(b" ")[1]), headers


def server_timing_ms(headers: dict[bytes, bytes]) -> float:
    """The server's own time for a request, from its `Server-Timing: app;dur=MS` header (NaN without one)."""
    return float(headers.get(b"server-timing", b"app;dur=nan").partition(b";dur=")[2])
