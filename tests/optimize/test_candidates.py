"""The candidate rule on three CPUs (flag sets fed in), and unregistered names skipped with a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from infopt.errors import UserError
from infopt.optimize import Machine, plan_candidates
from infopt.optimize import _candidates as cands
from infopt.optimize._recipes import parse_recipes

AVX2_EPYC = Machine.from_flags({"avx", "avx2", "fma", "f16c"}, model_name="AMD EPYC 7B13")
AVX512_EPYC = Machine.from_flags({"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}, model_name="AMD EPYC")
AMX_XEON = Machine.from_flags({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"},
                              model_name="Intel(R) Xeon(R) Platinum 8480+")


def names(machine: Machine, priority: str = "latency", task: str = "classification") -> list[str]:
    return plan_candidates(machine, task, priority).names


def test_avx2_gets_seven_bit_int8_and_no_bf16() -> None:
    got = names(AVX2_EPYC)
    assert got[0] == "onnx-int8"
    assert not any("vnni" in n or "bf16" in n for n in got)
    assert got == ["onnx-int8", "onnx-int8-emb4", "prune-structured+onnx-int8-emb4", "distill-l3+onnx-int8-emb4",
                   "distill-l3+prune-structured+onnx-int8-emb4"]


def test_vnni_and_bf16_epyc_gets_full_range_int8_and_bf16_last_for_latency() -> None:
    got = names(AVX512_EPYC)
    assert got[0] == "onnx-int8-vnni" and "onnx-int8" not in got
    assert "distill-l3+prune-structured+onnx-int8-vnni-emb4" in got
    assert got[-1] == "torch-bf16"
    assert names(AVX512_EPYC, "throughput")[0] == "torch-bf16"


def test_amx_xeon_tries_bf16_first_for_throughput_and_a_bf16_student() -> None:
    got = names(AMX_XEON, "throughput")
    assert got[0] == "torch-bf16" and got[1] == "onnx-int8-vnni"
    assert "distill-l3+torch-bf16" in got
    assert "distill-l3+torch-bf16" not in names(AVX512_EPYC, "throughput")  # bf16 students only on AMX
    why = {c.name: c.reason for c in plan_candidates(AMX_XEON, "classification", "throughput").candidates}
    assert "AMX" in why["torch-bf16"] and "VNNI" in why["onnx-int8-vnni"]


def test_the_three_cpus_differ_and_this_machine_matches_its_flags() -> None:
    lists = [names(m) for m in (AVX2_EPYC, AVX512_EPYC, AMX_XEON)]
    assert lists[0] != lists[1]
    here = Machine.probe(bandwidth=False)
    got = names(here)
    assert ("onnx-int8-vnni" in got) == here.vnni and ("torch-bf16" in got) == here.bf16
    if "avx512_vnni" in Path("/proc/cpuinfo").read_text():
        assert got == lists[1] or here.amx


def test_priorities_change_the_list() -> None:
    assert "vocab-trim+onnx-int8-vnni-emb4" in names(AVX512_EPYC, "size")
    assert names(AVX512_EPYC, "size")[-2] == "distill-l3+prune-structured+vocab-trim+onnx-int8-vnni-emb4"
    assert "vocab-trim+onnx-int8-emb4" in names(AVX2_EPYC, "size")
    assert not any("emb4" in n or "vocab" in n for n in names(AVX512_EPYC, "throughput"))
    assert "onnx-smooth-int8" in names(AVX512_EPYC, "accuracy")
    assert "onnx-smooth-int8" not in names(AVX512_EPYC, "latency")
    assert names(AVX512_EPYC, "latency", "embedding")[0] == "torch-bf16"
    assert names(AVX2_EPYC, "latency", "causal-lm")[0] == "weight-int8"


def test_costs_scale_with_cores_model_size_and_prefixes() -> None:
    two = {c.name: c for c in plan_candidates(AVX2_EPYC, "classification", "latency").candidates}
    big = Machine.from_flags(AVX2_EPYC.flags, cores=16)
    sixteen = {c.name: c for c in plan_candidates(big, "classification", "latency").candidates}
    chain = "distill-l3+prune-structured+onnx-int8-emb4"
    assert sixteen[chain].cost_s < 0.5 * two[chain].cost_s
    assert 300 < two["distill-l3+onnx-int8-emb4"].cost_s < 900  # ~7 min of distillation on 2 cores
    tiny = {c.name: c for c in plan_candidates(AVX2_EPYC, "classification", "latency", 1e6, 40).candidates}
    assert tiny[chain].cost_s < 0.2 * two[chain].cost_s
    c = two[chain]
    built = {cands.prefix_key(c.recipe.steps[:1])}
    assert c.cost_after(built) == pytest.approx(c.cost_s - c.step_costs[0])


def test_an_unregistered_name_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(names: list[str], task: str) -> object:
        if any("vnni" in n or "bf16" in n for n in names):
            raise UserError(f"Unknown recipe {names[0]!r}.", "use another.")
        return parse_recipes(names, task)

    monkeypatch.setattr(cands, "parse_recipes", parse)
    plan = plan_candidates(AMX_XEON, "classification", "throughput")
    assert plan.names[0] == "onnx-int8"  # the vnni slot fell back to 7-bit int8; bf16 skipped
    assert not any("bf16" in n for n in plan.names)
    assert any("onnx-int8-vnni is not available" in n and "onnx-int8 instead" in n for n in plan.notes)
    assert any("torch-bf16 is not available" in n and "skipped" in n for n in plan.notes)
    assert "not available" in plan.candidates[0].reason
