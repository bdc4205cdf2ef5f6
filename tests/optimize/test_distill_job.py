"""The distill job's student specs (the job itself runs through the CLI tests)."""

from __future__ import annotations

import pytest

from infopt.compress.distill import StudentConfig
from infopt.errors import InfoptError
from infopt.optimize import parse_student


def test_parse_student() -> None:
    assert parse_student("every-other") == StudentConfig()
    assert parse_student("2") == StudentConfig(num_layers=2)
    assert parse_student("layers=0,3") == StudentConfig(layers=(0, 3))
    assert parse_student("random:2") == StudentConfig(init="random", num_layers=2)
    assert parse_student("minilm-l3") == "minilm-l3"
    with pytest.raises(InfoptError):
        parse_student("layers=a,b")
