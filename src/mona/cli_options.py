"""Command-line options generated from the option dataclasses: each flag's name, help and default come from a field
declared with `mona.config.opt`, so that none is written twice (the idea of sparsify's config.py, on Typer)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from mona.config import option_fields


@dataclass(frozen=True)
class Generated:
    """One generated option: the command's parameter, the flag, and the field it stands for."""

    param: str
    flag: str
    cls: type
    field: str
    method_default: bool  # the default is the method's: None on the command line, the field's default if unset
    required: bool = False  # the command line must give it, although the library has a default


def generated(cls: type, *, prefix: str | None = None, only: Iterable[str] | None = None, skip: Iterable[str] = (),
              required: Iterable[str] = (), method_default: bool = False) -> list[Generated]:
    """The options of `cls`'s `opt` fields (only those in `only`, none in `skip`), named `--<prefix>-<field>`
    (or the field's own `cli` flag). `required`: fields the command line must be given although the library has
    a default. `method_default`: the options of one method among several (their default is shown in the help,
    and applies only to that method)."""
    only = set(only) if only is not None else None
    required = set(required)
    out = []
    for f in option_fields(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        flag = f.metadata["cli"] or "--" + (f"{prefix}_{f.name}" if prefix else f.name).replace("_", "-")
        out.append(Generated(flag[2:].replace("-", "_"), flag, cls, f.name, method_default, f.name in required))
    return out


def _field(g: Generated) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(g.cls) if f.name == g.field)


def parameter(g: Generated) -> inspect.Parameter:
    """The Typer parameter of one generated option."""
    f = _field(g)
    kind = typing.get_type_hints(g.cls)[g.field]
    help_text = f.metadata["help"]
    default = f.default
    decls = [g.flag]
    if kind is bool and default is True:
        decls = [f"{g.flag}/--no-{g.flag[2:]}"]
    if g.method_default and kind is not bool:
        help_text = f"{help_text} [default: {default}]"
        kind, default = kind | None, None
    show = not g.method_default
    if g.required or default is dataclasses.MISSING:
        default = inspect.Parameter.empty
    info = typer.Option(*decls, help=help_text, show_default=show)
    return inspect.Parameter(g.param, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, info])


def with_options(*groups: list[Generated]) -> Callable[[Callable], Callable]:
    """Give a command (whose own parameters end in `**values`) the generated options of `groups` too; they
    arrive in `values` by parameter name."""
    options = [g for group in groups for g in group]

    def wrap(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        fn.__signature__ = inspect.Signature([*own, *(parameter(g) for g in options)])  # type: ignore[attr-defined]
        fn.__options__ = options  # type: ignore[attr-defined]  # for values_of and the tests
        return fn

    return wrap


def values_of(options: Iterable[Generated], values: dict[str, Any], cls: type) -> dict[str, Any]:
    """The values given to the options of `cls`, by field name (a method's own options only where given)."""
    out = {}
    for g in options:
        if g.cls is not cls:
            continue
        value = values[g.param]
        if g.method_default and (value is None or value is False):
            continue  # not given: the method's own default applies
        out[g.field] = value
    return out
