"""The argument parser class of every `infopt` command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

__all__ = ["Parser", "add_load_flags"]


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other infopt error; `lazy_epilog` builds the epilog
    only when the help is shown (so that parsing imports nothing heavy)."""

    lazy_epilog: Callable[[], str] | None = None

    def format_help(self) -> str:
        if self.lazy_epilog is not None:
            self.epilog = self.lazy_epilog()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"infopt: error: {self.prog}: {message.rstrip('.')}. Fix: see `{self.prog} --help`.\n")


def add_load_flags(p: argparse.ArgumentParser) -> None:
    """--allow-pickle and --trust-remote-code, on every command that loads model folders."""
    p.add_argument("--allow-pickle", action="store_true", help="also read pickle weights (pytorch_model.bin, "
                   "*.pt) of model folders; they can run code: only for folders you trust (default: safetensors "
                   "only)")
    p.add_argument("--trust-remote-code", action="store_true", help="let a model folder run its own Python code "
                   "(config auto_map); only for folders you trust (default: never)")
