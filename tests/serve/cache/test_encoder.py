"""Encoder names, where built variants live, and the bundled calibration of each onnx-int8 encoder."""

from __future__ import annotations

import pytest

from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._encoder import DEFAULT_ENCODER, ENCODERS, PromptEncoder, encoder_name, variant_folder
from infopt.serve.cache._semantic_config import bundled_calibration


def test_names() -> None:
    assert DEFAULT_ENCODER == "minilm-l3:onnx-int8" and DEFAULT_ENCODER in ENCODERS
    assert encoder_name("fp32") == "minilm-l3:fp32" and encoder_name("minilm-l6:fp32") == "minilm-l6:fp32"
    assert variant_folder("minilm-l6:onnx-int8").name == "minilm-l6-onnx-int8"
    assert variant_folder("onnx-int8") == variant_folder(DEFAULT_ENCODER)
    with pytest.raises(ValueError, match="unknown encoder 'minilm-l12:fp32'"):
        PromptEncoder.load("minilm-l12:fp32")


@pytest.mark.parametrize("name", [e for e in ENCODERS if e.endswith(":onnx-int8")])
def test_each_onnx_int8_encoder_has_its_calibration(name: str) -> None:
    cal = Calibration.load(bundled_calibration(name))
    assert cal.encoder == name and cal.max_false_hit_rate == 0.01 and cal.n_pairs > 1000
