"""What every config dataclass of infopt shares: field checks and the versioned dict form of saved recipes.

Field checks, called from a frozen dataclass's `__post_init__` (the value is read from `owner.field`, or given):

    check_bool(self, "optimize")
    check_int(self, "steps", min=1)
    check_number(self, "lr", low=0, bounds="(]", example=1e-4)     # a finite number > 0
    check_fraction(self, "sparsity")                               # a finite number in [0, 1)
    check_choice(self, "scope", ("layer", "row", "global"))
    check_type(self, "recovery", RecoveryConfig, optional=True)
    str_tuple(self, "exclude")                                     # also writes the tuple back
    int_tuple(self, "layers", min=0, distinct=True)                # likewise
    number_tuple(self, "alphas", low=0, high=1, bounds="(]")       # likewise

Each raises `UserError("Cls.field is <value>, which is not allowed.", "pass field= <what is allowed>.")`. An owner
given as a string (e.g. "Distillation") names the value of a plain function argument instead of a config field.

Dict form (`Config.to_dict`, `config_to_dict`): `{"version": N, <name field>: name, **fields}` with tuples as
lists and nested configs as dicts, e.g. `{"version": 1, "scheme": "weight-int4", "exclude": [], ...}`.
`config_from_dict(registry, data, ...)` reads it back (and recipes saved before versions existed, which have no
`version`); `config_from_name(registry, name, overrides, ...)` builds a registered config with some fields set.
A field or a version this code does not know means the folder was written by another version of infopt.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from infopt.errors import UserError

__all__ = [
    "CALIBRATION",
    "TRAIN",
    "Config",
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_number",
    "check_str",
    "check_type",
    "config_from_dict",
    "config_from_name",
    "config_to_dict",
    "field_error",
    "int_tuple",
    "number_tuple",
    "read_toml",
    "str_tuple",
]

C = TypeVar("C", bound="Config")

_OWNER: Any = object()
"""Default of the `value` argument of the checks: read `owner.field`."""

CALIBRATION = "calibration"
"""Member of a config's `needs()`: it reads calibration texts (`calibration=`)."""
TRAIN = "train"
"""Member of a config's `needs()`: it reads the (labelled, where the task has labels) train split (`train=`)."""

RECREATE = "re-create the model with this version of infopt (or load the folder with the version that saved it)."


# ---------------------------------------------------------------- field checks


def _where(owner: object, field: str) -> str:
    return f"{owner} {field}" if isinstance(owner, str) else f"{type(owner).__name__}.{field}"


def field_error(owner: object, field: str, value: object, allowed: str) -> UserError:
    """The error of every check: `Cls.field is <value>, which is not allowed.` / `pass field= <allowed>.`"""
    return UserError(f"{_where(owner, field)} is {value!r}, which is not allowed.", f"pass {field}= {allowed}.")


def _value(owner: object, field: str, value: object) -> Any:
    if value is not _OWNER:
        return value
    if isinstance(owner, str):
        raise TypeError(f"check of {owner} {field}: pass the value when the owner is a name")
    return getattr(owner, field)


def _write_back(owner: object, field: str, given: object, value: object) -> None:
    """Store the normalised value on a (frozen) dataclass when the check read it from there."""
    if given is _OWNER:
        object.__setattr__(owner, field, value)


def _or_none(allowed: str, optional: bool) -> str:
    return f"{allowed}, or None" if optional else allowed


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range(low: float | None, high: float | None, bounds: str) -> str:
    """`" in [0, 1)"`, `" > 0"`, `" <= 1"` or `""`."""
    if len(bounds) != 2 or bounds[0] not in "[(" or bounds[1] not in "])":
        raise ValueError(f"bounds must be one of '[]', '[)', '(]', '()', not {bounds!r}")
    if low is not None and high is not None:
        return f" in {bounds[0]}{_num(low)}, {_num(high)}{bounds[1]}"
    if low is not None:
        return f" {'>' if bounds[0] == '(' else '>='} {_num(low)}"
    if high is not None:
        return f" {'<' if bounds[1] == ')' else '<='} {_num(high)}"
    return ""


def _in_range(x: float, low: float | None, high: float | None, bounds: str) -> bool:
    if low is not None and not (x > low if bounds[0] == "(" else x >= low):
        return False
    return high is None or (x < high if bounds[1] == ")" else x <= high)


def check_bool(owner: object, field: str, value: Any = _OWNER) -> None:
    """True or False (not 0 / 1 / "yes")."""
    value = _value(owner, field, value)
    if not isinstance(value, bool):
        raise field_error(owner, field, value, "True or False")


def check_int(owner: object, field: str, value: Any = _OWNER, *, min: int | None = None,
              optional: bool = False, allowed: str | None = None) -> None:
    """An integer (not a bool), `>= min` when given; None too when `optional`."""
    value = _value(owner, field, value)
    if optional and value is None:
        return
    if not _is_int(value) or (min is not None and value < min):
        text = allowed or ("an integer" + (f" >= {min}" if min is not None else ""))
        raise field_error(owner, field, value, _or_none(text, optional))


def check_number(owner: object, field: str, value: Any = _OWNER, *, low: float | None = None,
                 high: float | None = None, bounds: str = "[]", optional: bool = False,
                 example: object = None, allowed: str | None = None) -> None:
    """A finite number (int or float, not a bool) between `low` and `high`; `bounds` says which ends are open:
    `"[]"` closed, `"[)"`, `"(]"`, `"()"` (e.g. `low=0, bounds="(]"` is > 0). None too when `optional`."""
    value = _value(owner, field, value)
    text = allowed or ("a number" + _range(low, high, bounds) + (f", e.g. {example}" if example is not None else ""))
    if optional and value is None:
        return
    if not _is_number(value) or not _in_range(value, low, high, bounds):
        raise field_error(owner, field, value, _or_none(text, optional))


def check_fraction(owner: object, field: str, value: Any = _OWNER) -> None:
    """A finite number in [0, 1), e.g. the share of weights, heads or warm-up steps."""
    check_number(owner, field, value, low=0, high=1, bounds="[)", allowed="a fraction in [0, 1), e.g. 0.5")


def check_choice(owner: object, field: str, choices: Sequence[object], value: Any = _OWNER) -> None:
    """One of `choices` (True is not 1 here)."""
    value = _value(owner, field, value)
    is_bool = isinstance(value, bool)
    if not any(value == c and is_bool == isinstance(c, bool) for c in choices):
        raise field_error(owner, field, value, " or ".join(map(repr, choices)))


def check_str(owner: object, field: str, value: Any = _OWNER, *, optional: bool = False,
              allowed: str = "a non-empty string") -> None:
    """A string that is not empty or blank; None too when `optional`."""
    value = _value(owner, field, value)
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise field_error(owner, field, value, allowed)


def check_type(owner: object, field: str, cls: type, value: Any = _OWNER, *, optional: bool = False) -> None:
    """An instance of `cls` (e.g. a nested config); None too when `optional`."""
    value = _value(owner, field, value)
    if not (isinstance(value, cls) or (optional and value is None)):
        raise field_error(owner, field, value, _or_none(f"a {cls.__name__}", optional))


def _sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def str_tuple(owner: object, field: str, value: Any = _OWNER) -> tuple[str, ...]:
    """A list or tuple of strings (not one string), returned (and written back) as a tuple."""
    given, value = value, _value(owner, field, value)
    if not _sequence(value) or not all(isinstance(v, str) for v in value):
        raise field_error(owner, field, value, "a list of strings")
    out = tuple(value)
    _write_back(owner, field, given, out)
    return out


def int_tuple(owner: object, field: str, value: Any = _OWNER, *, min: int | None = None,
              distinct: bool = False, sort: bool = False, optional: bool = False,
              allowed: str | None = None) -> tuple[int, ...] | None:
    """A non-empty list or tuple of integers (each `>= min`; no repeats when `distinct`), returned (and written
    back) as a tuple, sorted when `sort`; None too when `optional`."""
    given, value = value, _value(owner, field, value)
    if optional and value is None:
        return None
    ok = (_sequence(value) and len(value) > 0 and all(_is_int(v) and (min is None or v >= min) for v in value)
          and (not distinct or len(set(value)) == len(value)))
    if not ok:
        text = allowed or (f"a non-empty list of {'distinct ' if distinct else ''}integers"
                           + (f" >= {min}" if min is not None else ""))
        raise field_error(owner, field, value, _or_none(text, optional))
    out = tuple(sorted(value) if sort else value)
    _write_back(owner, field, given, out)
    return out


def number_tuple(owner: object, field: str, value: Any = _OWNER, *, low: float | None = None,
                 high: float | None = None, bounds: str = "[]", optional: bool = False,
                 allowed: str | None = None) -> tuple[float, ...] | None:
    """A non-empty list or tuple of finite numbers, each between `low` and `high` (see `check_number`), returned
    (and written back) as a tuple; None too when `optional`."""
    given, value = value, _value(owner, field, value)
    if optional and value is None:
        return None
    if not _sequence(value) or not value or not all(_is_number(v) and _in_range(v, low, high, bounds) for v in value):
        text = allowed or "a non-empty list of numbers" + _range(low, high, bounds)
        raise field_error(owner, field, value, _or_none(text, optional))
    out = tuple(value)
    _write_back(owner, field, given, out)
    return out


# ---------------------------------------------------------------- versioned dict form


class Config:
    """Base of infopt's config dataclasses (no fields of its own): a version, `to_dict` and `from_dict`.

    Subclasses are frozen dataclasses. Bump `version` when a field is renamed or changes meaning, and teach
    `upgrade` to turn the dict of an older version into the current one.
    """

    version: ClassVar[int] = 1
    """Version of the dict form; a dict without one (saved before versions existed) reads as version 1."""
    name_field: ClassVar[str] = ""
    """A ClassVar naming the registered config (`scheme`, `method`), written right after `version`; "" if none."""

    def to_dict(self) -> dict[str, Any]:
        """`{"version": N, <name field>: name, **fields}`, JSON-ready (as stored in a manifest's recipe)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of `to_dict` for this class (the name field, if present, must be this class's)."""
        rest = dict(data)
        if cls.name_field and cls.name_field in rest:
            name = rest.pop(cls.name_field)
            if name != getattr(cls, cls.name_field):
                raise UserError(f"{cls.__name__} cannot read a recipe step of {cls.name_field} {name!r}.",
                                f"read it with the config class of {name!r}.")
        return _from_fields(cls, rest, recipe=True)

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """The fields of a dict of an older `version` of this class, in the current form (none so far)."""
        return data


def _plain(value: object) -> object:
    if isinstance(value, Config):
        return config_to_dict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """`{"version": N, <name field>: name, **fields}`: tuples as lists, nested configs as their own dicts."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    out: dict[str, Any] = {"version": type(config).version}
    if config.name_field:
        out[config.name_field] = getattr(config, config.name_field)
    for f in dataclasses.fields(config):
        out[f.name] = _plain(getattr(config, f.name))
    return out


_NESTED: dict[type, dict[str, type[Config]]] = {}


def _nested(cls: type) -> dict[str, type[Config]]:
    """Field name -> the Config class it holds (`RecoveryConfig | None` -> RecoveryConfig), for this class."""
    if cls in _NESTED:
        return _NESTED[cls]
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # an annotation names something imported only for type checking: no nested configs known
        hints = {}
    out: dict[str, type[Config]] = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        options = typing.get_args(hint) or (hint,)
        configs = [t for t in options if isinstance(t, type) and issubclass(t, Config)]
        if len(configs) == 1:
            out[f.name] = configs[0]
    _NESTED[cls] = out
    return out


def _other_version(problem: str) -> UserError:
    return UserError(f"{problem} The folder was saved by another version of infopt.", RECREATE)


def _from_fields(cls: type[C], data: Mapping[str, Any], *, recipe: bool, name: str = "") -> C:
    """`cls(**data)`, nested dicts read into their config classes.

    `recipe`: `data` was saved (a `version` key is expected, its absence means a recipe saved before versions
    existed; an unknown field means another version of infopt); else `data` are options the user gave.
    """
    rest = dict(data)
    label = f"{cls.__name__}" + (f" ({name})" if name else "")
    if recipe:
        version = rest.pop("version", 1)  # none: saved before versions existed, i.e. in the form of version 1
        if not _is_int(version) or version < 1:
            raise _other_version(f"The recipe's {label} has version {version!r}, which infopt never writes.")
        if version > cls.version:
            raise _other_version(f"The recipe's {label} is version {version}; this infopt reads up to version "
                                 f"{cls.version}.")
        if version < cls.version:
            rest = cls.upgrade(rest, version)
    known = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    unknown = sorted(set(rest) - set(known))
    if unknown:
        if recipe:
            field = "fields" if len(unknown) > 1 else "field"
            raise _other_version(f"The recipe's {label} has the {field} {', '.join(map(repr, unknown))}, which this "
                                 f"version of infopt does not know (it knows {', '.join(known) or 'none'}).")
        raise UserError(f"{label} has no option {', '.join(unknown)}.", f"use only {', '.join(known) or 'no options'}.")
    nested = _nested(cls)
    for key, value in rest.items():
        if key in nested and isinstance(value, Mapping):
            rest[key] = _from_fields(nested[key], value, recipe=recipe)
    return cls(**rest)


def config_from_name(registry: Mapping[str, C], name: str, overrides: Mapping[str, Any], *, what: str) -> C:
    """The config registered as `name` (`registry`: name -> default config) with `overrides` as its fields.

    `what` names the registry in messages (e.g. "quantization scheme"); nested configs may be given as dicts.
    An unknown name or option is a UserError listing the valid ones.
    """
    if name not in registry:
        raise UserError(f"Unknown {what} {name!r}.", f"use one of: {', '.join(registry)}.")
    cls = type(registry[name])
    return _from_fields(cls, overrides, recipe=False, name=f"{what} {name!r}")


def config_from_dict(registry: Mapping[str, C], data: Mapping[str, Any], *, what: str) -> C:
    """Inverse of `to_dict` for any config in `registry` (name -> default config), as read from a recipe.

    `data` without `version` was saved before versions existed and is read as version 1 (the form of then). A
    missing name is a UserError; an unknown name or field, or a newer version, says the folder was saved by another
    version of infopt.
    """
    if not isinstance(data, Mapping):
        raise UserError(f"A step of the recipe holds {data!r} where a {what} config should be.", RECREATE)
    key = _name_field(registry)
    rest = dict(data)
    name = rest.pop(key, None)
    if not isinstance(name, str):
        raise UserError(f"A step of the recipe has no {what} ({key} is missing from {dict(data)!r}).", RECREATE)
    if name not in registry:
        raise _other_version(f"The recipe names the {what} {name!r}, which this version of infopt does not know "
                             f"(it knows {', '.join(registry)}).")
    return _from_fields(type(registry[name]), rest, recipe=True, name=f"{what} {name!r}")


def _name_field(registry: Mapping[str, Config]) -> str:
    keys = {type(c).name_field for c in registry.values()}
    if len(keys) != 1 or "" in keys:
        raise TypeError(f"the configs of a registry must share one name field, not {sorted(keys)}")
    return keys.pop()


def read_toml(path: str | Path, what: str, fix: str) -> dict[str, Any]:
    """The TOML file at `path` as a dict; UserError naming `what` (e.g. "the server config") and, for a file that
    cannot be read, `fix`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise UserError(f"Cannot read {what} {path} ({e.strerror}).", fix) from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML ({e}).", "fix the syntax at that line.") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what.capitalize()} {path} is not UTF-8 text ({e.reason} at byte {e.start}).",
                        "save it as UTF-8 TOML.") from None
    except RecursionError:
        raise UserError(f"{path} nests arrays or tables too deeply to read.", "flatten it.") from None
