"""RunResult / VariantResult / SpeedResult: JSON round trips."""

from __future__ import annotations

import json
from pathlib import Path

from infopt.evaluate import RunResult, SpeedResult, VariantResult


def _run() -> RunResult:
    base = VariantResult(
        name="minilm-l6",
        method="original",
        task="causal-lm",
        quality={"perplexity": 21.25, "tokens": 8191.0},
        speed=SpeedResult(
            p50_ms=12.5, p95_ms=14.0, p99_ms=15.25, throughput=310.5, batch_size=32, threads=2, decode_tokens_per_s=None
        ),
        size_mb=90.9,
        peak_rss_mb=640.0,
        params=22_713_216,
        path="runs/a/minilm-l6",
        fingerprint="0123456789abcdef",
    )
    int8 = VariantResult(
        name="dynamic-int8",
        method="quantize:dynamic-int8",
        task="causal-lm",
        quality={"perplexity": 21.75, "tokens": 8191.0},
        speed=SpeedResult(
            p50_ms=6.0, p95_ms=7.0, p99_ms=9.5, throughput=700.0, batch_size=32, threads=2, decode_tokens_per_s=123.5
        ),
        size_mb=23.1,
        peak_rss_mb=410.0,
        params=22_713_216,
        notes=["dynamic quantization only covers Linear layers", "é ünïcode"],
    )
    env = {"python": "3.11.9", "seed": 3, "versions": {"torch": "2.13.0", "numpy": "2.1.0"}, "cpu_count": 2}
    return RunResult(
        model="minilm-l6",
        task="causal-lm",
        data="news",
        variants=[base, int8],
        environment=env,
        quality_metric="perplexity",
    )


def test_json_round_trip() -> None:
    run = _run()
    back = RunResult.from_json(run.to_json())
    assert back == run
    assert isinstance(back.variants[1].speed, SpeedResult)
    assert back.variants[1].speed.decode_tokens_per_s == 123.5
    assert back.variants[0].speed.decode_tokens_per_s is None
    assert back.variants[1].notes == ["dynamic quantization only covers Linear layers", "é ünïcode"]
    assert back.environment["versions"] == {"torch": "2.13.0", "numpy": "2.1.0"}
    assert back.quality_metric == "perplexity"


def test_json_shape() -> None:
    d = json.loads(_run().to_json())
    assert set(d) == {"model", "task", "data", "variants", "environment", "quality_metric", "machine", "requirements",
                      "decisions", "chosen", "recommendation", "seconds", "price_per_hour"}
    v = d["variants"][1]
    assert v["speed"] == {
        "p50_ms": 6.0,
        "p95_ms": 7.0,
        "p99_ms": 9.5,
        "throughput": 700.0,
        "batch_size": 32,
        "threads": 2,
        "decode_tokens_per_s": 123.5,
        "samples_ms": [],
        "interleaved_p50_ms": None,
        "latency_threads": None,
    }
    assert v["quality"] == {"perplexity": 21.75, "tokens": 8191.0}
    assert v["path"] == "" and v["fingerprint"] == ""


def test_save_and_load(tmp_path: Path) -> None:
    run = _run()
    run.save(tmp_path / "results.json")
    assert RunResult.from_json((tmp_path / "results.json").read_text()) == run


def test_baseline_is_the_first_variant() -> None:
    run = _run()
    assert run.baseline is run.variants[0]
    assert run.baseline.name == "minilm-l6"
    assert RunResult.from_json(run.to_json()).baseline.name == "minilm-l6"


def test_default_quality_metric_round_trips() -> None:
    run = _run()
    run = RunResult(
        model=run.model, task="classification", data="rotten-tomatoes", variants=run.variants[:1], environment={}
    )
    back = RunResult.from_json(run.to_json())
    assert back.quality_metric == "accuracy"
    assert back == run
