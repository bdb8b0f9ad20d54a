"""The flows' publish step that writes a cube's STAC description (a Prefect task).

Kept apart from :mod:`tasks.core.cube_stac` so ``terrawatch export`` does not import Prefect.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from terrawatch.tasks.core.cube_stac import describe_cube

describe_cube_task = task(describe_cube, name="describe-cube-stac", cache_policy=NO_CACHE)
