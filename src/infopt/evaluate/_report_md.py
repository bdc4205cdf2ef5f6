"""report.md: the report's blocks as Markdown."""

from __future__ import annotations

from infopt.evaluate._report_doc import Block, Bullets, Heading, Lead, Para, Plots, TableBlock, build_doc
from infopt.evaluate._results import RunResult

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    """A table cell: pipes escaped, no line breaks."""
    return " ".join(text.replace("|", "\\|").split())


def _block(b: Block) -> list[str]:
    if isinstance(b, Heading):
        return ["#" * b.level + " " + b.text]
    if isinstance(b, Lead):
        return [f"**{b.label}:** {b.text}"]
    if isinstance(b, Para):
        return [b.text]
    if isinstance(b, Bullets):
        return [f"- {item}" for item in b.items]
    if isinstance(b, TableBlock):
        return ["| " + " | ".join(_cell(h) for h in b.header) + " |", "|" + "---|" * len(b.header),
                *["| " + " | ".join(_cell(c) for c in row) + " |" for row in b.rows]]
    if isinstance(b, Plots):
        return [f"{b.metric} vs p50 latency with the Pareto front, sizes on disk and batch-1 latency distributions: "
                "see report.html."]
    raise TypeError(f"unknown report block {b!r}")


def render_markdown(run: RunResult) -> str:
    """The whole report as Markdown."""
    lines: list[str] = []
    for b in build_doc(run):
        lines += [*_block(b), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
