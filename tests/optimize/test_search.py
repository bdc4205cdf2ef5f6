"""The search with a fake bench and a fake clock: budget, acceptance, recovery, Pareto front, choice by priority."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from infopt._atomic import DiskFull
from infopt.errors import NotApplicable
from infopt.evaluate import SpeedResult, VariantResult
from infopt.optimize import Candidate, Recipe, Requirements, fallback, pareto_front, parse_recipes, search
from infopt.optimize._candidates import prefix_key


def v(name: str, acc: float, p50: float, thr: float, size: float, rss: float = 500.0) -> VariantResult:
    return VariantResult(name, f"m:{name}", "classification", {"accuracy": acc},
                         SpeedResult(p50, 1.2 * p50, 1.5 * p50, thr, 32, 2), size, rss, 1000)


BASE = ("teacher (baseline)", 85.0, 6.0, 220.0, 90.0)
TABLE = {  # name -> (accuracy, p50 ms, items/s at 32, MB)
    "onnx-int8": (84.6, 2.4, 350.0, 23.0),
    "torch-bf16": (85.0, 4.8, 590.0, 45.0),
    "prune-structured+onnx-int8": (83.5, 1.9, 520.0, 15.0),
    "prune-structured+onnx-int8-keep-fp32": (84.2, 2.2, 470.0, 19.0),
    "distill-l3+onnx-int8": (84.1, 1.2, 700.0, 20.0),
    "onnx-fp32": (85.0, 6.5, 230.0, 90.0),
}


def _row(name: str, method: str, row: tuple[float, float, float, float, float] | None) -> VariantResult:
    """A measured cascade / early-exit model from (accuracy, p50, p95, items/s, MB); None: NotApplicable."""
    if row is None:
        raise NotApplicable(f"{method} does not apply.", "drop it.")
    acc, p50, p95, thr, size = row
    out = v(name, acc, p50, thr, size)
    out.method, out.speed.p95_ms = method, p95
    return out


@dataclass
class FakeBench:
    """Variants from TABLE; each build + measure advances the fake clock by `cost[name]` (default 60 s)."""

    table: dict[str, tuple[float, float, float, float]]
    cost: dict[str, float] = field(default_factory=dict)
    now: float = 0.0
    built: set[str] = field(default_factory=set)
    measured: list[str] = field(default_factory=list)
    slow_interleaved: set[str] = field(default_factory=set)
    cascade_row: tuple[float, float, float, float, float] | None = None
    """(accuracy, p50, p95, items/s, MB) of the cascade; None: cascades do not apply."""
    cascades: list[tuple[str, str, float]] = field(default_factory=list)
    exit_row: tuple[float, float, float, float, float] | None = None
    """(accuracy, p50, p95, items/s, MB) of the early-exit model; None: early exit does not apply."""
    exits: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def baseline(self) -> VariantResult:
        self.now += 30
        return v(*BASE)

    def variant(self, recipe: Recipe) -> VariantResult:
        self.now += self.cost.get(recipe.name, 60.0)
        if recipe.name not in self.table:
            raise NotApplicable(f"{recipe.name} does not apply.", "drop it.")
        self.measured.append(recipe.name)
        self.built.update(prefix_key(recipe.steps[:n]) for n in range(1, len(recipe.steps) + 1))
        return v(recipe.name, *self.table[recipe.name])

    def p95_at_batch(self, result: VariantResult, batch_size: int) -> float:
        return result.speed.p95_ms * batch_size / 2

    def cascade(self, small: VariantResult, large: VariantResult, max_drop: float) -> VariantResult:
        self.now += 60
        self.cascades.append((small.name, large.name, max_drop))
        return _row("c", "cascade", self.cascade_row)

    def early_exit(self, max_drop: float) -> VariantResult:
        self.now += 90
        self.exits.append(max_drop)
        return _row("e", "distill:self", self.exit_row)

    def interleaved(self, results: Sequence[VariantResult]) -> dict[str, float]:
        self.now += 5 * len(results)
        return {r.name: r.speed.p50_ms * (3 if r.name in self.slow_interleaved else 1.05) for r in results}


def cands(*names: str, cost: float = 60.0) -> list[Candidate]:
    return [Candidate(r, f"because {r.name}", (cost - 20,) * len(r.steps), 20.0) for r in parse_recipes(names,
                                                                                                        "classification")]


ALL = ("onnx-int8", "torch-bf16", "prune-structured+onnx-int8", "distill-l3+onnx-int8", "onnx-fp32")


def run(req: Requirements, names: Sequence[str] = ALL, bench: FakeBench | None = None, **kw: object):  # type: ignore[no-untyped-def]
    bench = bench or FakeBench(dict(TABLE))
    kw.setdefault("cascades", False)
    return search(bench, cands(*names), req, "accuracy", clock=bench.clock, **kw), bench  # type: ignore[arg-type]


def test_each_priority_chooses_its_best_variant() -> None:
    chosen = {p: run(Requirements(priority=p))[0].chosen for p in ("latency", "throughput", "size", "accuracy")}
    assert chosen == {"latency": "distill-l3+onnx-int8", "throughput": "distill-l3+onnx-int8",
                      "size": "prune-structured+onnx-int8-keep-fp32", "accuracy": "torch-bf16"}
    # without the distilled one, throughput goes to bf16 and latency to the pruned int8
    out, _ = run(Requirements(priority="throughput"), ALL[:3])
    assert out.chosen == "torch-bf16"


def test_latency_near_ties_go_to_the_more_accurate_then_the_smaller() -> None:
    table = {"onnx-int8": (84.3, 3.7, 248.0, 23.0), "onnx-int8-emb4": (85.1, 4.0, 243.0, 18.8),
             "onnx-fp32": (85.0, 3.0, 230.0, 90.0)}
    names = ("onnx-int8", "onnx-int8-emb4")
    out, _ = run(Requirements(priority="latency"), names, FakeBench(dict(table)))
    assert out.chosen == "onnx-int8-emb4"  # 8% slower: a tie, and 0.8 points more accurate
    out, _ = run(Requirements(priority="latency"), (*names, "onnx-fp32"), FakeBench(dict(table)))
    assert out.chosen == "onnx-fp32"  # 19% faster than both: no tie


def test_statuses_reasons_and_the_decision_log() -> None:
    out, bench = run(Requirements(priority="latency", price_per_hour=3.6))
    by = {r.name: r for r in out.variants}
    assert by["teacher (baseline)"].status == "baseline"
    assert by["distill-l3+onnx-int8"].status == "chosen"
    assert by["onnx-fp32"].status == "rejected"
    assert any("slower at batch 1 than the baseline" in r for r in by["onnx-fp32"].reasons)
    pruned = by["prune-structured+onnx-int8"]
    assert pruned.status == "rejected" and "83.5 vs baseline 85" in pruned.reasons[0]
    assert by["prune-structured+onnx-int8-keep-fp32"].status in ("kept", "dominated")
    assert by["torch-bf16"].status == "kept" and "Pareto front" in by["torch-bf16"].reasons[0]
    assert by["distill-l3+onnx-int8"].speed.interleaved_p50_ms == 1.2 * 1.05
    assert by["distill-l3+onnx-int8"].cost_per_1k == 3.6 * 1.2 * 1.05 / 3600
    logged = [d["variant"] for d in out.decisions]
    assert logged[0] == "teacher (baseline)" and set(logged[1:]) == {c for c in bench.measured}
    assert all({"variant", "action", "why", "seconds", "status"} <= set(d) for d in out.decisions)
    assert "Use distill-l3+onnx-int8: 5.0x faster at batch 1" in out.recommendation


def test_recovery_keeps_the_sensitive_layers_in_float_right_after() -> None:
    _, bench = run(Requirements())
    i = bench.measured.index("prune-structured+onnx-int8")
    assert bench.measured[i + 1] == "prune-structured+onnx-int8-keep-fp32"
    recipe = fallback(parse_recipes(["prune-structured+onnx-int8"], "classification")[0])
    assert recipe is not None
    assert "*.output.dense" in recipe.steps[-1].exclude and "classifier" in recipe.steps[-1].exclude
    assert recipe.steps[0] == parse_recipes(["prune-structured"], "classification")[0].steps[0]
    assert fallback(recipe) is None  # not twice
    assert fallback(parse_recipes(["distill-l3"], "classification")[0]) is None
    # no recovery when it misses another bound too, or with recover=False (--recipes)
    _, b2 = run(Requirements(max_size_mb=14.0))
    assert "prune-structured+onnx-int8-keep-fp32" not in b2.measured
    _, b3 = run(Requirements(), recover=False)
    assert "prune-structured+onnx-int8-keep-fp32" not in b3.measured


def test_the_budget_skips_what_no_longer_fits_and_logs_it() -> None:
    bench = FakeBench(dict(TABLE), cost={"distill-l3+onnx-int8": 400})
    out, _ = run(Requirements(time_budget_s=400), bench=bench)
    skipped = [d for d in out.decisions if d["status"] == "skipped"]
    assert "distill-l3+onnx-int8" in [d["variant"] for d in skipped]
    assert all("budget" in d["action"] for d in skipped)
    assert bench.now <= 400 + 60  # nothing started that did not fit
    # the pruned one (2.2 ms) and onnx-int8 (2.4 ms) tie on latency: the more accurate onnx-int8 wins
    assert "distill-l3+onnx-int8" not in bench.measured and out.chosen == "onnx-int8"
    # time spent before the search (loading the model, the data) counts against the budget
    early, b1 = run(Requirements(time_budget_s=400), started=-250.0)
    assert len(b1.measured) < len(bench.measured)
    assert [d["variant"] for d in early.decisions if d["status"] != "skipped"][1:] == b1.measured
    # explicit recipes (budget=False) try everything
    _, b2 = run(Requirements(time_budget_s=1), budget=False, recover=False)
    assert set(b2.measured) == set(ALL)


def test_estimates_learn_from_measured_builds() -> None:
    # builds take 3x their estimate: after two of them the third (estimated 60 s, so 180 s) is skipped
    bench = FakeBench(dict(TABLE), cost={n: 180.0 for n in ALL})
    out, _ = run(Requirements(time_budget_s=500), ALL[:1] + ALL[1:2] + ALL[4:], bench=bench)
    assert bench.measured == ["onnx-int8", "torch-bf16"]
    assert [d["variant"] for d in out.decisions if d["status"] == "skipped"] == ["onnx-fp32"]


def test_not_applicable_is_skipped_not_fatal() -> None:
    table = {k: t for k, t in TABLE.items() if k != "torch-bf16"}
    out, _ = run(Requirements(), bench=FakeBench(table))
    (skip,) = [d for d in out.decisions if d["variant"] == "torch-bf16"]
    assert skip["status"] == "skipped" and "does not apply" in skip["why"]
    assert out.chosen == "distill-l3+onnx-int8"


def test_impossible_requirements_name_the_closest_variant() -> None:
    out, _ = run(Requirements(max_p95_ms=0.5))
    assert out.chosen is None and out.closest == "distill-l3+onnx-int8"
    assert "p95 1.44 ms at batch 1 is over the bound 0.5 ms" in out.recommendation
    assert out.recommendation.startswith("No variant meets every requirement; the closest is distill-l3+onnx-int8")
    assert out.closest_misses and all(r.status in ("baseline", "rejected") for r in out.variants)


def test_latency_never_chooses_a_variant_slower_in_the_interleaved_rounds() -> None:
    bench = FakeBench(dict(TABLE), slow_interleaved={"distill-l3+onnx-int8"})
    out, _ = run(Requirements(), bench=bench)
    # the choice is made on the interleaved numbers: the distilled one (1.2 ms fresh) ran 3.6 ms interleaved
    assert out.chosen == "onnx-int8"  # 2.4 * 1.05 ms, tied with the pruned one's 2.2 * 1.05 and more accurate
    bench = FakeBench({"onnx-int8": TABLE["onnx-int8"]}, slow_interleaved={"onnx-int8"})
    bench.table["onnx-int8"] = (84.6, 5.0, 350.0, 23.0)  # 15 ms interleaved vs the baseline's 6.3
    out, _ = run(Requirements(), ("onnx-int8",), bench=bench)
    assert out.chosen is None and "interleaved" in out.recommendation


def test_p95_at_a_larger_batch_is_measured_for_the_bound() -> None:
    out, _ = run(Requirements(max_p95_ms=3.0, p95_batch_size=4), ("onnx-int8", "distill-l3+onnx-int8"))
    by = {r.name: r for r in out.variants}
    assert any("at batch 4" in r for r in by["onnx-int8"].reasons)  # 2.88 * 4 / 2 = 5.76 ms
    assert out.chosen == "distill-l3+onnx-int8"  # 1.44 * 2 = 2.88 ms


def test_pareto_front() -> None:
    a, b, c = v("a", 85, 2, 300, 20), v("b", 84, 3, 200, 30), v("c", 84, 1, 100, 40)
    assert pareto_front([a, b, c], "accuracy") == [a, c]


STUDENT = {"onnx-int8": (84.6, 2.4, 350.0, 23.0), "distill-l3+onnx-int8": (82.0, 1.2, 700.0, 20.0)}


def test_a_cascade_makes_a_fast_student_that_misses_accuracy_usable() -> None:
    bench = FakeBench(dict(STUDENT), cascade_row=(84.9, 1.3, 6.5, 650.0, 110.0))
    out, _ = run(Requirements(priority="latency"), tuple(STUDENT), bench, cascades=True)
    # small: the fastest, which misses only the accuracy bound; large: the most accurate (the baseline); room: 1 point
    assert bench.cascades == [("distill-l3+onnx-int8", "teacher (baseline)", 1.0)]
    name = "cascade(distill-l3+onnx-int8>baseline)"
    assert out.chosen == name
    by = {r.name: r for r in out.variants}
    assert by[name].status == "chosen" and by["distill-l3+onnx-int8"].status == "rejected"
    assert any(d["variant"] == name and "validation split" in d["action"] for d in out.decisions)


def test_a_cascade_with_twice_the_tail_is_no_latency_tie() -> None:
    table = {"onnx-int8": (84.6, 2.4, 350.0, 23.0), "distill-l3+onnx-int8": (84.2, 1.2, 700.0, 20.0)}
    bench = FakeBench(table, cascade_row=(84.9, 1.25, 6.5, 650.0, 110.0))
    out, _ = run(Requirements(priority="latency"), tuple(table), bench, cascades=True)
    assert bench.cascades and out.chosen == "distill-l3+onnx-int8"  # the cascade's p95 is 4.5x the student's
    out, _ = run(Requirements(priority="accuracy"), tuple(table),
                 FakeBench(table, cascade_row=(84.9, 1.25, 6.5, 650.0, 110.0)), cascades=True)
    assert out.chosen == "cascade(distill-l3+onnx-int8>baseline)"


def test_when_no_cascade_is_tried() -> None:
    for req, table in ((Requirements(priority="cost"), STUDENT), (Requirements(priority="size"), STUDENT),
                       (Requirements(priority="latency"), {"onnx-int8": (84.6, 3.5, 350.0, 23.0)})):  # not 2x faster
        bench = FakeBench(dict(table), cascade_row=(85.0, 1.0, 2.0, 900.0, 110.0))
        run(req, tuple(table), bench, cascades=True)
        assert bench.cascades == [], (req, bench.cascades)
    # the accuracy anchor may be an accepted variant; what is left of the allowed drop goes to the cascade
    bench = FakeBench({**STUDENT, "torch-bf16": (85.5, 4.8, 590.0, 45.0)}, cascade_row=None)
    out, _ = run(Requirements(priority="latency"), (*STUDENT, "torch-bf16"), bench, cascades=True)
    assert bench.cascades == [("distill-l3+onnx-int8", "torch-bf16", 1.5)]
    assert any(d["variant"].startswith("cascade(") and d["status"] == "skipped" for d in out.decisions)


def test_a_full_disk_stops_the_search_instead_of_skipping_every_candidate() -> None:
    class FullBench(FakeBench):
        def variant(self, recipe: Recipe) -> VariantResult:
            raise DiskFull("The disk holding /x is full.", "free some space.")

    with pytest.raises(DiskFull):
        run(Requirements(), ALL, FullBench(dict(TABLE)))


def test_an_early_exit_model_is_tried_after_the_candidates() -> None:
    table = {"onnx-int8": (84.6, 4.5, 350.0, 23.0)}
    bench = FakeBench(dict(table), exit_row=(84.8, 3.0, 5.5, 300.0, 91.0))
    out, _ = run(Requirements(priority="latency"), tuple(table), bench, cascades=True)
    assert bench.exits == [1.0] and out.chosen == "early-exit"  # the whole allowed drop vs the baseline
    row = next(d for d in out.decisions if d["variant"] == "early-exit")
    assert row["status"] == "chosen" and "validation split" in row["action"]
    # a faster variant dominates it; it is logged as kept out
    bench = FakeBench(dict(TABLE), exit_row=(84.0, 3.0, 5.5, 300.0, 91.0))
    out, _ = run(Requirements(priority="latency"), ALL, bench, cascades=True)
    assert bench.exits and out.chosen == "distill-l3+onnx-int8"
    assert next(r for r in out.variants if r.name == "early-exit").status == "dominated"
    # not for size, cost or accuracy; not in a --recipes run (cascades=False); not when the budget is spent
    for priority in ("size", "cost", "accuracy"):
        bench = FakeBench(dict(table), exit_row=(84.8, 3.0, 5.5, 300.0, 91.0))
        run(Requirements(priority=priority), tuple(table), bench, cascades=True)  # type: ignore[arg-type]
        assert bench.exits == [], priority
    bench = FakeBench(dict(table), exit_row=(84.8, 3.0, 5.5, 300.0, 91.0))
    run(Requirements(priority="latency"), tuple(table), bench)
    assert bench.exits == []
    bench = FakeBench(dict(table), cost={"onnx-int8": 450.0}, exit_row=(84.8, 3.0, 5.5, 300.0, 91.0))
    out, _ = run(Requirements(priority="latency", time_budget_s=600), tuple(table), bench, cascades=True)
    assert bench.exits == [] and any(d["variant"] == "early-exit" and d["status"] == "skipped"
                                     and "budget" in d["why"] for d in out.decisions)
