"""Exception types that callers of terrawatch tasks catch specifically."""

from __future__ import annotations


class InputError(ValueError):
    """Invalid user input (parameter values), detected before any heavy work."""


class NoScenesError(LookupError):
    """A catalog search matched no usable scene for the requested area and period."""


class StoreMismatchError(ValueError):
    """An existing Zarr store does not match the requested grid or class list."""
