"""render_markdown, verdicts, print_table, write_report and environment on hand-built results."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from rich.console import Console

from infopt.evaluate import (
    RunResult,
    SpeedResult,
    VariantResult,
    environment,
    print_table,
    render_markdown,
    verdicts,
    write_report,
)

HEADER = (
    "| variant | accuracy | p50 ms (batch 1) | p95 ms | throughput (batch 32, items/s) | size MB | peak RSS MB "
    "| vs baseline |"
)


def _variant(
    name: str,
    p50: float,
    throughput: float,
    size: float,
    quality: dict[str, float],
    method: str = "original",
    decode: float | None = None,
    notes: list[str] | None = None,
) -> VariantResult:
    return VariantResult(
        name=name,
        method=method,
        task="classification",
        quality=quality,
        speed=SpeedResult(
            p50_ms=p50,
            p95_ms=p50 * 1.5,
            p99_ms=p50 * 2,
            throughput=throughput,
            batch_size=32,
            threads=4,
            decode_tokens_per_s=decode,
        ),
        size_mb=size,
        peak_rss_mb=512.4,
        params=22_713_216,
        path=f"runs/x/{name}",
        fingerprint=f"fp-{name}",
        notes=notes or [],
    )


def _run(*variants: VariantResult, task: str = "classification", metric: str = "accuracy") -> RunResult:
    env = {"python": "3.11.9", "seed": 0, "cpu": "Test CPU", "versions": {"torch": "2.13.0"}}
    return RunResult(
        model="minilm-l6",
        task=task,
        data="rotten-tomatoes",
        variants=list(variants),
        environment=env,
        quality_metric=metric,
    )


def _mixed() -> RunResult:
    return _run(
        _variant("baseline", 10.0, 100.0, 100.0, {"accuracy": 90.0}),
        _variant("fast", 5.0, 200.0, 25.0, {"accuracy": 89.5}, method="quantize:dynamic-int8"),
        _variant("slow", 20.0, 50.0, 120.0, {"accuracy": 91.0}, method="prune", notes=["needs sparse kernels"]),
    )


def _table_rows(md: str) -> list[str]:
    lines = md.splitlines()
    start = lines.index(HEADER)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_markdown_table_header_and_one_row_per_variant() -> None:
    md = render_markdown(_mixed())
    assert md.startswith("# infopt report: minilm-l6\n")
    assert "| variant |" in md
    lines = md.splitlines()
    assert HEADER in lines
    assert lines[lines.index(HEADER) + 1] == "|" + "---|" * 8
    rows = _table_rows(md)
    assert [r.split(" | ")[0] for r in rows] == ["| baseline", "| fast", "| slow"]
    assert all(r.count("|") == 9 for r in rows)


def test_markdown_row_values() -> None:
    rows = _table_rows(render_markdown(_mixed()))
    assert rows[0] == "| baseline | 90 | 10.00 | 15.00 | 100.0 | 100.0 | 512 | baseline |"
    assert rows[1] == "| fast | 89.5 | 5.00 | 7.50 | 200.0 | 25.0 | 512 | 2.00x speed, 0.25x size, -0.5 pts accuracy |"
    assert rows[2].endswith("| 0.50x speed, 1.20x size, +1 pts accuracy |")


def test_what_got_worse_lists_the_slower_variant() -> None:
    md = render_markdown(_mixed())
    assert "## What got worse" in md
    section = md.split("## What got worse", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert "- slow is slower than the baseline on this machine (20.00 ms vs 10.00 ms at batch 1)." in bullets
    assert "- slow has lower batch throughput than the baseline (50.0 vs 100.0 items/s)." in bullets
    assert "- slow is larger on disk than the baseline (120.0 vs 100.0 MB)." in bullets
    assert "- fast loses quality: accuracy 89.5 vs 90." in bullets
    assert "- slow: needs sparse kernels" in bullets
    assert not any(b.startswith("- fast is slower") or b.startswith("- slow loses") for b in bullets)
    assert len(bullets) == 5


def test_no_worse_section_when_every_variant_is_better() -> None:
    run = _run(
        _variant("baseline", 10.0, 100.0, 100.0, {"accuracy": 90.0}),
        _variant("better", 4.0, 300.0, 30.0, {"accuracy": 90.0}),
    )
    assert verdicts(run) == []
    md = render_markdown(run)
    assert "What got worse" not in md
    assert len(_table_rows(md)) == 2


def test_a_size_equal_to_one_decimal_is_not_larger() -> None:
    run = _run(
        _variant("baseline", 10.0, 100.0, 90.87, {"accuracy": 90.0}),
        _variant("exported", 5.0, 200.0, 90.94, {"accuracy": 90.0}),
    )
    assert verdicts(run) == []


def test_perplexity_lower_is_better() -> None:
    run = _run(
        _variant("baseline", 10.0, 100.0, 100.0, {"perplexity": 20.0}, decode=50.0),
        _variant("int4", 8.0, 120.0, 30.0, {"perplexity": 22.5}, decode=80.0),
        _variant("distilled", 8.0, 120.0, 30.0, {"perplexity": 18.0}, decode=None),
        task="causal-lm",
        metric="perplexity",
    )
    assert verdicts(run) == ["int4 loses quality: perplexity 22.5 vs 20."]
    md = render_markdown(run)
    header = next(line for line in md.splitlines() if line.startswith("| variant |"))
    assert header.endswith("| decode tok/s | vs baseline |")
    rows = [line for line in md.splitlines() if line.startswith("| int4 ")]
    assert "| 80.0 | 1.25x speed, 0.30x size, +2.5 perplexity |" in rows[0]
    assert "| nan |" in next(line for line in md.splitlines() if line.startswith("| distilled "))


def test_environment_and_variants_sections() -> None:
    md = render_markdown(_mixed())
    assert "- cpu: Test CPU" in md
    assert "- torch 2.13.0" in md
    assert "- fast: quantize:dynamic-int8, 22,713,216 params, fingerprint fp-fast, folder `runs/x/fast`" in md


def test_print_table() -> None:
    console = Console(record=True, width=300)
    print_table(_mixed(), console)
    text = console.export_text()
    for name in ("baseline", "fast", "slow"):
        assert name in text
    assert "slow is slower than the baseline" in text
    assert "2.00x speed" in text


def test_write_report(tmp_path: Path) -> None:
    run = _mixed()
    write_report(run, tmp_path)
    assert (tmp_path / "report.md").read_text() == render_markdown(run)
    assert RunResult.from_json((tmp_path / "results.json").read_text()) == run


def test_environment() -> None:
    env = environment(seed=7)
    assert env["seed"] == 7
    assert env["cpu_count"] == os.cpu_count()
    assert env["torch_threads"] == torch.get_num_threads()
    versions = env["versions"]
    assert isinstance(versions, dict) and versions["torch"] == torch.__version__
    assert set(versions) == {"infopt", "torch", "transformers", "onnxruntime", "numpy"}
    assert isinstance(env["cpu"], str) and env["cpu"]
