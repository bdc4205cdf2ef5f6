"""FinetuneConfig: each bad field is named in the error, and the config round-trips as a versioned dict."""

from __future__ import annotations

import json

import pytest

from infopt.errors import InfoptError
from infopt.train import FinetuneConfig


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("epochs", 0, "a number > 0"),
        ("epochs", float("inf"), "a number > 0"),
        ("batch_size", 0, "an integer >= 1"),
        ("batch_size", 8.0, "an integer >= 1"),
        ("lr", -1e-3, "a number > 0"),
        ("weight_decay", -0.1, "a number >= 0"),
        ("warmup", 1.0, "a fraction in [0, 1)"),
        ("warmup", -0.1, "a fraction in [0, 1)"),
        ("max_length", 0, "an integer >= 1"),
        ("seed", 1.5, "an integer"),
    ],
)
def test_each_bad_field_is_named(field: str, value: object, allowed: str) -> None:
    with pytest.raises(InfoptError) as err:
        FinetuneConfig(**{field: value})  # type: ignore[arg-type]
    assert err.value.problem == f"Bad fine-tuning settings: FinetuneConfig.{field} is {value!r}, which is not allowed."
    assert err.value.fix.startswith(f"pass {field}= {allowed}")


def test_round_trip() -> None:
    config = FinetuneConfig(epochs=0.5, batch_size=4, lr=3e-4, weight_decay=0.0, warmup=0.0, max_length=16, seed=2)
    data = json.loads(json.dumps(config.to_dict()))
    assert data == {"version": 1, "epochs": 0.5, "batch_size": 4, "lr": 3e-4, "weight_decay": 0.0, "warmup": 0.0,
                    "max_length": 16, "seed": 2}
    assert FinetuneConfig.from_dict(data) == config
    assert FinetuneConfig.from_dict({"epochs": 2}) == FinetuneConfig(epochs=2)  # saved before versions
    assert FinetuneConfig.version == 1
