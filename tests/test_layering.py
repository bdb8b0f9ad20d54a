"""Dependencies point downwards only: models/ stays plain PyTorch, tasks/ never imports flows/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_MODELS = (
    "prefect",
    "dask",
    "distributed",
    "xarray",
    "pystac",
    "zarr",
    "odc",
    "flows",
    "tasks",
    "rasterio",
)


def test_models_import_no_orchestration_or_catalog_code():
    modules = sorted(p.stem for p in (REPO / "models").glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module('models.' + m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_IN_MODELS!r}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_tasks_never_import_flows():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "tasks").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import flows", "from flows"))
    ]
    assert offenders == []
