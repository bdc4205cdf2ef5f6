"""The fields of the `openvino*` schemes (OpenVINO IR, optionally NNCF int8), with their checks.

Field groups only, like `_OnnxFields` in `_configs.py`: the scheme configs themselves (`OpenVinoFp32Config`, ...)
are declared in `_configs.py` next to the others, from these groups and `QuantConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from infopt._config import CALIBRATION, check_int, str_tuple
from infopt.errors import UserError

__all__ = ["PRECISION_HINTS", "OpenVinoFloatFields", "OpenVinoInt8Fields"]

PRECISION_HINTS = ("f32", "bf16")
"""Values of OpenVINO's INFERENCE_PRECISION_HINT that the schemes use."""


@dataclass(frozen=True)
class _OpenVinoFields:
    scheme: ClassVar[str] = ""
    precision_hint: ClassVar[str] = "f32"
    """OpenVINO's INFERENCE_PRECISION_HINT when the model is compiled: `f32` or `bf16` (set by the scheme)."""

    exclude: tuple[str, ...] = ()
    """fnmatch patterns of module names (e.g. `classifier`) whose Linear layers are not quantized."""
    threads: int | None = None
    """OpenVINO's INFERENCE_NUM_THREADS (the per-backend thread setting); None: torch.get_num_threads() when the
    model is loaded."""

    def __post_init__(self) -> None:
        str_tuple(self, "exclude")
        check_int(self, "threads", min=1, optional=True)


@dataclass(frozen=True)
class OpenVinoFloatFields(_OpenVinoFields):
    """The IR as converted (float32 weights): `exclude` must stay empty, as nothing is quantized."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.exclude:
            raise UserError(f"{type(self).__name__}.exclude is {list(self.exclude)!r}, but {self.scheme} quantizes "
                            "nothing (its weights stay in float32).",
                            "pass exclude=[], or use openvino-int8, whose excluded modules stay in float32.")


@dataclass(frozen=True)
class OpenVinoInt8Fields(_OpenVinoFields):
    """NNCF post-training int8 (ModelType.TRANSFORMER): `exclude` becomes NNCF's ignored scope."""

    calibration_size: int = 300
    """At most this many of the calibration texts go through the model (NNCF's subset_size), one text per batch."""
    max_length: int = 128
    """Token limit for each calibration text."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self, "calibration_size", min=1)
        check_int(self, "max_length", min=2)

    def needs(self) -> frozenset[str]:
        """{"calibration"}: NNCF runs calibration texts through the model to fix the activation ranges."""
        return frozenset({CALIBRATION})
