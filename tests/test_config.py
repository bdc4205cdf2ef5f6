"""infopt._config: the field checks every config uses, and the versioned dict form of saved recipes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from infopt._config import (
    Config,
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_type,
    config_from_dict,
    config_from_name,
    config_to_dict,
    field_error,
    int_tuple,
    number_tuple,
    str_tuple,
)
from infopt.errors import UserError


@dataclass(frozen=True)
class Inner(Config):
    version: ClassVar[int] = 1

    size: int = 2


@dataclass(frozen=True)
class Outer(Config):
    version: ClassVar[int] = 2
    name_field: ClassVar[str] = "kind"
    kind: ClassVar[str] = "outer"

    names: tuple[str, ...] = ()
    inner: Inner | None = None
    ratio: float = 0.5

    def __post_init__(self) -> None:
        str_tuple(self, "names")
        check_type(self, "inner", Inner, optional=True)
        check_fraction(self, "ratio")

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        if version == 1 and "share" in data:  # version 1 called `ratio` `share`
            data = dict(data)
            data["ratio"] = data.pop("share")
        return data


@dataclass(frozen=True)
class Other(Config):
    name_field: ClassVar[str] = "kind"
    kind: ClassVar[str] = "other"

    flag: bool = False


REGISTRY: dict[str, Config] = {"outer": Outer(), "other": Other()}


@dataclass
class Owner:
    value: Any = None


def _error(check: Any, value: Any, **kwargs: Any) -> UserError:
    with pytest.raises(UserError) as info:
        check(Owner(value), "value", **kwargs)
    return info.value


# ---------------------------------------------------------------- field checks


def test_the_message_names_class_field_value_and_what_is_allowed() -> None:
    err = field_error(Owner(), "lr", -1, "a number > 0")
    assert err.problem == "Owner.lr is -1, which is not allowed."
    assert err.fix == "pass lr= a number > 0."
    named = field_error("Distillation", "alpha", 2, "a number in [0, 1]")
    assert named.problem == "Distillation alpha is 2, which is not allowed."


@pytest.mark.parametrize("value", [0, 1, "yes", None])
def test_check_bool(value: object) -> None:
    err = _error(check_bool, value)
    assert "Owner.value" in err.problem and repr(value) in err.problem and "True or False" in err.fix
    check_bool(Owner(True), "value")
    check_bool(Owner(), "value", False)  # the value may be given instead of read


def test_check_int() -> None:
    for value in (1.0, True, "3", None):
        assert "an integer" in _error(check_int, value).fix
    assert ">= 2" in _error(check_int, 1, min=2).fix
    assert "or None" in _error(check_int, 0, min=1, optional=True).fix
    assert _error(check_int, -1, min=0, allowed="a count").fix == "pass value= a count."
    check_int(Owner(5), "value", min=5)
    check_int(Owner(None), "value", optional=True)
    check_int(Owner(-3), "value")


@pytest.mark.parametrize(
    ("kwargs", "good", "bad", "allowed"),
    [
        ({"low": 0, "high": 1}, [0, 0.5, 1], [-0.1, 1.1], "a number in [0, 1]"),
        ({"low": 0, "high": 1, "bounds": "(]"}, [1e-9, 1], [0, 1.5], "a number in (0, 1]"),
        ({"low": 0, "high": 1, "bounds": "[)"}, [0, 0.999], [1, -1], "a number in [0, 1)"),
        ({"low": 0, "high": 1, "bounds": "()"}, [0.5], [0, 1], "a number in (0, 1)"),
        ({"low": 0, "bounds": "(]"}, [1e-12, 1e9], [0, -1], "a number > 0"),
        ({"low": 0}, [0, 3], [-1e-9], "a number >= 0"),
        ({"high": 10, "bounds": "[)"}, [-5, 9.9], [10], "a number < 10"),
        ({}, [-1, 0, 2.5], [float("nan"), float("inf"), True, "1", None], "a number"),
    ],
)
def test_check_number(kwargs: dict[str, Any], good: list[object], bad: list[object], allowed: str) -> None:
    for value in good:
        check_number(Owner(value), "value", **kwargs)
    for value in bad:
        err = _error(check_number, value, **kwargs)
        assert err.fix == f"pass value= {allowed}.", value


def test_check_number_options() -> None:
    assert _error(check_number, -1, low=0, example=4.0).fix == "pass value= a number >= 0, e.g. 4.0."
    assert _error(check_number, 2, high=1, optional=True).fix == "pass value= a number <= 1, or None."
    check_number(Owner(None), "value", optional=True)
    with pytest.raises(ValueError, match="bounds"):
        check_number(Owner(1), "value", low=0, bounds="<>")


@pytest.mark.parametrize("value", [-0.1, 1, 1.0, float("nan"), "0.5", True])
def test_check_fraction(value: object) -> None:
    assert "a fraction in [0, 1)" in _error(check_fraction, value).fix


def test_check_choice() -> None:
    assert _error(check_choice, "c", choices=("a", "b")).fix == "pass value= 'a' or 'b'."
    assert "7 or 8" in _error(check_choice, 6, choices=(7, 8)).fix
    _error(check_choice, True, choices=(1, 2))  # True is not the choice 1
    check_choice(Owner(8), "value", (7, 8))
    check_choice(Owner(8.0), "value", (7, 8))  # equal numbers are the same choice, as with `in`


def test_check_type() -> None:
    assert _error(check_type, {"size": 2}, cls=Inner).fix == "pass value= a Inner."
    assert _error(check_type, 3, cls=Inner, optional=True).fix == "pass value= a Inner, or None."
    check_type(Owner(Inner()), "value", Inner)


def test_str_tuple_normalises_and_writes_back() -> None:
    owner = Owner(["a", "b"])
    assert str_tuple(owner, "value") == ("a", "b") and owner.value == ("a", "b")
    given = Owner(["kept"])
    assert str_tuple(given, "value", ["x"]) == ("x",) and given.value == ["kept"]  # a given value is not written
    for value in ("one string", [1], None):
        assert "a list of strings" in _error(str_tuple, value).fix


def test_int_tuple() -> None:
    owner = Owner([5, 2])
    assert int_tuple(owner, "value", min=0, distinct=True, sort=True) == (2, 5) and owner.value == (2, 5)
    assert int_tuple(Owner(None), "value", optional=True) is None
    assert "distinct integers >= 0" in _error(int_tuple, [1, 1], min=0, distinct=True).fix
    assert ">= 1" in _error(int_tuple, [0], min=1).fix
    for value in ([], [1.5], "12", [True]):
        _error(int_tuple, value)
    assert _error(int_tuple, [], allowed="layer numbers", optional=True).fix == "pass value= layer numbers, or None."


def test_number_tuple() -> None:
    owner = Owner([0.5, 1])
    assert number_tuple(owner, "value", low=0, high=1, bounds="(]") == (0.5, 1) and owner.value == (0.5, 1)
    assert number_tuple(Owner(None), "value", optional=True) is None
    assert "a non-empty list of numbers in (0, 1]" in _error(number_tuple, [0], low=0, high=1, bounds="(]").fix
    for value in ([], [float("nan")], "1", [True]):
        _error(number_tuple, value)


def test_a_named_owner_needs_the_value() -> None:
    with pytest.raises(TypeError):
        check_bool("Distillation", "cache")


# ---------------------------------------------------------------- versioned dict form


def test_to_dict_is_versioned_and_json_ready() -> None:
    config = Outer(names=["a"], inner=Inner(3), ratio=0.25)  # type: ignore[arg-type]
    data = config.to_dict()
    assert data == config_to_dict(config)
    assert list(data) == ["version", "kind", "names", "inner", "ratio"]
    assert data == {"version": 2, "kind": "outer", "names": ["a"], "inner": {"version": 1, "size": 3}, "ratio": 0.25}
    assert json.loads(json.dumps(data)) == data
    assert Inner().to_dict() == {"version": 1, "size": 2}  # no name field: no name key


@pytest.mark.parametrize("config", [Outer(), Outer(names=("x", "y"), inner=Inner(7), ratio=0.0), Other(flag=True)])
def test_round_trip(config: Config) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert config_from_dict(REGISTRY, data, what="thing") == config
    assert type(config).from_dict(data) == config


def test_a_dict_without_version_is_an_old_recipe() -> None:
    assert config_from_dict(REGISTRY, {"kind": "outer", "inner": {"size": 4}}, what="thing") == Outer(inner=Inner(4))
    # read as version 1, which the class upgrades
    assert config_from_dict(REGISTRY, {"kind": "outer", "share": 0.1}, what="thing") == Outer(ratio=0.1)
    assert config_from_dict(REGISTRY, {"version": 1, "kind": "outer", "share": 0.1}, what="thing") == Outer(ratio=0.1)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"kind": "outer", "colour": "red"}, ["Outer", "'colour'", "another version of infopt"]),
        ({"version": 2, "kind": "outer", "inner": {"size": 1, "depth": 3}}, ["Inner", "'depth'", "another version"]),
        ({"version": 3, "kind": "outer"}, ["Outer", "version 3", "another version of infopt"]),
        ({"kind": "outer", "inner": {"version": 2}}, ["Inner", "version 2", "another version"]),
        ({"version": "2", "kind": "outer"}, ["version '2'", "another version"]),
        ({"kind": "newer"}, ["'newer'", "another version of infopt"]),
    ],
)
def test_another_version_is_one_clear_error(data: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(UserError) as info:
        config_from_dict(REGISTRY, data, what="thing")
    for word in words:
        assert word in info.value.problem
    assert "re-create the model with this version of infopt" in info.value.fix


def test_a_step_without_a_name() -> None:
    with pytest.raises(UserError, match="no thing"):
        config_from_dict(REGISTRY, {"ratio": 0.5}, what="thing")
    with pytest.raises(UserError):
        config_from_dict(REGISTRY, ["kind"], what="thing")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="cannot read"):
        Outer.from_dict({"kind": "other"})


def test_config_from_name() -> None:
    assert config_from_name(REGISTRY, "outer", {}, what="thing") == Outer()
    assert config_from_name(REGISTRY, "outer", {"inner": {"size": 5}}, what="thing") == Outer(inner=Inner(5))
    with pytest.raises(UserError) as info:
        config_from_name(REGISTRY, "nope", {}, what="thing")
    assert "Unknown thing 'nope'" in info.value.problem and "outer, other" in info.value.fix
    with pytest.raises(UserError) as info:
        config_from_name(REGISTRY, "other", {"colour": 1}, what="thing")
    assert "has no option colour" in info.value.problem and "flag" in info.value.fix
    with pytest.raises(UserError, match="Inner has no option depth"):
        config_from_name(REGISTRY, "outer", {"inner": {"depth": 1}}, what="thing")
    with pytest.raises(UserError, match=r"Outer\.ratio"):
        config_from_name(REGISTRY, "outer", {"ratio": 2}, what="thing")


def test_a_registry_shares_one_name_field() -> None:
    with pytest.raises(TypeError):
        config_from_dict({"inner": Inner()}, {"kind": "inner"}, what="thing")
