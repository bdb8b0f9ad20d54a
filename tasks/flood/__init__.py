"""Flood: water before and after an event from SAR (and cloud-free optical) scenes.

The product's class defaults live here, in a module that imports nothing, so the command line's
``--help`` and the flow's options can name them without loading the flood tasks.
"""

DEFAULT_CLASSES: tuple[str, ...] = ("water,river,lake,flood water", "land,field,building,road,tree")
"""Classes of a flood run: one water class with synonyms against everything else."""

DEFAULT_WATER_CLASSES: tuple[str, ...] = ("water",)
"""Class names (display name or synonym) counted as water."""
