"""The terminal table fits 80 columns and a log file: no cell cut or wrapped, full names on their own lines."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from rich.console import Console

from infopt.evaluate import RunResult, VariantResult, print_table
from infopt.evaluate._table import table_rows


def _printed(run: RunResult, width: int = 80) -> str:
    buf = io.StringIO()
    print_table(run, Console(width=width, file=buf))
    return buf.getvalue()


def _assert_whole(run: RunResult, text: str, width: int = 80) -> None:
    """Each row's cells are on one line, in order, uncut; the table lines fit `width`; every name is whole."""
    lines = text.splitlines()
    assert "…" not in text
    for row in table_rows(run):
        pattern = r"\s+".join(re.escape(c) for c in row if c)
        hits = [line for line in lines if re.fullmatch(r"\s*" + pattern + r"\s*", line)]
        assert len(hits) == 1, (row, text)
        assert len(hits[0]) <= width
    header = next(line for line in lines if line.lstrip().startswith("#"))
    assert len(header) <= width
    for i, v in enumerate(run.variants):
        assert any(line.startswith(f"{i + 1}  {v.name}: ") for line in lines), v.name


def test_the_optimizer_run_fits_80_columns(optimized: RunResult) -> None:
    text = _printed(optimized)
    _assert_whole(optimized, text)
    assert "1  minilm-l6-rt (baseline): accuracy 85.08 [83.13, 87.03], n=1,280; one example = 0.08 points" in text
    assert "     rejected: accuracy drop 1.17 points > the 1.00 allowed" in text
    assert f"Recommendation: {optimized.recommendation}" in text
    assert "- onnx-int8 uses more peak memory (RSS) than the baseline (779 vs 626 MB)." in text
    row = table_rows(optimized)[1]
    assert row == ["2", "85.00", "-0.08*", "4.60", "6.90", "350", "23.0", "779", "2.57x", "kept"]


def test_long_names_big_numbers_and_many_variants_fit(make_variant: Callable[..., VariantResult],
                                                      make_run: Callable[..., RunResult]) -> None:
    long = "prune-structured+distill-l3+onnx-smooth-int8+embedding-int4+vocab-trim-domain"
    variants = [make_variant("base [bold]x[/bold]", 812.3, 12345.6, 1234.5, {"perplexity": 12.345}, decode=123.4,
                             rss=12345.0)]
    variants += [make_variant(f"{long}-{k}", 999.99 - k, 99.9 + k, 999.9, {"perplexity": 123.456 + k}, decode=12.3,
                              rss=4096.0, status="dominated", delta_ci=[-1.0, 2.0]) for k in range(11)]
    run = make_run(*variants, task="causal-lm", metric="perplexity")
    text = _printed(run)
    _assert_whole(run, text)
    assert "base [bold]x[/bold]" in text  # names are not read as rich markup
    assert "tok/s" in text


def test_an_older_results_file(mixed: RunResult) -> None:
    text = _printed(mixed)
    _assert_whole(mixed, text)
    assert table_rows(mixed)[2][-1] == "measured"


def test_a_wide_terminal_gets_the_same_table(optimized: RunResult) -> None:
    _assert_whole(optimized, _printed(optimized, width=200), width=200)
