"""report.md: the recommendation first, machine and requirements, the comparison, every variant, the log."""

from __future__ import annotations

from collections.abc import Callable

from infopt.evaluate import RunResult, VariantResult, render_markdown


def _section(md: str, title: str) -> str:
    return md.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines and set(lines[1]) == {"|", "-"}
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in [lines[0], *lines[2:]]]


def test_recommendation_is_the_first_sentence(optimized: RunResult) -> None:
    lines = render_markdown(optimized).splitlines()
    assert lines[0] == "# infopt report: minilm-l6"
    assert lines[2] == f"**Recommendation:** {optimized.recommendation}"


def test_machine_and_requirements(optimized: RunResult) -> None:
    section = _section(render_markdown(optimized), "Machine and requirements")
    assert "- cpu: AMD EPYC 7B13" in section
    assert "- flags: avx2 (not: avx512, vnni, amx)" in section
    assert "- requirement priority: latency" in section
    assert "- requirement max_accuracy_drop: 1" in section


def test_performance_comparison_per_technique_and_for_the_chosen(optimized: RunResult) -> None:
    rows = _table(_section(render_markdown(optimized), "Performance comparison"))
    assert rows[0] == ["technique", "what was done", "size reduction", "speed-up (batch 1)", "throughput (batch 32)",
                       "accuracy retention", "status"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["onnx-int8"] == ["onnx-int8", "quantize:onnx-int8", "75% (3.95x smaller)", "2.57x", "2.19x",
                                    "99.9%", "kept"]
    assert by_name["prune-structured+onnx-int8"][1] == "prune:structured -> quantize:onnx-int8"
    chosen = by_name["chosen: distill-l3+onnx-int8"]
    assert chosen[2:] == ["87% (7.51x smaller)", "6.21x", "5.12x", "99.4%", "chosen"]
    assert len(rows) == 1 + 5 + 1


def test_every_variant_with_interval_n_flips_noise_and_cost(optimized: RunResult) -> None:
    section = _section(render_markdown(optimized), "Every variant")
    rows = _table(section)
    assert rows[0][:7] == ["#", "variant", "status", "accuracy [95% CI]", "n", "vs baseline [95% CI]", "flips"]
    assert rows[1][:6] == ["1", "minilm-l6-rt (baseline)", "baseline", "85.08 [83.13, 87.03]", "1,280", "baseline"]
    assert rows[2][:7] == ["2", "onnx-int8", "kept", "85.00 [83.05, 86.95]", "1,280",
                           "-0.08 points [-0.55, +0.39], within noise", "9"]
    assert rows[3][5] == "-1.17 points [-1.95, -0.47]"
    assert rows[1][-1] == f"{0.5 * 11.8 / 3600:.3g}"
    assert "accuracy was scored on n=1,280 test examples: one example = 0.08 points." in section
    assert "so it pays for itself after" in section


def test_decision_log_names_every_variant_and_the_other_decisions(optimized: RunResult) -> None:
    section = _section(render_markdown(optimized), "Decision log")
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(bullets) == len(optimized.variants) + 1
    pruned = next(b for b in bullets if b.startswith("- #3 prune-structured:"))
    assert pruned.startswith("- #3 prune-structured: rejected. Done: prune:structured (recipe prune-structured). "
                             "Numbers: accuracy 83.91 [81.88, 85.86], n=1,280; one example = 0.08 points; p50 8.50 ms")
    assert "Why: accuracy drop 1.17 points > the 1.00 allowed." in pruned
    assert "Log: rejected early: the accuracy bound already misses." in pruned
    assert "- openvino-int8: skipped (OpenVINO is not installed)" in bullets


def test_what_got_worse_lists_every_regression(optimized: RunResult) -> None:
    section = _section(render_markdown(optimized), "What got worse")
    bullets = [line[2:] for line in section.splitlines() if line.startswith("- ")]
    assert any("torch-bf16 has a higher p95 latency" in b for b in bullets)
    assert any("torch-bf16 has lower batch throughput" in b for b in bullets)
    assert sum("uses more peak memory" in b for b in bullets) == 5
    assert sum("loses quality: macro_f1" in b for b in bullets) == 4


def test_an_older_results_file_still_renders(mixed: RunResult) -> None:
    md = render_markdown(mixed)
    assert "**Recommendation:** No recommendation: this run measured 2 variant(s) side by side" in md
    assert "Requirements: none recorded" in md
    assert "(flags were not measured by this run)" in md
    rows = _table(_section(md, "Every variant"))
    assert rows[2][:7] == ["2", "fast", "measured", "89.50", "n/a", "-0.50 points", "n/a"]
    comparison = _table(_section(md, "Performance comparison"))
    assert [r[2] for r in comparison[1:]] == ["75% (4.00x smaller)", "20% larger (1.20x)"]
    assert "Cost: no price per hour was configured." in md
    assert "Break-even: the run's own compute time was not recorded." in md
    assert "- slow: needs sparse kernels" in _section(md, "What got worse")
    assert "- fast: quantize:dynamic-int8, 22,713,216 params, fingerprint fp-fast, folder variants/fast" in md
    assert "- torch 2.13.0" in _section(md, "Where this ran")


def test_nothing_worse_is_said(make_variant: Callable[..., VariantResult], make_run: Callable[..., RunResult]) -> None:
    run = make_run(make_variant("base", 10.0, 100.0, 100.0, {"accuracy": 90.0}),
                   make_variant("better", 4.0, 300.0, 30.0, {"accuracy": 90.0}))
    assert _section(render_markdown(run), "What got worse").strip() == (
        "Nothing: no variant is worse than the baseline on any measured number.")


def test_pipes_in_names_do_not_break_tables(make_variant: Callable[..., VariantResult],
                                            make_run: Callable[..., RunResult]) -> None:
    run = make_run(make_variant("base", 10.0, 100.0, 100.0, {"accuracy": 90.0}),
                   make_variant("a|b", 4.0, 300.0, 30.0, {"accuracy": 90.0}))
    rows = _table(_section(render_markdown(run), "Every variant"))
    assert rows[2][1] == "a\\|b" and len(rows[2]) == len(rows[0])
