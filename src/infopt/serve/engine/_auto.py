"""`EngineConfig.weights = "auto"`: the linear weights' format, by what the model holds and the CPU's flags.

The rule (measured on an AMX Xeon, 2 threads, SmolLM2-135M; see README "Engine"):
- a model already quantized by infopt (Int8 / Int4WeightOnlyLinear layers, a `weight-int8` variant) keeps its
  format: those codes are the only weights there are;
- a CPU with AMX-BF16 tiles and more than `BATCHED_SEQS` sequences at once gets "bfloat16": a batched step is
  cheap in bf16 on AMX (16 rows cost about what 1 does), while the int8 kernel's time grows with the rows (16 rows
  about 7x one row, 2.5x slower than bf16);
- a CPU with bf16 vector kernels (AVX-512 BF16 or AMX-BF16) gets "int8": a one-stream decode step reads every
  weight once, int8 reads a quarter of float32's bytes (2.5x faster than bf16 per layer at one row);
- any other CPU keeps "float32": the int8 kernel's bf16 activations are emulated there and it was never measured
  faster (pass "int8" / "bfloat16" explicitly to try).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from infopt.compress.quantize._weight_only import Int4WeightOnlyLinear, Int8WeightOnlyLinear

if TYPE_CHECKING:
    from infopt.optimize import Machine

__all__ = ["BATCHED_SEQS", "auto_weights", "quantized_format", "resolve_weights"]

BATCHED_SEQS = 4
"""Above this many sequences per step, AMX machines get bfloat16 weights rather than int8."""


def quantized_format(model: torch.nn.Module) -> str | None:
    """"int4" / "int8" when the model has infopt's weight-only quantized layers, else None."""
    kinds = {type(m) for m in model.modules()}
    if Int4WeightOnlyLinear in kinds:
        return "int4"
    if Int8WeightOnlyLinear in kinds:
        return "int8"
    return None


def auto_weights(machine: Machine, max_num_seqs: int = 1) -> str:
    """The format "auto" picks for a plain float model on `machine` running up to `max_num_seqs` at once."""
    if machine.amx and "amx_bf16" in machine.flags and max_num_seqs > BATCHED_SEQS:
        return "bfloat16"
    return "int8" if machine.bf16 else "float32"


def resolve_weights(weights: str, model: Any, max_num_seqs: int = 1, machine: Machine | None = None) -> str:
    """The concrete format of `EngineConfig.weights` for `model` ("auto": see the module's rule)."""
    if weights != "auto":
        return weights
    found = quantized_format(model)
    if found is not None:
        return found
    if machine is None:
        from infopt.optimize import Machine

        machine = Machine.probe(bandwidth=False)
    return auto_weights(machine, max_num_seqs)
