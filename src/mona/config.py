"""Options as dataclasses, the one place each default is written: a field declared with `opt` carries its help
line, and the command line builds its options (names, help, defaults) from those fields (mona.cli_options)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from mona.errors import ConfigError

T = TypeVar("T")
REQUIRED: Any = dataclasses.MISSING  # `opt(REQUIRED, ...)`: an option without a default
# what every --device takes (mona.models.loader.resolve_device), for their help lines
DEVICES = "auto (cuda if torch sees a GPU, else cpu), cpu, cuda, cuda:N or mps (Apple silicon; untested so far)"


def opt(default: Any, help: str, *, cli: str | None = None) -> Any:
    """A dataclass field that is also a command-line option: `help` is its one-line help, `cli` its flag when
    that is not the field's name (e.g. "--subtask-field" for `group_field`)."""
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli})


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a dataclass declared with `opt` (those that are options)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def unknown_option(name: str, known: list[str], where: str) -> ConfigError:
    """The error for an option no one takes, with the nearest known name when there is one."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
    return ConfigError(f"unknown option {name!r} for {where}{hint}")


def build(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """`cls(**values)`, but a name that is not one of its fields is a ConfigError naming the nearest one."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for name in values:
        if name not in names:
            raise unknown_option(name, names, where)
    return cls(**values)


def comma_ints(text: str, flag: str, *, allow: tuple[str, ...] = ()) -> list[int | str]:
    """The comma-separated integers of an option (and the words in `allow`, kept as they are); ConfigError naming
    `flag` for anything else."""
    out: list[int | str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part in allow:
            out.append(part)
            continue
        try:
            out.append(int(part))
        except ValueError:
            words = " (or " + ", ".join(repr(a) for a in allow) + ")" if allow else ""
            raise ConfigError(f"{flag} must be comma-separated integers{words}, got {text!r}") from None
    return out

