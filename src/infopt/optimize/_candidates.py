"""The candidate rule: machine + task + priority -> the recipes worth trying, in order, each with its reason and
a rough cost.

The order follows the seed's: quantize first (cheap, usually the biggest single win on CPU), then prune, then
distill, then their chains (distill-l3 -> prune-structured -> int8). Which int8 and whether bf16 depend on the CPU:

- `onnx-int8-vnni` (full-range int8 weights) only with VNNI: there the u8 x s8 products add in 32 bits; without it
  ONNX Runtime adds pairs in 16 bits and full-range weights saturate, so AVX2-only CPUs get 7-bit `onnx-int8`;
- `torch-bf16` only with AMX or AVX-512 BF16 (elsewhere bf16 matmuls are emulated and slower than fp32);
- OpenVINO (classifiers, where the `openvino` package is installed), after the others of each priority: its bf16
  IR on bf16 CPUs for throughput and accuracy, NNCF int8 at the end of the distill + prune chain for latency / cost.

A name that is not registered (an older infopt, a recipe not added yet) is skipped with a note, or replaced by the
next name of its slot (`onnx-int8-vnni` falls back to `onnx-int8`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass

from infopt.errors import InfoptError
from infopt.optimize._machine import Machine
from infopt.optimize._recipes import Recipe, parse_recipes, stage_of

__all__ = ["OPENVINO_MISSING", "Candidate", "CandidatePlan", "candidate_names", "openvino_installed", "plan_candidates",
           "prefix_key", "step_costs"]

TEACHER_PARAMS = 22.7e6
"""Parameters of the default teacher, which the base costs below are for."""
TEACHER_TRAIN = 10_246
"""Examples in its train split (training stages scale with it)."""

# Rough seconds on 2 cores for the default teacher (fixed part, part that scales with the model / train split).
_MEASURE = (12.0, 28.0)
_QUANT = {"onnx": (8.0, 40.0), "onnx-smooth-int8": (15.0, 90.0), "torch-bf16": (2.0, 6.0), "torch": (3.0, 15.0),
          "openvino": (5.0, 10.0), "openvino-bf16": (5.0, 10.0), "openvino-int8": (10.0, 45.0),
          "openvino-int8-bf16": (10.0, 45.0)}
"""Quantization: ov.convert_model ~10 s for the teacher; NNCF's calibration and int8 another 30-60 s."""
OPENVINO_MISSING = "OpenVINO is not installed: pip install 'infopt[openvino]' adds its candidates"
_PRUNE = (10.0, 190.0)
_DISTILL = (40.0, 33.0)
"""Distillation: fixed seconds (the teacher's outputs, once), and seconds per student layer per epoch (minilm-l6-rt's
3-layer student: 301 s for 3 epochs on a 2-core AMD EPYC)."""


@dataclass(frozen=True)
class Candidate:
    """One recipe to try: why it is worth trying on this machine, and what each of its steps costs."""

    recipe: Recipe
    reason: str
    """Why this recipe is tried here, in words."""
    step_costs: tuple[float, ...]
    """Rough seconds of each step on this machine (a step a cached prefix already built costs nothing)."""
    measure_cost: float
    """Rough seconds of measuring the variant in a fresh process."""

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def cost_s(self) -> float:
        """Rough seconds to build (from scratch) and measure."""
        return sum(self.step_costs) + self.measure_cost

    def cost_after(self, built: set[str]) -> float:
        """Rough seconds left when the step prefixes in `built` (as `prefix_key` gives them) already exist."""
        steps = self.recipe.steps
        done = max((n for n in range(1, len(steps) + 1) if prefix_key(steps[:n]) in built), default=0)
        return sum(self.step_costs[done:]) + self.measure_cost


@dataclass(frozen=True)
class CandidatePlan:
    """The ordered candidates and notes on what was left out (unregistered names)."""

    candidates: tuple[Candidate, ...]
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.candidates]


def prefix_key(steps: tuple[object, ...]) -> str:
    """A recipe prefix as text: its steps as a manifest records them."""
    return json.dumps(Recipe("", "", steps).to_manifest(), sort_keys=True)


def _scale(machine: Machine) -> float:
    """Compute scales with cores, sub-linearly (memory-bound kernels and Python overhead do not)."""
    return float((2 / min(machine.cores, 32)) ** 0.8)


def step_costs(recipe: Recipe, machine: Machine, params: float = TEACHER_PARAMS,
               n_train: int = TEACHER_TRAIN) -> tuple[tuple[float, ...], float]:
    """(rough seconds of each step, rough seconds of the measurement) of `recipe` on `machine`."""
    core = _scale(machine)
    p = max(params / TEACHER_PARAMS, 0.02)
    t = max(n_train / TEACHER_TRAIN, 0.005)
    costs, layers_frac = [], 1.0
    for step in recipe.steps:
        stage = stage_of(step)
        name = str(getattr(step, "scheme", "") or getattr(step, "method", ""))
        if stage == "quantize":
            key = name if name in _QUANT else ("onnx" if getattr(step, "kind", "") == "onnx" else "torch")
            fixed, var = _QUANT[key]
            costs.append(fixed + var * p * layers_frac * core)
        elif stage == "prune":
            costs.append(_PRUNE[0] + _PRUNE[1] * p * t * layers_frac * core)
        elif stage == "vocab-trim":
            costs.append(5.0 + 10.0 * t * core)  # tokenizes the train split once
        else:
            layers = int(getattr(getattr(step, "student", None), "num_layers", None) or 3)
            train = getattr(getattr(step, "config", None), "train", None)
            epochs = float(getattr(train, "epochs", 1.0) or 1.0)
            costs.append(_DISTILL[0] + _DISTILL[1] * layers * epochs * p * t * core)
            layers_frac = min(1.0, layers / 6)
    return tuple(costs), _MEASURE[0] + _MEASURE[1] * p * layers_frac * core


def _int8(machine: Machine) -> tuple[list[str], str]:
    if machine.vnni:
        return (["onnx-int8-vnni", "onnx-int8"],
                "full-range int8 weights: this CPU has VNNI, whose int8 dot products add in 32 bits")
    if machine.avx2:
        return (["onnx-int8"], "int8 with 7-bit weights: this CPU has AVX2 without VNNI, where full-range weights "
                               "saturate ONNX Runtime's 16-bit sums")
    return (["onnx-int8"], "int8 with 7-bit weights (no AVX2 / VNNI seen: the safe weight range)")


def _bf16(machine: Machine) -> str | None:
    if machine.amx:
        return "bf16 on AMX tiles: near-lossless, and the fastest at large batches on this CPU"
    if "avx512_bf16" in machine.flags:
        return "bf16 with AVX-512 BF16 dot products: near-lossless, half the weight bytes"
    return None


def openvino_installed() -> bool:
    """The `openvino` package can be imported here (it is not imported)."""
    return importlib.util.find_spec("openvino") is not None


def _openvino(machine: Machine, task: str, priority: str) -> list[tuple[str, str]]:
    """The OpenVINO candidates of this machine, task and priority, were OpenVINO installed: (recipe, why)."""
    if task != "classification":
        return []
    bf16 = _bf16(machine) is not None
    out = []
    if bf16 and priority == "throughput":
        why = ("OpenVINO's AMX / bf16 kernels (on an AMX Xeon the best batch-32 throughput of the engines compared on "
               "the default teacher)")
        out += [("openvino-bf16", why), ("distill-l3+openvino-bf16", f"a 3-layer student on {why}")]
    if priority in ("latency", "cost"):
        why = ("the chain with NNCF int8 on OpenVINO: a second int8 engine, whose kernels and fusions differ from "
               "ONNX Runtime's")
        out.append(("distill-l3+prune-structured+openvino-int8", why))
        if bf16:
            out.append(("distill-l3+prune-structured+openvino-int8-bf16", f"{why}; what is not int8 in bf16"))
    if bf16 and priority == "accuracy":
        out.append(("openvino-bf16", "OpenVINO's bf16 kernels (AMX / AVX-512 BF16): near-lossless, no calibration"))
    return out


def candidate_names(machine: Machine, task: str, priority: str,
                    openvino: bool | None = None) -> list[tuple[list[str], str]]:
    """The rule itself: (names to try for one slot, first registered wins; why) in the order to try them.

    `openvino`: whether the OpenVINO candidates are added (None: if the package is installed here)."""
    with_openvino = openvino_installed() if openvino is None else openvino
    q8, why8 = _int8(machine)
    bf16 = _bf16(machine)
    out: list[tuple[list[str], str]] = []

    def add(chain: str, why: str) -> None:
        slot = [chain]
        for mark, names in (("@q8", q8), ("@e4", [f"{q}-emb4" for q in q8])):
            if mark in chain:
                slot = [chain.replace(mark, q) for q in names]
        out.append((slot, why))

    if task == "classification":
        if bf16 and priority in ("throughput", "accuracy"):
            add("torch-bf16", bf16)
        add("@q8", f"quantize first: {why8}")
        # The word embedding is half of a small encoder's weights and only gathered: 4 bits cost little accuracy.
        q = "@e4" if priority in ("latency", "size", "cost") else "@q8"
        if q == "@e4":
            add("@e4", f"{why8}; the word embedding (half the weights) in 4 bits")
        if priority == "size":
            add("vocab-trim+@e4", "only the vocabulary the training data uses, then int8 with a 4-bit embedding "
                                  "(unseen words split into kept pieces: costs some accuracy)")
        if priority == "accuracy":
            add("onnx-smooth-int8", "SmoothQuant int8: outlier channels moved into the weights (the most accurate "
                                    "int8 here)")
            add("prune-structured", "structured pruning with a distilled recovery fine-tune")
        add(f"prune-structured+{q}", "then prune: a third of the heads and half the FFN neurons removed (recovered "
                                     "by distillation), then int8")
        add(f"distill-l3+{q}", "then distill: a 3-layer student of the model (half the depth), then int8")
        add(f"distill-l3+prune-structured+{q}", "the chain: distill to 3 layers, prune, then int8 (the smallest "
                                                "and fastest if accuracy holds)")
        if priority == "size":
            add("distill-l3+prune-structured+vocab-trim+@e4", "the chain, with only the vocabulary of the training "
                                                             "data (the smallest if accuracy holds)")
        if bf16 and priority not in ("throughput", "accuracy"):
            add("torch-bf16", bf16)
        if bf16 and priority == "throughput" and machine.amx:
            add("distill-l3+torch-bf16", "a 3-layer student in bf16 on AMX: large-batch throughput")
        if with_openvino:
            for chain, why in _openvino(machine, task, priority):
                add(chain, why)
    elif task == "embedding":
        if bf16:
            add("torch-bf16", bf16)
        add("@q8", f"quantize: {why8}")
        add("onnx-smooth-int8", "SmoothQuant int8: closer to the parent's embeddings")
        add("dynamic-int8-emb", "torch int8 with int8 word embeddings: the smallest file")
    else:
        add("weight-int8", "weight-only int8: decode is bound by weight bytes")
        add("weight-int4", "weight-only int4: a quarter of the bytes")
        if bf16:
            add("torch-bf16", bf16)
        add("dynamic-int8", "dynamic int8 of every Linear: faster prefill")
        add("prune-wanda-50", "Wanda 50% unstructured pruning")
    return out


def plan_candidates(machine: Machine, task: str, priority: str, params: float = TEACHER_PARAMS,
                    n_train: int = TEACHER_TRAIN, openvino: bool | None = None) -> CandidatePlan:
    """The candidates the rule gives for this machine, task and priority, parsed through `parse_recipes`; a name
    that is not registered (or does not apply) is replaced by the next of its slot, or skipped with a note.

    `openvino`: whether OpenVINO is available (None: if the package is installed here); where it is not and the
    rule would add OpenVINO candidates, a note says how to get them."""
    out: list[Candidate] = []
    notes: list[str] = []
    seen: set[str] = set()
    openvino = openvino_installed() if openvino is None else openvino
    if not openvino and _openvino(machine, task, priority):
        notes.append(OPENVINO_MISSING)
    for slot, why in candidate_names(machine, task, priority, openvino):
        for i, name in enumerate(slot):
            try:
                (recipe,) = parse_recipes([name], task)
            except InfoptError as e:
                rest = f"; trying {slot[i + 1]} instead" if i + 1 < len(slot) else "; skipped"
                notes.append(f"{name} is not available ({e.problem}){rest}")
                continue
            if recipe.name not in seen:
                seen.add(recipe.name)
                costs, measure = step_costs(recipe, machine, params, n_train)
                note = f" ({slot[0]} is not available: {name} instead)" if i else ""
                out.append(Candidate(recipe, why + note, costs, measure))
            break
    return CandidatePlan(tuple(out), tuple(notes))
