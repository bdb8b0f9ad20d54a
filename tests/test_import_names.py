"""The installed import names cannot be shadowed by a user's own ``models/``, ``tasks.py``, ...

A notebook beside a ``models/`` folder of checkpoints, or an invoke ``tasks.py`` in the working
directory, used to win over terrawatch's top-level ``models``/``tasks`` packages. Everything now
lives under ``terrawatch.*``; these tests run the README's Python imports and the command line
from such a directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAP = "raise RuntimeError('the user\\'s own {name} was imported instead of terrawatch\\'s')\n"


@pytest.fixture
def crowded_dir(tmp_path: Path) -> Path:
    """A working directory holding its own ``models/``, ``tasks.py`` and ``flows/``."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ViT-B-16.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "tasks.py").write_text(TRAP.format(name="tasks.py"))
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "__init__.py").write_text(TRAP.format(name="flows/"))
    return tmp_path


def _readme_import_lines() -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    lines = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith(("from ", "import "))
    ]
    assert lines, "the README shows no Python imports"
    return lines


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_readme_python_imports_work_beside_a_users_own_models_and_tasks(crowded_dir: Path):
    code = "\n".join(
        [
            *_readme_import_lines(),
            "import sys",
            "mods = [m for n, m in sys.modules.items() if n.split('.')[0] == 'terrawatch']",
            "print(sorted({str(m.__file__) for m in mods if getattr(m, '__file__', None)}))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=crowded_dir,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(crowded_dir) not in out.stdout
    assert str(REPO / "models") in out.stdout


def test_command_line_help_works_beside_a_users_own_models_and_tasks(crowded_dir: Path):
    command = shutil.which("terrawatch", path=str(Path(sys.executable).parent))
    assert command, "the terrawatch command is not installed beside this Python"
    out = subprocess.run(
        [command, "--help"],
        cwd=crowded_dir,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "landcover" in out.stdout


def test_public_api_is_importable_from_the_root():
    from terrawatch import SegEarthOV, TerrawatchError, open_cube
    from terrawatch.errors import InputError
    from terrawatch.models.segearth import SegEarthOV as direct

    assert SegEarthOV is direct
    assert callable(open_cube)
    assert issubclass(InputError, TerrawatchError)


def test_every_package_folder_is_in_the_distribution():
    """An editable install finds a new subpackage on its own; a wheel only lists ``packages``."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {root: REPO / folder for root, folder in setuptools["package-dir"].items()}
    found = {
        ".".join((root, *init.parent.relative_to(folder).parts))
        for root, folder in folders.items()
        for init in folder.rglob("__init__.py")
    }
    assert found == listed
