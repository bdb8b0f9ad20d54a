"""terrawatch's error family: what a user can fix, each with the command line's exit code.

Every error a user can act on (bad input, no scenes, a store of another grid, missing weights,
an unreachable catalog) is a :class:`TerrawatchError`; the command line prints its message on
one line and exits with its :attr:`~TerrawatchError.exit_code`. Anything else is a bug and
keeps its traceback. Prefect's retry rule keys on the family too: a TerrawatchError is never
retried (retrying cannot fix it), anything else may be transient. This module imports nothing,
so every layer (models, tasks, flows) can raise these.

Exit codes: 1 any other terrawatch error, 2 bad input (as argparse's usage errors),
3 no scenes, 4 store mismatch, 5 weights not found, 6 catalog unreachable.
"""

from __future__ import annotations


class TerrawatchError(Exception):
    """An error the user can fix; its message says how. The command line prints it in one line."""

    exit_code: int = 1


class InputError(TerrawatchError, ValueError):
    """Invalid user input (parameter values), detected before any heavy work."""

    exit_code = 2


class NoScenesError(TerrawatchError, LookupError):
    """A catalog search matched no usable scene for the requested area and period."""

    exit_code = 3


class StoreMismatchError(TerrawatchError, ValueError):
    """An existing Zarr store does not match the requested grid or class list."""

    exit_code = 4


class WeightsNotFoundError(TerrawatchError, FileNotFoundError):
    """A checkpoint is neither on disk nor downloadable (offline)."""

    exit_code = 5
