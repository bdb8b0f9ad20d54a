"""Run a callback right after a module is first imported (a post-import hook).

``import terrawatch`` must stay light (the command line's ``--help`` imports it), yet it
promises the ``.tw`` cube accessor on xarray objects. xarray costs seconds to import, so the
accessor is registered when xarray itself is imported: at once if it already is, else by a
finder on ``sys.meta_path`` that lets the normal machinery find xarray and runs the callback
after the module has executed. Only the standard library is used here.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of one module to call back after it."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback
        self._searching = False

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != self.name or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)  # the other finders
        finally:
            self._searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _remove(self)
            _call(self.callback, self.name)

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


def after_import(name: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` once ``name`` is imported (now, if it already is)."""
    if name in sys.modules:
        _call(callback, name)
        return
    if not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _remove(finder: _AfterImport) -> None:
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)


def _call(callback: Callable[[], None], name: str) -> None:
    """A failing callback must never break the import of ``name``; it is logged instead."""
    try:
        callback()
    except Exception as err:
        warnings.warn(
            f"terrawatch: setting up after importing {name} failed: {err!r}", stacklevel=2
        )
