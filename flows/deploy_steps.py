"""Prefect pull steps of ``prefect.yaml``: the flow run's settings, checked where the run starts.

``prefect deploy`` resolves ``{{ $VAR }}`` placeholders from the *deployer's* shell and stores
the result: an unset variable became an empty string (with only a warning) that then overrode
the worker's own setting in every run. So ``prefect.yaml`` has no such placeholder; the flow run
reads its settings from the environment the worker gives it, and this step refuses a missing or
empty one in one line naming the variable and where to set it, before the flow is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from terrawatch.errors import InputError
from terrawatch.flows.dask_tls import check_dask_tls

PROJECT_DIR_ENV = "TERRAWATCH_PROJECT_DIR"
WEIGHTS_DIR_ENV = "TERRAWATCH_WEIGHTS_DIR"
WHERE = (
    "set it in the Prefect worker's environment (systemd: /etc/terrawatch/terrawatch.env; "
    "compose: deploy/.env; Kubernetes: the work pool's job template)"
)


def check_run_environment() -> dict[str, str]:
    """Pull step: check the run's folders and make the project folder the working directory.

    ``$TERRAWATCH_PROJECT_DIR`` must name an existing folder (the flow run works there, as
    ``set_working_directory`` did). ``$TERRAWATCH_WEIGHTS_DIR`` may be unset (the user cache is
    used) but not empty or a file. A ``tls://`` ``$TERRAWATCH_DASK_ADDRESS`` needs Dask's TLS
    client settings (:func:`terrawatch.flows.dask_tls.check_dask_tls`).

    Returns:
        ``directory`` and ``weights_dir`` (empty when unset), as step outputs.

    Raises:
        InputError: a setting missing, empty or not a folder; names the variable and the fix.
    """
    project = os.environ.get(PROJECT_DIR_ENV)
    if project is None or not project.strip():
        state = "not set" if project is None else "empty"
        raise InputError(
            f"${PROJECT_DIR_ENV} is {state} in the flow run's environment: {WHERE} "
            "to the folder that holds prefect.yaml (/app in the image)"
        )
    if not Path(project).is_dir():
        raise InputError(f"${PROJECT_DIR_ENV}={project!r} is not a folder on this host: {WHERE}")
    weights = os.environ.get(WEIGHTS_DIR_ENV)
    if weights is not None and (not weights.strip() or Path(weights).is_file()):
        raise InputError(
            f"${WEIGHTS_DIR_ENV}={weights!r} is not a folder: {WHERE} to the shared weights "
            "folder (/weights in the image), or unset it to use the user cache"
        )
    check_dask_tls()
    os.chdir(project)
    return {"directory": project, "weights_dir": weights or ""}
