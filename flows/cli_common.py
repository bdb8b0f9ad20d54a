"""Pieces shared by the flow commands (landcover, change, flood): options, classes, progress bar.

Each command runs its flow in this process on a Dask task runner
(:func:`run_flow_with_progress`) while a thread polls the store's ``tile_done`` record of the
step being written and draws a tqdm bar. Only the standard library is imported at the top, so
``--help`` stays fast; option values that Pydantic or Prefect refuse become one
:class:`~terrawatch.errors.InputError` naming the flag the user typed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

from terrawatch.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

    from terrawatch.flows.options import Cli

M = TypeVar("M", bound="BaseModel")

CLASSES_HELP = 'comma-separated classes; "|" joins synonyms: "tree|forest"'
AOI_HELP = "W,S,E,N in degrees, or a GeoJSON file"
NONE = "none"
"""The command-line word for None of an optional choice that has another default."""


def add_classes_options(parser: argparse.ArgumentParser, classes_help: str = CLASSES_HELP) -> None:
    """``--classes`` and ``--classes-file`` (read them with :func:`read_classes`)."""
    parser.add_argument("--classes", help=classes_help)
    parser.add_argument(
        "--classes-file", help="class-name file: one class per line, synonyms by comma"
    )


def add_option_group(
    parser: argparse.ArgumentParser,
    options: type[BaseModel],
    title: str,
    exclude: Collection[str] = (),
) -> None:
    """Add an option group's fields as an argument group (read it with :func:`read_options`).

    The flag is ``--field-name`` (or the field's :class:`~terrawatch.flows.options.Cli` flag),
    the help the field's description with its default, a ``Literal`` gives the choices (plus
    ``none`` where None is allowed but not the default), a list takes several words (or one
    word split at the ``Cli`` separator) and a bool is a switch (``--no-name`` when it
    defaults to True).

    Args:
        parser: The sub-command's parser.
        options: The option group (a pydantic model of :mod:`terrawatch.flows.options`).
        title: The group's title in ``--help``.
        exclude: Fields the command sets itself.
    """
    group = parser.add_argument_group(title, _first_line(options.__doc__))
    for name, field in options.model_fields.items():
        if name not in exclude:
            flag, kwargs = _argument(name, field)
            group.add_argument(flag, dest=name, **kwargs)


def read_options(args: argparse.Namespace, options: type[M], **given: Any) -> M:
    """The option group of the parsed command line (``given`` sets the excluded fields).

    Raises:
        InputError: an empty list option, or a value the group refuses.
    """
    from pydantic import ValidationError

    values = dict(given)
    for name, field in options.model_fields.items():
        if name in values or not hasattr(args, name):
            continue
        value = getattr(args, name)
        sep = _cli(field).sep
        if sep is not None and value is not None:
            value = [v.strip() for v in value.split(sep) if v.strip()]
            if not value:
                raise InputError(
                    f"{_flag(name, field)} needs at least one {sep!r}-separated name, got "
                    f"{getattr(args, name)!r}"
                )
        values[name] = None if value == NONE and _none_choice(field) else value
    try:
        return options(**values)
    except ValidationError as err:
        flags = {name: _flag(name, field) for name, field in options.model_fields.items()}
        problems = [
            f"{flag(e['loc'], flags)}: {e['msg']}, got {e['input']!r}" for e in err.errors()
        ]
        raise InputError("; ".join(problems)) from err


def flag(loc: Sequence[object], flags: Mapping[str, str] | None = None) -> str:
    """The flag of a parameter or option field: its innermost name (``model.prob_thd`` ->
    ``--prob-thd``), or its entry in ``flags`` where the flag is named otherwise."""
    names = [str(part) for part in loc if not str(part).isdigit()]  # list indexes dropped
    if not names:
        return "option"
    return (flags or {}).get(names[-1]) or "--" + names[-1].replace("_", "-")


def validated_params(
    flow: Any, params: dict[str, Any], flags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The flow's parameters as Prefect casts them; invalid ones are one InputError naming flags.

    Prefect validates the parameters of every flow call; doing it here, before a cluster
    starts, turns its ``ParameterTypeError`` (one `` - name.field: message`` line per problem)
    into the command line's one line.
    """
    from prefect.exceptions import ParameterTypeError

    quiet = logging.getLogger("prefect.flows")  # it logs the same problems at ERROR first
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return flow.validate_parameters(params)
    except ParameterTypeError as err:
        lines = [line[3:] for line in str(err).splitlines() if line.startswith(" - ")]
        problems = []
        for line in lines:
            loc, _, message = line.partition(": ")
            problems.append(f"{flag(loc.split('.'), flags)}: {message}")
        raise InputError("; ".join(problems) or str(err)) from err
    finally:
        quiet.setLevel(level)


def check_store_path(store: str, option: str = "--store") -> None:
    """A local store path must be a folder or not exist yet (Zarr stores are folders)."""
    if "://" in store:
        return
    path = Path(store).expanduser()
    existing = next(part for part in (path, *path.parents) if part.exists())
    if not existing.is_dir():
        raise InputError(
            f"{option} {store!r}: {str(existing)!r} is a file; give a folder path for the Zarr "
            "store (it is created if missing) or an fsspec URL"
        )
    from terrawatch.flows.store_checks import check_store_folder

    check_store_folder(path, existing, f"{option} {store!r}")


def _argument(name: str, field: FieldInfo) -> tuple[str, dict[str, Any]]:
    """The flag and ``add_argument`` keywords of one field."""
    kind = _without_none(field.annotation)
    default = field.default
    text = (field.description or "").replace("%", "%%")
    kwargs: dict[str, Any] = {"default": default}
    if kind is bool:
        if default:  # a switch that turns it off
            return f"--no-{name.replace('_', '-')}", {
                **kwargs, "action": "store_false", "help": f"do not {text}"
            }  # fmt: skip
        return _flag(name, field), {**kwargs, "action": "store_true", "help": text}
    if get_origin(kind) is Literal:
        choices = [str(c) for c in get_args(kind)]
        kwargs["choices"] = [*choices, NONE] if _none_choice(field) else choices
    elif get_origin(kind) is list:
        if _cli(field).sep is None:
            kwargs["nargs"] = "+"
    elif kind in (int, float) and _allows_none(field) and default is not None:
        kwargs["type"] = _or_none(kind)
    elif kind in (int, float, str):
        kwargs["type"] = kind
    else:
        raise TypeError(f"no command-line form for {name}: {field.annotation}; exclude it")
    if default is not None:
        text += " (default: %(default)s)"
    flag = _flag(name, field)
    if "choices" not in kwargs:
        kwargs["metavar"] = flag.removeprefix("--").replace("-", "_").upper()
    return flag, {**kwargs, "help": text}


def _or_none(kind: type) -> Any:
    """``kind`` of a word, or None of ``none`` (an optional number with another default)."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() == NONE else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _flag(name: str, field: FieldInfo) -> str:
    return _cli(field).flag or f"--{name.replace('_', '-')}"


def _cli(field: FieldInfo) -> Cli:
    from terrawatch.flows.options import Cli

    return next((m for m in field.metadata if isinstance(m, Cli)), Cli())


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None`` (and of ``Optional[X]``); anything else as it is."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _allows_none(field: FieldInfo) -> bool:
    return type(None) in get_args(field.annotation)


def _none_choice(field: FieldInfo) -> bool:
    """A choice that may be None but defaults to something else takes ``none``."""
    literal = get_origin(_without_none(field.annotation)) is Literal
    return literal and _allows_none(field) and field.default is not None


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text else None


def read_classes(args: argparse.Namespace) -> list[str]:
    """The class entries of ``--classes`` or ``--classes-file`` (commas join synonyms).

    Parsed and checked here, before any work; the entries are the class list's JSON form, the
    form a flow parameter takes (deployments pass the same).
    """
    from terrawatch.flows.cli import parse_classes_option

    return parse_classes_option(args.classes, args.classes_file).entries


def run_flow_with_progress(
    flow: Any, params: dict[str, Any], address: str | None, store: str, start: str, desc: str
) -> int:
    """Run ``flow(**params)`` here on a Dask task runner with a progress bar; print a summary.

    Ctrl-C or SIGTERM stops the run within seconds (:mod:`terrawatch.flows.interrupt`); the
    bar and the summary follow ``-q`` and ``--json`` (:mod:`terrawatch.flows.console`).

    Args:
        flow: The Prefect flow.
        params: Its parameters.
        address: Existing Dask scheduler, or None for a local cluster.
        store: The Zarr store the flow writes (polled for the bar).
        start: ISO date of the step being written (its ``time`` value).
        desc: Label of the bar.

    Returns:
        0; the flow's summary is printed (as JSON with ``--json``).
    """
    from terrawatch.flows import console, interrupt
    from terrawatch.flows.dask_tls import check_dask_tls
    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.progress import StepProgress
    from terrawatch.flows.runner import dask_task_runner

    check_dask_tls(address)
    runner = dask_task_runner(address)
    interrupt.watch_step(store, start)
    with StepProgress(store, start, desc, enabled=console.shows_progress()):
        with shared_local_api():
            run = flow.with_options(task_runner=runner, on_running=[interrupt.reclaim_sigterm])
            summary = run(**params)
    console.print_summary(summary)
    return 0


def tiles_done(store: str, start: str) -> tuple[int, int]:
    """(written, all) tiles of the step starting ``start``; (0, 0) before it exists."""
    try:
        import zarr

        group = zarr.open_group(store, mode="r", use_consolidated=False)
        times = group["time"][:]
        units = group["time"].attrs.get("units", "")
        done = group["tile_done"]
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return 0, 0
    index = _time_index(times, units, start)
    if index is None:
        return 0, 0
    import numpy as np

    record = np.asarray(done[index])
    return int((record == 1).sum()), int(record.size)


def _time_index(times: np.ndarray, units: str, start: str) -> int | None:
    import numpy as np

    if not units.startswith("seconds since 1970-01-01"):
        return len(times) - 1 if len(times) else None
    target = np.datetime64(start[:10], "s").astype("int64")
    hits = np.flatnonzero(times.astype("int64") == target)
    return int(hits[0]) if hits.size else None
