"""Command-line options of an evaluation suite, declared on the fields of its config.

A suite's config is a dataclass that owns every default. A field becomes an option of
``shopsearch eval`` when its annotation carries an :func:`option`; the option's help is the
field's description and its default the field's default::

    @dataclass(frozen=True)
    class MyConfig:
        workspace: Annotated[Path, option("Simulated workspace", flags=("--workspace", "-w"))]
        epochs: Annotated[int, option("Most training epochs per model")] = 2
        n_resamples: int = 200  # no option: set from Python only

The CLI shows those defaults and passes only the values given on the command line, so what a
run uses is always the config's default. How a field's type is spelled on the command line:

* ``int``, ``float``, ``str``, ``Path``, or ``X | None`` of one of them: one value;
* ``list[X]``: the option repeated (``--test A.csv --test B.csv``);
* ``tuple[X, ...]``: a comma list (``--models dnn,lightgbm``); ``tuple[X, X]`` a comma list of
  exactly two.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from shopsearch.errors import InvalidInputError

#: How a field's value is spelled on the command line (see the module docstring).
Kind = Literal["value", "repeated", "comma"]
_SCALARS: tuple[type, ...] = (str, int, float, Path)
_EXAMPLES: dict[type, str] = {int: "1,2", float: "0.05,0.1", str: "a,b", Path: "a.csv,b.csv"}
_METAVARS: dict[type, str] = {int: "N", float: "X", str: "TEXT", Path: "FILE"}


class _Required:
    """The default of a field without one."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: The :attr:`SuiteOption.default` of a field the config requires.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class OptionInfo:
    """What :func:`option` attaches to a config field (see :func:`option`)."""

    help: str
    flags: tuple[str, ...] = ()
    default_text: str | None = None
    metavar: str | None = None
    low: float | None = None
    high: float | None = None


def option(
    help: str,
    *,
    flags: tuple[str, ...] = (),
    default_text: str | None = None,
    metavar: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> OptionInfo:
    """Mark a config field as a command-line option: ``Annotated[int, option("...")]``.

    Args:
        help: what the field is, as a phrase (the CLI adds the datasets it applies to and,
            where needed, its default).
        flags: the option's names, long first (default ``--field-name``), e.g.
            ``("--workspace", "-w")``.
        default_text: how the help states a default that is not a plain value, e.g.
            ``"every model"`` for an empty tuple.
        metavar: how messages name the value (``--workspace W``); default from the type:
            ``FILE``, ``N``, ``X`` or ``TEXT``.
        low: least value allowed (numbers).
        high: largest value allowed (numbers).
    """
    return OptionInfo(help, tuple(flags), default_text, metavar, low, high)


@dataclass(frozen=True)
class SuiteOption:
    """One command-line option of a suite's config.

    Attributes:
        field: the config field it sets.
        flags: its names, long first.
        help: the field's description.
        kind: how the value is spelled (see the module docstring).
        value_type: the type of one value (``int``, ``float``, ``str`` or ``Path``).
        length: how many values a fixed-length comma list holds (``None``: any).
        optional: whether the field also takes ``None``.
        default: the field's default, :data:`REQUIRED` when it has none.
        default_text: how the help states the default (``None``: the value itself).
        metavar: how messages name the value.
        low: least value allowed.
        high: largest value allowed.
    """

    field: str
    flags: tuple[str, ...]
    help: str
    kind: Kind
    value_type: type
    length: int | None
    optional: bool
    default: Any
    default_text: str | None
    metavar: str
    low: float | None
    high: float | None

    @property
    def flag(self) -> str:
        """The long name, e.g. ``--workspace``."""
        return self.flags[0]

    @property
    def usage(self) -> str:
        """The option with its value, as a message shows it: ``--train FILE``."""
        return f"{self.flag} {self.metavar}"

    @property
    def required(self) -> bool:
        """Whether the config has no default for it."""
        return self.default is REQUIRED

    @property
    def cli_type(self) -> Any:
        """The type the command line parses the option as."""
        if self.kind == "comma":
            return str
        if self.kind == "repeated":
            return list[self.value_type]  # type: ignore[name-defined]
        if self.optional or self.default is None:
            return self.value_type | None
        return self.value_type

    @property
    def cli_default(self) -> Any:
        """The default as the command line spells it (``None`` for none)."""
        if self.required or self.default is None:
            return None
        if self.kind == "comma":
            return ",".join(str(v) for v in self.default)
        if self.kind == "repeated":
            return list(self.default) or None
        return self.default

    def describe_default(self) -> str | None:
        """The default for a help text: ``default_text``, else the value; ``None`` when the
        field is required or its default is empty."""
        if self.default_text is not None:
            return self.default_text
        shown = self.cli_default
        return None if shown in (None, "") else str(shown)

    def parse(self, value: Any) -> Any:
        """The field value of a command-line value: a value of :attr:`cli_type`, or text.

        Raises:
            InvalidInputError: for text that is not a comma list of the right values or
                length, or not a value of the field's type.
        """
        if value is None:
            return None
        if self.kind == "comma":
            return self._comma(str(value))
        if self.kind == "repeated":
            values = [value] if isinstance(value, str | Path) else list(value)
            return [self._one(v) for v in values]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        if not isinstance(value, str) or self.value_type is str:
            return value
        try:
            return self.value_type(value)
        except ValueError:
            what = "an integer" if self.value_type is int else "a number"
            raise InvalidInputError(
                f"{self.flag} {value!r} is not {what}; give {what}, e.g. "
                f"{_EXAMPLES[self.value_type].split(',')[0]}"
            ) from None

    def _comma(self, text: str) -> tuple[Any, ...]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        example = (self.cli_default if self.default_text is None else None) or _EXAMPLES[
            self.value_type
        ]
        if self.length is not None and len(parts) != self.length:
            raise InvalidInputError(
                f"{self.flag} {text!r} names {len(parts)} value(s); give {self.length} as a "
                f"comma list, e.g. {example}"
            )
        try:
            return tuple(self.value_type(p) for p in parts)
        except ValueError:
            raise InvalidInputError(
                f"{self.flag} {text!r} is not a comma list of "
                f"{'numbers' if self.value_type in (int, float) else 'values'}; use e.g. {example}"
            ) from None


def suite_options(config_type: type) -> list[SuiteOption]:
    """The command-line options of a config dataclass, in field order.

    Raises:
        InvalidInputError: when ``config_type`` is not a dataclass, or an option's field has a
            type the command line cannot spell.
    """
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
        raise InvalidInputError(
            f"{config_type!r} is not a dataclass; declare a suite's config with @dataclass"
        )
    hints = typing.get_type_hints(config_type, include_extras=True)
    options: list[SuiteOption] = []
    for field in dataclasses.fields(config_type):
        hint = hints[field.name]
        if typing.get_origin(hint) is not Annotated:
            continue
        base, *extras = typing.get_args(hint)
        info = next((e for e in extras if isinstance(e, OptionInfo)), None)
        if info is None:
            continue
        kind, value_type, length, optional = _shape(base, f"{config_type.__name__}.{field.name}")
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = REQUIRED
        options.append(
            SuiteOption(
                field=field.name,
                flags=info.flags or ("--" + field.name.replace("_", "-"),),
                help=info.help,
                kind=kind,
                value_type=value_type,
                length=length,
                optional=optional,
                default=default,
                default_text=info.default_text,
                metavar=info.metavar or _METAVARS[value_type],
                low=info.low,
                high=info.high,
            )
        )
    return options


def _shape(hint: Any, where: str) -> tuple[Kind, type, int | None, bool]:
    """``(kind, value type, fixed length, optional)`` of a field type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        if inner in _SCALARS:
            return "value", inner, None, True
    if hint in _SCALARS:
        return "value", hint, None, False
    if origin is list and len(args) == 1 and args[0] in _SCALARS:
        return "repeated", args[0], None, False
    if origin is tuple and args and args[0] in _SCALARS:
        if len(args) == 2 and args[1] is Ellipsis:
            return "comma", args[0], None, False
        if all(a is args[0] for a in args):
            return "comma", args[0], len(args), False
    raise InvalidInputError(
        f"{where} has type {hint!r}, which no command-line option spells; give an option "
        "field int, float, str, Path, X | None, list[X] or tuple[X, ...] of those"
    )


__all__ = ["REQUIRED", "Kind", "OptionInfo", "SuiteOption", "option", "suite_options"]
