"""terrawatch's error family: what a user can fix, each with the command line's exit code.

Every error a user can act on (bad input, no scenes, a store of another grid, missing weights,
an unreachable catalog) is a :class:`TerrawatchError`; the command line prints its message on
one line and exits with its :attr:`~TerrawatchError.exit_code`. Anything else is a bug and
keeps its traceback. Prefect's retry rule keys on the family too: a TerrawatchError is never
retried (retrying cannot fix it) unless it is :attr:`~TerrawatchError.transient` (a catalog that
did not answer); anything else may be transient. This module imports nothing, so every layer
(models, tasks, flows) can raise these.

Each member also derives from the builtin it replaced (``InputError`` is a ``ValueError``,
``InputNotFoundError`` a ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.

Exit codes (``terrawatch --help`` prints them from :func:`exit_codes`): 0 done; 1 any other
terrawatch error, or a bug (with its traceback); 2 bad input, as argparse's usage errors
(:class:`InputError` and its kinds); 3 no scenes; 4 store mismatch; 5 weights not found;
6 catalog unreachable; 7 downloaded weights corrupt; 8 untrusted checkpoint (pickled
objects, not loaded without ``--trust-checkpoint``).
"""

from __future__ import annotations


class TerrawatchError(Exception):
    """An error the user can fix; its message says how. The command line prints it in one line."""

    exit_code: int = 1
    transient: bool = False
    """True where trying again later may succeed (Prefect retries it); False: fix, then rerun."""


class InputError(TerrawatchError, ValueError):
    """Invalid user input (options, parameter values, named files), found before heavy work."""

    exit_code = 2


class InputNotFoundError(InputError, FileNotFoundError):
    """A file, folder or store the user named does not exist."""


class OutputExistsError(InputError, FileExistsError):
    """An output the user named exists already and is not overwritten."""


class UnknownSettingError(InputError, TypeError):
    """A settings name a model does not have (a TypeError, as an unexpected keyword)."""


class NoScenesError(TerrawatchError, LookupError):
    """A catalog search matched no usable scene for the requested area and period."""

    exit_code = 3


class StoreMismatchError(TerrawatchError, ValueError):
    """An existing Zarr store does not match the requested grid or class list."""

    exit_code = 4


class WeightsNotFoundError(TerrawatchError, FileNotFoundError):
    """A checkpoint is neither on disk nor downloadable (offline)."""

    exit_code = 5


class WeightsCorruptError(TerrawatchError, ValueError):
    """A downloaded checkpoint does not have the registry's checksum (deleted, not used)."""

    exit_code = 7


class CatalogUnreachableError(TerrawatchError, ConnectionError):
    """A STAC API did not answer, answered with an error, or may not be contacted (offline)."""

    exit_code = 6
    transient = True


class UntrustedCheckpointError(TerrawatchError, ValueError):
    """A checkpoint pickles Python objects that loading could run code for; not trusted.

    Loading it needs the user's explicit ``trust_checkpoint=True`` (``--trust-checkpoint``).
    """

    exit_code = 8


def exit_codes() -> dict[int, str]:
    """Every exit code of the command line and what it means, from the classes above."""
    codes = {0: "done", 1: "TerrawatchError, or a bug (its traceback is printed)"}
    family: list[type[TerrawatchError]] = [TerrawatchError]
    for cls in family:  # breadth first: the topmost class of each code names it
        family.extend(cls.__subclasses__())
        codes.setdefault(cls.exit_code, cls.__name__)
    codes[2] += " and its kinds, or a usage error of the options"
    return dict(sorted(codes.items()))
