"""`SemanticConfig`: whether the semantic tier runs, its encoder and calibration, which endpoints it answers, and
how shadow verification keeps its false-hit rate under budget (`[cache.semantic]` of a server config)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infopt._config import check_bool, check_choice, check_int, check_number, field_error
from infopt.errors import UserError
from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._encoder import DEFAULT_ENCODER, ENCODERS, encoder_name

__all__ = ["SEMANTIC_ENDPOINTS", "SemanticConfig", "bundled_calibration"]

SEMANTIC_ENDPOINTS: Mapping[str, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions",
                                         "classify": "/v1/classify"}
"""The endpoints the semantic tier can answer, by the short name the config uses."""


def bundled_calibration(encoder: str = DEFAULT_ENCODER) -> Path:
    """The calibration shipped with infopt for `encoder` (1% false-hit budget at 95% confidence); infopt ships
    one for each onnx-int8 encoder."""
    return Path(__file__).parent / "data" / f"calibration-{encoder_name(encoder).replace(':', '-')}.json"


@dataclasses.dataclass(frozen=True)
class SemanticConfig:
    """The semantic tier: answers a prompt from the cached answer of one that means the same (opt in)."""

    enabled: bool = False
    """Run the semantic tier (after exact and prompt missed); also `--semantic-cache`."""
    encoder: str = DEFAULT_ENCODER
    """Prompt encoder MODEL:VARIANT: minilm-l3 (fastest) or minilm-l6, onnx-int8 (fast) or fp32 (a bare variant
    means minilm-l3's); infopt ships calibrations for the onnx-int8 ones."""
    calibration: str | None = None
    """Calibration JSON file (threshold fitted to a false-hit budget; None: the bundled one)."""
    max_false_hit_rate: float = 0.01
    """False-hit budget (wrong hits / hits); at least the calibration's own; shadow checks enforce it."""
    endpoints: tuple[str, ...] = ("completions", "chat")
    """Endpoints it answers: "completions", "chat", "classify" (classify only when listed)."""
    ttl_s: float | None = 3600.0
    """Seconds a semantic entry lives (None: until invalidated)."""
    candidates: int = 4
    """Nearest cached prompts checked per lookup (guard and threshold run on each)."""
    shadow_share: float = 0.05
    """Share of semantic hits also answered by the model in the background, to measure the false-hit rate."""
    shadow_action: str = "tighten"
    """When the measured rate's upper bound passes the budget: "tighten" the threshold, or "disable" hits."""
    max_shadow_runs: int = 2
    """Shadow model runs in flight at most; a hit chosen for checking while that many run is not checked."""
    max_indexed: int = 200_000
    """Prompts the in-process index holds at most (about 2.5 KB each); past it the oldest leave the index."""

    def __post_init__(self) -> None:
        check_bool(self, "enabled")
        if isinstance(self.encoder, str):
            object.__setattr__(self, "encoder", encoder_name(self.encoder))
        check_choice(self, "encoder", ENCODERS)
        if isinstance(self.calibration, Path):
            object.__setattr__(self, "calibration", str(self.calibration))
        if self.calibration is not None and (not isinstance(self.calibration, str) or not self.calibration.strip()):
            raise field_error(self, "calibration", self.calibration, "a file path, or None")
        check_number(self, "max_false_hit_rate", low=0, high=1, bounds="()", example=0.01)
        endpoints: Any = self.endpoints
        if isinstance(endpoints, list):
            endpoints = tuple(endpoints)
            object.__setattr__(self, "endpoints", endpoints)
        if (not isinstance(endpoints, tuple) or not endpoints
                or not all(isinstance(e, str) and e in SEMANTIC_ENDPOINTS for e in endpoints)):
            raise field_error(self, "endpoints", endpoints, f"a non-empty list of {', '.join(SEMANTIC_ENDPOINTS)}")
        check_number(self, "ttl_s", low=0, bounds="(]", optional=True, example=3600)
        check_int(self, "candidates", min=1)
        check_number(self, "shadow_share", low=0, high=1, example=0.05)
        check_choice(self, "shadow_action", ("tighten", "disable"))
        check_int(self, "max_shadow_runs", min=1)
        check_int(self, "max_indexed", min=1)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> SemanticConfig:
        """From a `[cache.semantic]` TOML table; an unknown key is a UserError naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise UserError(f"unknown key {unknown[0]!r} in [cache.semantic].",
                            f"use one of {', '.join(sorted(known))} (or remove it).")
        return cls(**table)

    @property
    def paths(self) -> tuple[str, ...]:
        """The endpoint paths it answers."""
        return tuple(SEMANTIC_ENDPOINTS[e] for e in self.endpoints)

    @property
    def calibration_path(self) -> Path:
        return Path(self.calibration) if self.calibration is not None else bundled_calibration(self.encoder)

    def load_calibration(self) -> Calibration:
        """The calibration file, checked against this config; UserError when unreadable, for another encoder, or
        fitted to a looser budget than `max_false_hit_rate`."""
        path = self.calibration_path
        try:
            calibration = Calibration.load(path)
        except FileNotFoundError:
            if self.calibration is not None:
                raise UserError(f"The semantic cache calibration {path} does not exist.",
                                "pass an existing calibration JSON as cache.semantic.calibration (or leave it "
                                "unset for the bundled one).") from None
            raise UserError(f"infopt ships no calibration for the encoder {self.encoder!r}.",
                            f"run `infopt cache calibrate PAIRS.jsonl --encoder {self.encoder} --output FILE` and "
                            "pass FILE as cache.semantic.calibration, or use an onnx-int8 encoder.") from None
        except OSError as e:
            raise UserError(f"Cannot read the semantic cache calibration {path} ({e.strerror}).",
                            "pass an existing calibration JSON as cache.semantic.calibration (or leave it unset "
                            "for the bundled one).") from None
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(f"{path} is not a semantic cache calibration ({e}).",
                            "pass a file written by `infopt cache calibrate`.") from None
        if calibration.encoder and calibration.encoder != self.encoder:
            raise UserError(f"The calibration {path} was fitted on encoder {calibration.encoder!r}, not "
                            f"{self.encoder!r}: its threshold does not carry over.",
                            f"set cache.semantic.encoder to {calibration.encoder!r}, or run `infopt "
                            f"cache calibrate PAIRS.jsonl --encoder {self.encoder} --max-false-hit-rate "
                            f"{self.max_false_hit_rate:g} --output FILE` and pass FILE as cache.semantic.calibration.")
        if self.max_false_hit_rate < calibration.max_false_hit_rate:
            rate = self.max_false_hit_rate
            raise UserError(f"cache.semantic.max_false_hit_rate is {rate:g}, but the calibration {path} was fitted "
                            f"to a budget of {calibration.max_false_hit_rate:g}.",
                            f"run `infopt cache calibrate PAIRS.jsonl --max-false-hit-rate {rate:g} --encoder "
                            f"{self.encoder} --output FILE` and pass FILE as cache.semantic.calibration, or set "
                            f"max_false_hit_rate to at least {calibration.max_false_hit_rate:g}.")
        return calibration
