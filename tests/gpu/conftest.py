"""GPU tests: marked ``gpu``, skipped (with the command that runs them) where CUDA is absent.

Run them on a GPU machine with ``python -m pytest -m gpu``.
"""

from __future__ import annotations

import pytest

from tests.flows.conftest import prefect_api  # noqa: F401 (the flow test's Prefect API)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason="needs CUDA (a GPU and a CUDA build of torch); on a GPU machine run "
        "`python -m pytest -m gpu`"
    )
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
