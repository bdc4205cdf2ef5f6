"""Compression stages: quantize (and, later, prune and distill). One entry point per stage."""

from infopt.compress.quantize import QUANT_SCHEMES, quantize, replay

__all__ = ["QUANT_SCHEMES", "quantize", "replay"]
