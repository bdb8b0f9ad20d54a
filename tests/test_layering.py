"""Dependencies point downwards only: flows -> product tasks -> core tasks -> models.

``models/`` stays plain PyTorch; ``tasks/core`` knows no product; a product package imports
``core`` and ``models`` only, never another product; nothing below ``flows/`` imports it.
"""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCTS = ("landcover", "change", "flood", "alignearth")
FORBIDDEN_IN_MODELS = (
    "prefect",
    "dask",
    "distributed",
    "xarray",
    "pystac",
    "zarr",
    "odc",
    "rasterio",
)


def _parse(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector paused.

    CPython 3.11 raises ``SystemError: AST constructor recursion depth mismatch`` when a
    finaliser runs Python code in the middle of building the tree (seen in CI: an unclosed
    aiohttp session of an earlier test's S3 filesystem, logging from ``__del__``).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    names = []
    for node in ast.walk(_parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in _imports(path)
        if name.startswith(forbidden)
    ]


def test_models_import_no_orchestration_or_catalog_code():
    modules = sorted(p.stem for p in (REPO / "models").glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module('terrawatch.models.' + m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_IN_MODELS!r}]\n"
        "upper = ('terrawatch.tasks', 'terrawatch.flows')\n"
        "bad += [m for m in sys.modules if m.startswith(upper)]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_tasks_never_import_flows():
    assert _offenders("tasks", ("terrawatch.flows",)) == []


def test_core_tasks_import_no_product():
    products = tuple(f"terrawatch.tasks.{p}" for p in PRODUCTS)
    assert _offenders("tasks/core", products) == []


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_product_imports_core_and_models_never_another_product(product: str):
    others = tuple(f"terrawatch.tasks.{p}" for p in PRODUCTS if p != product)
    assert _offenders(f"tasks/{product}", (*others, "terrawatch.flows")) == []


def test_no_code_uses_the_old_top_level_import_names():
    """``models``, ``tasks`` and ``flows`` are importable only under ``terrawatch``."""
    old = ("models", "tasks", "flows")
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for folder in ("flows", "tasks", "models", "terrawatch", "tests", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in old
    ]
    assert offenders == []
