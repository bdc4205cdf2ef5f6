"""`infopt bench-generate`: the config, the table, and a real run on a tiny Llama folder (every path, tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infopt.cli import main
from infopt.errors import UserError
from infopt.serve._bench_generate import BenchGenerateConfig, format_rows
from infopt.serve._bench_paths import Row


def test_config_is_validated() -> None:
    assert BenchGenerateConfig(weights=["int8"]).weights == ("int8",)  # type: ignore[arg-type]
    for bad in ({"weights": ("int3",)}, {"weights": ()}, {"weights": ("int8", "int8")}, {"streams": 0},
                {"streams": 17}, {"new_tokens": 1}, {"threads": 0}, {"ppl_blocks": -1}):
        with pytest.raises(UserError):
            BenchGenerateConfig(**bad)  # type: ignore[arg-type]


def test_the_table_has_bandwidth_notes_and_headlines() -> None:
    rows = [Row("HF generate", "float32", 1, 64, 8.0, 50.0, 120.0, 500_000_000),
            Row("HF generate_batch", "float32", 16, 1024, 32.0, weight_bytes=500_000_000),
            Row("llama.cpp", "Q4_1", 1, 0, 0.0, note="skipped: llama-cpp-python is not installed"),
            Row("engine", "int8", 1, 64, 1.0, 5.0, 15.0, 100_000_000),
            Row("engine", "bfloat16", 16, 1024, 2.0, weight_bytes=250_000_000, steps=64)]
    assert rows[3].bandwidth_gbs() == pytest.approx(6.4)  # 100 MB x 64 steps / 1 s
    assert rows[4].bandwidth_gbs() == pytest.approx(8.0)  # 250 MB x 64 steps / 2 s
    text = "\n".join(format_rows(rows, 20.0, {"float32": 10.0, "int8": 10.2, "int4": 11.0}))
    assert "llama.cpp: skipped" in text and "int8 10.200 (1.020x)" in text and "(1.100x > 1.05)" in text
    assert "engine 1 stream best 64.0 tok/s (int8), 8.0x HF generate" in text
    assert "engine 16 concurrent best 512.0 tok/s (bfloat16), 16.0x HF generate_batch" in text
    engine_line = next(line for line in text.splitlines() if line.startswith("engine") and "int8" in line)
    assert engine_line.split()[-2:] == ["6.4", "32"]  # GB/s and % of the 20 GB/s machine


def _bench(tiny_llama: Any, tmp_path: Path, *extra: str) -> tuple[dict[tuple[str, str, int], Any], Any]:
    """Run the command on the tiny Llama saved as a folder; its rows by (path, weights, streams), and the JSON."""
    from infopt.models import save_model

    save_model(tiny_llama, tmp_path / "tiny")
    out = tmp_path / "bench.json"
    code = main(["bench-generate", "--model", str(tmp_path / "tiny"), "--new-tokens", "3", "--streams", "1",
                 "--concurrent", "2", "--repeats", "1", "--threads", "1", "--json", str(out), *extra])
    assert code == 0
    result = json.loads(out.read_text())
    return {(r["path"], r["weights"], r["streams"]): r for r in result["rows"]}, result


def test_bench_generate_engine_rows_on_a_tiny_llama(tiny_llama: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rows, result = _bench(tiny_llama, tmp_path, "--no-hf", "--weights", "float32", "int8", "--prefix-tokens",
                             "24", "--ppl-blocks", "1")
    text = capsys.readouterr().out
    for key in [("engine", "float32", 1), ("engine", "float32", 2), ("engine", "int8", 1), ("engine", "int8", 2)]:
        assert rows[key]["tokens"] == 3 * key[2] and rows[key]["tokens_per_s"] > 0, key
        assert rows[key]["bandwidth_gbs"] > 0
    assert rows[("engine", "int8", 1)]["ttft_ms"] > 0 and rows[("engine", "int8", 1)]["tpot_ms"] > 0
    prefix = rows[("engine, shared prefix", "int8", 1)]
    assert prefix["cold_ttft_ms"] > 0 and prefix["ttft_ms"] > 0
    assert set(result["perplexity"]) == {"float32", "int8"} and result["machine"]["bandwidth_gbs"] > 0
    assert not any(path.startswith("HF") for path, _, _ in rows)
    assert "llama.cpp" in text and "perplexity" in text and "engine 1 stream best" in text


@pytest.mark.slow
def test_bench_generate_hugging_face_rows_on_a_tiny_llama(tiny_llama: Any, tmp_path: Path) -> None:
    rows, _ = _bench(tiny_llama, tmp_path, "--weights", "int4", "--prefix-tokens", "0", "--ppl-blocks", "0")
    for key in [("HF generate", "float32", 1), ("HF generate, static batch", "float32", 2), ("engine", "int4", 2)]:
        assert rows[key]["tokens"] == 3 * key[2] and rows[key]["tokens_per_s"] > 0, key
    assert rows[("HF generate", "float32", 1)]["ttft_ms"] > 0
    batch = rows[("HF generate_batch", "float32", 2)]  # measured, or a note saying why not
    assert batch["tokens"] > 0 or batch["note"]


def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench-generate", "--streams", "0"]) == 2
    assert main(["bench-generate", "--model", str(tmp_path / "nothing"), "--no-hf"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "streams" in err
