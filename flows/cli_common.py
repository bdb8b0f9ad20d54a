"""Pieces shared by the flow commands (landcover, change, flood): options, classes, progress bar.

Each command runs its flow in this process on a Dask task runner
(:func:`run_flow_with_progress`) while a thread polls the store's ``tile_done`` record of the
step being written and draws a tqdm bar. Only the standard library is imported at the top, so
``--help`` stays fast; option values that Pydantic rejects become one
:class:`~terrawatch.errors.InputError` naming the flag (:func:`validated`).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from terrawatch.errors import InputError

if TYPE_CHECKING:
    import numpy as np

Model = TypeVar("Model")

CLASSES_HELP = 'comma-separated classes; "|" joins synonyms: "tree|forest"'
CATALOG_HELP = "earth-search, planetary-computer, a STAC API URL or a local folder"


def add_classes_options(parser: argparse.ArgumentParser, classes_help: str = CLASSES_HELP) -> None:
    """``--classes`` and ``--classes-file`` (read them with :func:`read_classes`)."""
    parser.add_argument("--classes", help=classes_help)
    parser.add_argument(
        "--classes-file", help="class-name file: one class per line, synonyms by comma"
    )


def add_catalog_options(
    parser: argparse.ArgumentParser, store_help: str, resolution_help: str
) -> None:
    """Catalog, store, grid and search options of the optical flow commands."""
    parser.add_argument("--catalog", default="earth-search", help=CATALOG_HELP)
    parser.add_argument("--store", required=True, help=store_help)
    add_grid_options(parser, resolution_help)
    parser.add_argument("--collections", nargs="+", help="STAC collections to search")
    parser.add_argument("--max-cloud", type=float, default=20.0, help="max eo:cloud_cover, percent")
    parser.add_argument("--max-items", type=int, default=50)


def add_grid_options(parser: argparse.ArgumentParser, resolution_help: str) -> None:
    """``--resolution`` and ``--crs`` of the output grid."""
    parser.add_argument("--resolution", type=float, help=resolution_help)
    parser.add_argument("--crs", help="output CRS, default the AOI's UTM zone")


def add_run_options(parser: argparse.ArgumentParser, chunk: int, halo: bool = True) -> None:
    """Chunk (and halo) size, loader and Dask scheduler."""
    parser.add_argument("--chunk", type=int, default=chunk, help="output chunk size in pixels")
    if halo:
        parser.add_argument(
            "--halo", type=int, default=112, help="context pixels around each chunk"
        )
    parser.add_argument("--loader", default="odc", choices=["odc", "stackstac"])
    parser.add_argument("--address", help="existing Dask scheduler, e.g. tcp://host:8786")


def read_classes(args: argparse.Namespace) -> list[str]:
    """The class entries of ``--classes`` or ``--classes-file`` (commas join synonyms)."""
    from terrawatch.flows.cli import parse_classes_option

    classes = parse_classes_option(args.classes, args.classes_file)
    if isinstance(classes, Path):
        from terrawatch.models.text import parse_class_names

        classes = [",".join(c) for c in parse_class_names(classes).classes]
    return classes


def flag(loc: Sequence[object], flags: Mapping[str, str] | None = None) -> str:
    """The flag of a parameter or option field: its innermost name (``model.prob_thd`` ->
    ``--prob-thd``), or its entry in ``flags`` where the flag is named otherwise."""
    names = [str(part) for part in loc if not str(part).isdigit()]  # list indexes dropped
    if not names:
        return "option"
    return (flags or {}).get(names[-1]) or "--" + names[-1].replace("_", "-")


def validated(model: type[Model], flags: Mapping[str, str] | None = None, **values: Any) -> Model:
    """``model(**values)``; a Pydantic validation error becomes one InputError naming the flags.

    Args:
        model: A Pydantic option model (``ModelOptions``, ``ChipOptions``, ...).
        flags: Flags whose name is not its field's (``{"factory": "--model-factory"}``).
        values: The field values from the command line.
    """
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as err:
        problems = [
            f"{flag(e['loc'], flags)}: {e['msg']}, got {e['input']!r}" for e in err.errors()
        ]
        raise InputError("; ".join(problems)) from err


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


def run_flow_with_progress(
    flow: Any,
    params: dict[str, Any],
    address: str | None,
    store: str,
    start: str,
    desc: str,
    flags: Mapping[str, str] | None = None,
) -> int:
    """Run ``flow(**params)`` here on a Dask task runner with a tile progress bar; print it.

    Args:
        flow: The Prefect flow.
        params: Its parameters (validated first: :func:`validated_params`).
        address: Existing Dask scheduler, or None for a local cluster.
        store: The Zarr store the flow writes (polled for the bar).
        start: ISO date of the step being written (its ``time`` value).
        desc: Label of the bar.
        flags: Flags whose name is not their parameter's, for messages.

    Returns:
        0; the flow's summary is printed as JSON.
    """
    from terrawatch.flows.local_api import shared_local_api
    from terrawatch.flows.runner import dask_task_runner

    validated_params(flow, params, flags)
    runner = dask_task_runner(address)
    stop = threading.Event()
    bar = threading.Thread(target=progress_bar, args=(store, start, stop, desc), daemon=True)
    bar.start()
    try:
        with shared_local_api():
            summary = flow.with_options(task_runner=runner)(**params)
    finally:
        stop.set()
        bar.join(timeout=5)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def progress_bar(store: str, start: str, stop: threading.Event, desc: str) -> None:
    """tqdm bar over the ``tile_done`` record of the step starting ``start``, until ``stop``."""
    from tqdm import tqdm

    bar: Any = None
    while not stop.wait(1.0):
        done, total = tiles_done(store, start)
        if total and bar is None:
            bar = tqdm(total=total, unit="tile", desc=desc)
        if bar is not None:
            bar.update(done - bar.n)
    if bar is not None:
        done, _ = tiles_done(store, start)
        bar.update(done - bar.n)
        bar.close()


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
