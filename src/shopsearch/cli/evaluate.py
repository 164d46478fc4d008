"""``shopsearch eval SUITE ... --report FILE``: the registered evaluation suites as commands.

The commands are built from :data:`~shopsearch.evaluate.suite.SUITES` when they are looked up,
so a registered suite (built-in, ``@SUITES.register()`` or an entry point) is a command with no
change here:

* the suite ``name`` is ``shopsearch eval name``;
* the suites ``family/dataset`` share ``shopsearch eval family --dataset dataset`` (default: the
  family's first suite), whose options are the union of theirs; ``shopsearch eval
  family/dataset`` runs one of them alone;
* ``shopsearch eval package.module:MySuite`` runs an outside suite by dotted path.

An option is a field of the suite's config (:mod:`shopsearch.evaluate.options`), with the
field's help and default. Only the values given on the command line reach the config, so every
other value is the config's default. An option the chosen ``--dataset`` does not take, or a
missing one it needs, is an error naming the option, the dataset and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, say
from shopsearch.errors import InvalidInputError

if TYPE_CHECKING:
    from shopsearch.evaluate.options import SuiteOption
    from shopsearch.evaluate.suite import Suite

    #: The suites of one command by dataset (``None``: the suite of a command without one).
    Members = dict[str | None, type[Suite[Any]]]


class SuiteGroup(TyperGroup):
    """The ``eval`` group: a command per suite family, built from the registry on lookup.

    (``ctx`` and the commands are typer's vendored click types, which typer does not export.)
    """

    def list_commands(self, ctx: Any) -> list[str]:
        """Every family, in registry order."""
        return [*super().list_commands(ctx), *_families()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command of a family, of one suite (``family/dataset``) or of an outside suite
        (``package.module:Suite``); ``None`` for an unknown name."""
        from shopsearch.evaluate.suite import SUITES

        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        families = _families()
        if cmd_name in families:
            return _command(cmd_name, families[cmd_name])
        if cmd_name in SUITES or "." in cmd_name or ":" in cmd_name:
            return _command(cmd_name, {None: SUITES.get(cmd_name)})
        return None


eval_app = typer.Typer(
    cls=SuiteGroup, help="Evaluation suites; each writes a JSON report.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")


def _families() -> dict[str, Members]:
    """Family → its suites by dataset, in registry order.

    Raises:
        InvalidInputError: for a name that is not ``family`` or ``family/dataset``, or a suite
            ``family`` beside suites ``family/dataset``.
    """
    from shopsearch.evaluate.suite import SUITES

    families: dict[str, Members] = {}
    for name, suite in SUITES.items():
        family, slash, dataset = name.partition("/")
        if not family or "/" in dataset or (slash and not dataset):
            raise InvalidInputError(
                f"suite name {name!r} is not 'family' or 'family/dataset'; rename the suite"
            )
        members = families.setdefault(family, {})
        if members and (not dataset or None in members):
            raise InvalidInputError(
                f"suites {', '.join(s.name for s in members.values())} and {name} all claim "
                f"'shopsearch eval {family}'; name each of them '{family}/<dataset>'"
            )
        members[dataset or None] = suite
    return families


@dataclass(frozen=True)
class _Flag:
    """One option of a command: the suite option of each dataset that takes it."""

    param: str
    decls: tuple[str, ...]
    options: dict[str | None, SuiteOption]

    @property
    def flag(self) -> str:
        return self.decls[0]


def _flags(name: str, members: Members) -> list[_Flag]:
    """The command's options: the union of its suites', by flag, in first-seen order.

    Raises:
        InvalidInputError: for a flag ``shopsearch eval`` keeps (``--report``, ``--dataset``)
            or a short flag two options claim.
    """
    from shopsearch.evaluate.options import suite_options

    reserved = {"ctx", "report", *_CLUSTER_PARAMS} | (
        {"dataset"} if list(members) != [None] else set()
    )
    by_flag: dict[str, dict[str | None, SuiteOption]] = {}
    decls: dict[str, list[str]] = {}
    for dataset, suite in members.items():
        for option in suite_options(suite.config_type):
            if _param(option.flag) in reserved:
                raise InvalidInputError(
                    f"suite {suite.name!r} has an option {option.flag}, which 'shopsearch eval' "
                    "keeps for itself; give its config field another flag"
                )
            by_flag.setdefault(option.flag, {})[dataset] = option
            names = decls.setdefault(option.flag, [])
            names.extend(d for d in option.flags if d not in names)
    seen: dict[str, str] = {}
    for flag, names in decls.items():
        for decl in names:
            if seen.setdefault(decl, flag) != flag:
                raise InvalidInputError(
                    f"{decl} names both {seen[decl]} and {flag} of 'shopsearch eval {name}'; "
                    "give one of them another short flag"
                )
    return [_Flag(_param(flag), tuple(decls[flag]), options) for flag, options in by_flag.items()]


#: The options every ``shopsearch eval`` command adds to its suite's: where to run it.
_CLUSTER_PARAMS = ("ray_address", "workers")


def _cluster_params() -> list[inspect.Parameter]:
    """``--ray-address`` and ``--workers`` (:mod:`shopsearch.evaluate.parallel`)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    address = typer.Option(
        help="Run the suite's independent parts (models, bootstrap blocks) as Ray tasks: auto "
        "(the cluster this machine joined), HOST:PORT, or local (start one here); the report "
        'is the same as without it. Needs pip install "shopsearch[ray]".'
    )
    workers = typer.Option(help="CPUs of a local Ray instance (--ray-address local).", min=1)
    return [
        inspect.Parameter(
            "ray_address", keyword, annotation=Annotated[str | None, address], default=None
        ),
        inspect.Parameter("workers", keyword, annotation=Annotated[int, workers], default=2),
    ]


def _param(flag: str) -> str:
    """The Python name of an option: ``--batch-size`` → ``batch_size``."""
    return flag.lstrip("-").replace("-", "_")


def _typed_default(flag: _Flag, n_members: int) -> tuple[Any, Any]:
    """``(type, default)`` the command line parses the option with; the default is ``...`` when
    every suite requires it, ``None`` when the suites' defaults differ."""
    options = list(flag.options.values())
    types = {o.cli_type for o in options}
    if len(types) > 1:  # e.g. a market name for one dataset, a file for another: parse text
        return str | None, None
    (cli_type,) = types
    if len(options) == n_members and all(o.required for o in options):
        return cli_type, ...
    defaults = [o.cli_default for o in options]
    if any(o.required for o in options) or any(d != defaults[0] for d in defaults):
        return cli_type | None, None
    return cli_type | None if defaults[0] is None else cli_type, defaults[0]


def _help(flag: _Flag, datasets: list[str | None], default: Any) -> str:
    """The option's help: each suite's description, the datasets that take it when not all,
    and the defaults the command line cannot show as one value."""
    groups: dict[str, list[str | None]] = {}
    for dataset, option in flag.options.items():
        groups.setdefault(option.help.rstrip("."), []).append(dataset)
    has_datasets = datasets != [None]
    show_defaults = default in (None, "", ...) or any(
        o.default_text is not None for o in flag.options.values()
    )
    parts = []
    for text, members in groups.items():
        notes: list[str] = []
        if has_datasets and (len(groups) > 1 or len(members) < len(datasets)):
            notes.append(", ".join(str(d) for d in members))
        described = {d: flag.options[d].describe_default() for d in members}
        values = {d: v for d, v in described.items() if v is not None}
        if show_defaults and values:
            if len(set(values.values())) == 1 and len(values) == len(members):
                notes.append(f"default: {next(iter(values.values()))}")
            else:
                by_value: dict[str, list[str]] = {}
                for d, v in values.items():
                    by_value.setdefault(v, []).append(str(d))
                notes.append(
                    "default: " + ", ".join(f"{' and '.join(ds)} {v}" for v, ds in by_value.items())
                )
        parts.append(text + (f" ({'; '.join(notes)})" if notes else ""))
    return "; ".join(parts) + "."


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether the user gave the option (command line or environment), not its default."""
    source = ctx.get_parameter_source(param)
    return source is not None and not source.name.startswith("DEFAULT")


def _command(name: str, members: Members) -> Any:
    """The typer command running the suites ``members`` (several: picked by ``--dataset``)."""
    flags = _flags(name, members)
    datasets = list(members)
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("ctx", keyword, annotation=typer.Context),
        inspect.Parameter(
            "report",
            keyword,
            annotation=Annotated[Path, typer.Option(help="Where to write the JSON report.")],
        ),
    ]
    params.extend(_cluster_params())
    if datasets != [None]:
        help_text = f"The suite to run: {_or([str(d) for d in datasets])} (see above)."
        params.append(
            inspect.Parameter(
                "dataset",
                keyword,
                annotation=Annotated[str, typer.Option(help=help_text)],
                default=datasets[0],
            )
        )
    for flag in flags:
        cli_type, default = _typed_default(flag, len(members))
        first = next(iter(flag.options.values()))
        option = typer.Option(
            *flag.decls,
            help=_help(flag, datasets, default),
            min=first.low,
            max=first.high,
        )
        params.append(
            inspect.Parameter(
                flag.param,
                keyword,
                annotation=Annotated[cli_type, option],
                default=inspect.Parameter.empty if default is ... else default,
            )
        )
    callback = _callback(name, members, flags)
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    if datasets == [None]:
        suite = members[None]
        help_text = inspect.cleandoc(suite.__doc__ or suite.summary())
        short_help = suite.summary()
    else:
        described = [
            f"{d}: {inspect.cleandoc(s.__doc__ or s.summary())}" for d, s in members.items()
        ]
        help_text = "\n\n".join(
            [f"The {name} suites; --dataset picks one (default: {datasets[0]}).", *described]
        )
        short_help = "; ".join(f"{d}: {s.summary().rstrip('.')}" for d, s in members.items())
    commands = typer.Typer(add_completion=False)
    commands.command(name, help=help_text, short_help=short_help)(callback)
    return typer.main.get_command(commands)


def _callback(name: str, members: Members, flags: list[_Flag]) -> Callable[..., None]:
    def command(ctx: typer.Context, **values: Any) -> None:
        from shopsearch.evaluate.options import suite_options

        report: Path = values.pop("report")
        ray_address: str | None = values.pop("ray_address")
        workers: int = values.pop("workers")
        dataset: str | None = values.pop("dataset") if None not in members else None
        if dataset not in members:
            raise InvalidInputError(
                f"--dataset {dataset!r} is not available for 'shopsearch eval {name}'; use "
                f"{_or([str(d) for d in members])}"
            )
        suite = members[dataset]
        where = f"--dataset {dataset}" if dataset is not None else f"'shopsearch eval {name}'"
        config: dict[str, Any] = {}
        for flag in flags:
            if not _given(ctx, flag.param):
                continue
            option = flag.options.get(dataset)
            if option is None:
                takers = [str(d) for d in flag.options]
                raise InvalidInputError(
                    f"{flag.flag} does not apply to {where}; it is an option of --dataset "
                    f"{_or(takers)}: drop it or choose one of those"
                )
            config[option.field] = option.parse(values[flag.param])
        if "report_path" in {f.name for f in dataclasses.fields(suite.config_type)}:
            config["report_path"] = report  # the suite writes its plots next to the report
        options = suite_options(suite.config_type)
        missing = [o.usage for o in options if o.required and o.field not in config]
        if missing:
            raise InvalidInputError(
                f"{where} needs {' and '.join(missing)}; give "
                f"{'it' if len(missing) == 1 else 'them'} (see 'shopsearch eval {name} --help')"
            )
        with heartbeat(f"eval {suite.name}"), _where(ray_address, workers):
            result = suite()(suite.config_type(**config), say=say)
        result.write(report)
        console.print(result.render_table(), highlight=False)
        console.print(f"report written to {report}")

    return command


def _where(ray_address: str | None, workers: int) -> contextlib.AbstractContextManager[None]:
    """Where a suite runs: here, or on the Ray cluster ``--ray-address`` names."""
    if ray_address is None:
        return contextlib.nullcontext()
    from shopsearch.evaluate.parallel import on_cluster
    from shopsearch.ray_cluster import cluster_address

    return on_cluster(cluster_address(ray_address), workers)
