"""The shared report facts: regressions in words, noise, intervals, cost, break-even and the Pareto front."""

from __future__ import annotations

import math
from collections.abc import Callable

from infopt.evaluate import RunResult, VariantResult, verdicts
from infopt.evaluate._report_facts import (
    break_even,
    cost_per_1k,
    delta_text,
    p50_pair,
    pareto_front,
    quality_text,
    recommendation,
    retention,
)

Variant = Callable[..., VariantResult]
Run = Callable[..., RunResult]


def test_every_kind_of_regression_is_listed(mixed: RunResult) -> None:
    assert verdicts(mixed) == [
        "fast loses quality: accuracy 89.50 vs 90.00.",
        "slow is slower than the baseline on this machine (20.00 ms vs 10.00 ms at batch 1).",
        "slow has a higher p95 latency than the baseline (30.00 ms vs 15.00 ms at batch 1).",
        "slow has lower batch throughput than the baseline (50.0 vs 100.0 items/s).",
        "slow is larger on disk than the baseline (120.0 vs 100.0 MB).",
        "slow: needs sparse kernels",
    ]


def test_memory_and_secondary_metrics_are_regressions(make_variant: Variant, make_run: Run) -> None:
    run = make_run(
        make_variant("base", 10.0, 100.0, 90.0, {"accuracy": 85.0, "macro_f1": 84.0}, rss=626.0),
        make_variant("int8", 4.0, 300.0, 23.0, {"accuracy": 85.0, "macro_f1": 83.5}, rss=779.0),
    )
    assert verdicts(run) == [
        "int8 uses more peak memory (RSS) than the baseline (779 vs 626 MB).",
        "int8 loses quality: macro_f1 83.50 vs 84.00.",
    ]


def test_nothing_worse_and_equal_to_the_shown_digits(make_variant: Variant, make_run: Run) -> None:
    run = make_run(
        make_variant("base", 10.0, 100.0, 90.87, {"accuracy": 90.0}),
        make_variant("better", 4.0, 300.0, 30.0, {"accuracy": 90.0}),
        make_variant("exported", 5.0, 200.0, 90.94, {"accuracy": 90.0}, rss=512.2),
    )
    assert verdicts(run) == []


def test_perplexity_lower_is_better(make_variant: Variant, make_run: Run) -> None:
    run = make_run(
        make_variant("base", 10.0, 100.0, 100.0, {"perplexity": 20.0, "tokens": 8192.0}, decode=50.0),
        make_variant("int4", 8.0, 120.0, 30.0, {"perplexity": 22.5, "tokens": 8192.0}, decode=40.0),
        make_variant("distilled", 8.0, 120.0, 30.0, {"perplexity": 18.0, "tokens": 8000.0}),
        task="causal-lm", metric="perplexity",
    )
    assert verdicts(run) == ["int4 decodes slower than the baseline (40.0 vs 50.0 tokens/s).",
                             "int4 loses quality: perplexity 22.5 vs 20."]
    run.variants[2].batch_flips = [3, 256]
    assert verdicts(run)[-1] == ("distilled answers 3 of 256 test texts differently when each is sent alone (batch 1) "
                                 "than in the scored batches: its answers depend on the other texts of a batch "
                                 "(dynamic int8 scales activations per batch).")
    assert retention(run, run.variants[1]) == 100 * 20.0 / 22.5


def test_optimizer_fields_in_words(optimized: RunResult) -> None:
    base, onnx, pruned = optimized.variants[:3]
    assert quality_text(optimized, base) == "accuracy 85.08 [83.13, 87.03], n=1,280; one example = 0.08 points"
    assert delta_text(optimized, onnx) == "-0.08 points [-0.55, +0.39], within noise"
    assert delta_text(optimized, pruned) == "-1.17 points [-1.95, -0.47]"
    worse = verdicts(optimized)
    assert ("onnx-int8 loses quality: accuracy 85.00 vs 85.08 (-0.08 points [-0.55, +0.39], within noise; "
            "9 predictions flipped).") in worse
    assert "onnx-int8 uses more peak memory (RSS) than the baseline (779 vs 626 MB)." in worse
    assert "torch-bf16 is slower than the baseline on this machine (14.32 ms vs 12.15 ms at batch 1, " \
           "interleaved rounds)." in worse
    assert recommendation(optimized).startswith("Use distill-l3+onnx-int8:")


def test_one_example_for_a_small_test_split(make_variant: Variant, make_run: Run) -> None:
    run = make_run(make_variant("base", 10.0, 100.0, 90.0, {"accuracy": 80.56}, n_eval=72))
    assert quality_text(run, run.baseline) == "accuracy 80.56, n=72; one example = 1.39 points"


def test_interleaved_p50_only_when_both_have_one(make_variant: Variant, make_run: Run) -> None:
    run = make_run(make_variant("base", 10.0, 100.0, 90.0, {"accuracy": 80.0}, interleaved_p50_ms=11.0),
                   make_variant("a", 5.0, 100.0, 90.0, {"accuracy": 80.0}, interleaved_p50_ms=5.5),
                   make_variant("b", 4.0, 100.0, 90.0, {"accuracy": 80.0}))
    assert p50_pair(run, run.variants[1]) == (5.5, 11.0, True)
    assert p50_pair(run, run.variants[2]) == (4.0, 10.0, False)


def test_cost_per_1k_from_the_field_or_the_price(mixed: RunResult, optimized: RunResult) -> None:
    assert cost_per_1k(mixed, mixed.baseline) is None
    mixed.price_per_hour = 3.6
    assert cost_per_1k(mixed, mixed.baseline) == 3.6 * 10.0 / 3600  # 10 s of machine time per 1,000 requests
    assert cost_per_1k(optimized, optimized.baseline) == optimized.baseline.cost_per_1k


def test_break_even(optimized: RunResult, mixed: RunResult) -> None:
    saving = round(11.8 * 1.03, 3) - round(1.9 * 1.03, 3)  # the interleaved p50s
    requests = math.ceil(912.0 * 1000 / saving)
    assert break_even(optimized) == (
        "The optimisation took 15.2 min of this machine (0.127 at 0.5 per hour); distill-l3+onnx-int8 saves "
        f"{saving:.2f} ms per request at batch 1 ({0.5 * saving / 3600:.3g} per 1,000 requests), so it pays for "
        f"itself after {requests:,} requests.")
    optimized.chosen = "torch-bf16"
    assert break_even(optimized).endswith("torch-bf16 saves nothing per request, so break-even: never.")
    optimized.chosen = None
    assert break_even(optimized).endswith("no variant was chosen, so break-even: never.")
    assert break_even(mixed) == "Break-even: the run's own compute time was not recorded."


def test_pareto_front(optimized: RunResult, make_variant: Variant, make_run: Run) -> None:
    assert [v.name for v in pareto_front(optimized)] == [
        "distill-l3+onnx-int8", "onnx-int8", "minilm-l6-rt (baseline)"]
    run = make_run(make_variant("base", 10.0, 1.0, 1.0, {"perplexity": 20.0}),
                   make_variant("worse-and-slower", 12.0, 1.0, 1.0, {"perplexity": 25.0}),
                   make_variant("better", 11.0, 1.0, 1.0, {"perplexity": 18.0}),
                   task="causal-lm", metric="perplexity")
    assert [v.name for v in pareto_front(run)] == ["base", "better"]


def test_the_front_uses_interleaved_p50s_when_every_variant_has_one(make_variant: Variant, make_run: Run) -> None:
    base = make_variant("base", 1600.0, 5.0, 90.0, {"accuracy": 86.0}, interleaved_p50_ms=20.0)
    int8 = make_variant("int8", 23.0, 30.0, 23.0, {"accuracy": 85.0}, interleaved_p50_ms=22.0)
    assert [v.name for v in pareto_front(make_run(base, int8))] == ["base"]  # alone, the loaded baseline looked slow
    int8.speed.interleaved_p50_ms = None
    assert [v.name for v in pareto_front(make_run(base, int8))] == ["int8", "base"]
