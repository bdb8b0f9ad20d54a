"""terrawatch: open-vocabulary land-cover, change and flood monitoring of EO imagery.

The distribution installs its three layers under this one root (``terrawatch.models``,
``terrawatch.tasks``, ``terrawatch.flows``; the folders stay at the repository's top level), so
a user's own ``models/`` folder or ``tasks.py`` never shadows them. The names below are the
small public API; they are imported on first use, so ``import terrawatch`` (and the command
line's ``--help``) does not pay for torch, Prefect, Dask or xarray. The ``.tw`` cube accessor
(:mod:`terrawatch.tasks.core.cube_accessor`) is registered when xarray is imported.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from terrawatch._after_import import after_import

try:
    __version__ = version("terrawatch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "SegEarthOV": "terrawatch.models.segearth",
    "SegEarthSettings": "terrawatch.models.settings",
    "open_cube": "terrawatch.tasks.core.cube_store",
    "TerrawatchError": "terrawatch.errors",
    "InputError": "terrawatch.errors",
    "NoScenesError": "terrawatch.errors",
    "StoreMismatchError": "terrawatch.errors",
}

__all__ = [
    "InputError",
    "NoScenesError",
    "SegEarthOV",
    "SegEarthSettings",
    "StoreMismatchError",
    "TerrawatchError",
    "__version__",
    "open_cube",
]

if TYPE_CHECKING:
    from terrawatch.errors import (
        InputError,
        NoScenesError,
        StoreMismatchError,
        TerrawatchError,
    )
    from terrawatch.models.segearth import SegEarthOV
    from terrawatch.models.settings import SegEarthSettings
    from terrawatch.tasks.core.cube_store import open_cube


CUBE_ACCESSOR = "terrawatch.tasks.core.cube_accessor"
"""Registers ``Dataset.tw`` (and a lazy ``.rio``) once xarray is imported (it costs seconds)."""
after_import("xarray", lambda: import_module(CUBE_ACCESSOR))


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'terrawatch' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
