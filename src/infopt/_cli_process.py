"""How an infopt command runs as a process: SIGTERM as an interrupt for the commands that write outputs, one
error on every rank under torchrun, a stdout that cannot be written to."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from infopt.errors import InfoptError

__all__ = ["WRITERS", "drop_stdout", "on_sigterm", "run_ranked"]


def run_ranked(func: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    """func(args); under torchrun (every rank runs it) one rank's error is raised on all ranks."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        func(args)
        return
    from infopt.train import distributed

    try:
        distributed.run_agreed(lambda: func(args))
    except InfoptError as e:
        if distributed.is_main():
            print(f"infopt: error: {e}", file=sys.stderr, flush=True)
        distributed.agree(None)  # the others exit only once it is printed: torchrun stops all ranks at the first
        e.printed = True  # type: ignore[attr-defined]
        raise
    finally:
        distributed.shutdown()


WRITERS = ("optimize", "bench", "quantize", "prune", "distill", "report")
"""The commands that turn SIGTERM into an interrupt (`infopt serve` drains on it instead, see serve/_server.py)."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every half-written output is removed on the way out."""

    signum = signal.SIGTERM


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def on_sigterm() -> Any:
    """Turn SIGTERM into `_Terminated` (main thread only); returns the previous handler (None: not installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def drop_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
