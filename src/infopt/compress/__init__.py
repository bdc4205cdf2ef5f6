"""Compression stages: quantize, prune, distill. One entry point per stage."""

from infopt.compress.distill import response_kd_loss
from infopt.compress.prune import PRUNE_METHODS, prune
from infopt.compress.quantize import QUANT_SCHEMES, quantize, replay

__all__ = ["QUANT_SCHEMES", "quantize", "replay"]
__all__ += ["response_kd_loss"]
__all__ += ["PRUNE_METHODS", "prune"]
