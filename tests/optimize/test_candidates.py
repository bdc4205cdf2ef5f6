"""The candidate rule on three CPUs (flag sets fed in), with and without OpenVINO, and unregistered names skipped
with a note."""

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


def names(machine: Machine, priority: str = "latency", task: str = "classification",
          openvino: bool = False) -> list[str]:
    """The rule's names; without OpenVINO unless asked (its candidates come after the others)."""
    return plan_candidates(machine, task, priority, openvino=openvino).names


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


# ---------------------------------------------------------------- OpenVINO candidates (when it is installed)

OV_CHAIN = "distill-l3+prune-structured+openvino-int8"


def reasons(machine: Machine, priority: str) -> dict[str, str]:
    return {c.name: c.reason for c in plan_candidates(machine, "classification", priority, openvino=True).candidates}


def test_openvino_candidates_come_after_the_others_of_each_priority() -> None:
    for machine in (AVX2_EPYC, AVX512_EPYC, AMX_XEON):
        for priority in ("latency", "throughput", "accuracy", "cost", "size"):
            without, with_ov = names(machine, priority), names(machine, priority, openvino=True)
            assert with_ov[: len(without)] == without, (machine.model_name, priority)
            assert all("openvino" in n for n in with_ov[len(without):])
            assert not any("openvino" in n for n in without)


def test_amx_xeon_openvino_candidates() -> None:
    assert names(AMX_XEON, "throughput", openvino=True)[-2:] == ["openvino-bf16", "distill-l3+openvino-bf16"]
    assert names(AMX_XEON, "latency", openvino=True)[-2:] == [OV_CHAIN, f"{OV_CHAIN}-bf16"]
    assert names(AMX_XEON, "cost", openvino=True)[-2:] == [OV_CHAIN, f"{OV_CHAIN}-bf16"]
    assert names(AMX_XEON, "accuracy", openvino=True)[-1] == "openvino-bf16"
    assert not any("openvino" in n for n in names(AMX_XEON, "size", openvino=True))
    why = reasons(AMX_XEON, "throughput")
    assert "AMX" in why["openvino-bf16"] and "bf16" in why["distill-l3+openvino-bf16"]
    why = reasons(AMX_XEON, "latency")
    assert "NNCF int8" in why[OV_CHAIN] and "ONNX Runtime" in why[OV_CHAIN]


def test_avx2_gets_openvino_int8_only_and_no_bf16() -> None:
    assert names(AVX2_EPYC, "latency", openvino=True)[-1] == OV_CHAIN
    assert names(AVX2_EPYC, "cost", openvino=True)[-1] == OV_CHAIN
    for priority in ("throughput", "accuracy", "size"):
        assert names(AVX2_EPYC, priority, openvino=True) == names(AVX2_EPYC, priority)
    for priority in ("latency", "throughput", "accuracy"):
        assert not any("bf16" in n for n in names(AVX2_EPYC, priority, openvino=True))


def test_openvino_only_for_classifiers() -> None:
    for task in ("embedding", "causal-lm"):
        assert names(AMX_XEON, "throughput", task, openvino=True) == names(AMX_XEON, "throughput", task)
        assert not plan_candidates(AMX_XEON, task, "throughput", openvino=False).notes


def test_a_missing_openvino_is_one_note_where_it_would_add_candidates() -> None:
    plan = plan_candidates(AMX_XEON, "classification", "throughput", openvino=False)
    assert plan.notes == (cands.OPENVINO_MISSING,)
    assert "pip install 'infopt[openvino]'" in cands.OPENVINO_MISSING
    assert not plan_candidates(AMX_XEON, "classification", "throughput", openvino=True).notes
    assert not plan_candidates(AVX2_EPYC, "classification", "throughput", openvino=False).notes  # none to add there
    assert plan_candidates(AVX2_EPYC, "classification", "latency", openvino=False).notes == (cands.OPENVINO_MISSING,)


def test_the_default_probes_for_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cands, "openvino_installed", lambda: True)
    assert plan_candidates(AMX_XEON, "classification", "latency").names == names(AMX_XEON, openvino=True)
    monkeypatch.setattr(cands, "openvino_installed", lambda: False)
    assert plan_candidates(AMX_XEON, "classification", "latency").names == names(AMX_XEON)
    assert cands.candidate_names(AMX_XEON, "classification", "latency") == cands.candidate_names(
        AMX_XEON, "classification", "latency", openvino=False)


def test_openvino_costs_are_rough_seconds_of_conversion_and_nncf() -> None:
    plan = {c.name: c for c in plan_candidates(AMX_XEON, "classification", "throughput", openvino=True).candidates}
    convert = plan["openvino-bf16"].step_costs[0]
    assert 5 < convert < 30
    latency = {c.name: c for c in plan_candidates(AMX_XEON, "classification", "latency", openvino=True).candidates}
    nncf = latency[OV_CHAIN].step_costs[-1]
    assert convert < nncf < latency[OV_CHAIN].step_costs[0]  # cheaper than the distillation before it
