"""A config field's command-line form.

`bench zoo build KIND` and `bench zoo import FORMAT` take their flags from the dataclass fields of a zoo
kind's config (or an importer's options) declared with `option(...)`: the field, its default, the flag and
its help text are one declaration, so a preset's recipe and the command line mean the same when an option
is left out.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Flag:
    name: str  # "--nets"
    help: str  # "{default}" stands for the field's default, written as the command line writes it
    type: type = str  # int | float | str | pathlib.Path
    low: float | None = None  # numbers: the accepted range, [low, high] ((low, high] for floats unless include_low)
    high: float | None = None
    include_low: bool = False
    nargs: int | str | None = None
    choices: tuple | None = None
    metavar: str | tuple[str, ...] | None = None
    required: bool = False
    negates: bool = False  # a boolean field the flag sets to False (--no-batchnorm)


def option(default: Any, flag: str, help: str, **kwargs) -> Any:
    """A dataclass field with its command-line flag (`Flag`'s other fields as keywords)."""
    return field(default=default, metadata={"flag": Flag(flag, help, **kwargs)})


def redefault(config: type, name: str, default: Any) -> Any:
    """Field `name` of dataclass `config` (its flag included) with another default, for a subclass."""
    [base] = [f for f in fields(config) if f.name == name]
    return field(default=default, metadata=base.metadata)


def flagged(config: type) -> dict[str, tuple[Field, Flag]]:
    """The fields of `config` that have a flag: name -> (field, flag), in field order."""
    return {f.name: (f, f.metadata["flag"]) for f in fields(config) if "flag" in f.metadata}


def written(value: Any) -> str:
    """A default as the command line writes it: `0.1 0.25` for a tuple."""
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def help_text(config_field: Field, flag: Flag) -> str:
    default = None if config_field.default is MISSING else config_field.default
    return flag.help.replace("{default}", written(default))
