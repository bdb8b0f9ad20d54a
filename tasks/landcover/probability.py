"""Per-class probabilities of a land-cover run (``--probabilities``), as Dynamic World gives them.

The cube then holds ``probability``: uint8 percent 0..100 with dims ``(time, class, y, x)``, the
``class`` coordinate holding the class names of the class table, ``_FillValue`` 255 where the
step has no data. The numbers are the segmenter's own class scores, the very ones the labels
come from: SegEarth-OV's merged class probabilities (softmax at ``logit_scale`` over all
prompts, then the maximum over each class's synonyms; :meth:`models.segearth.SegEarthOV.
predict_logits`), divided by their sum over the classes so that they sum to 1 per pixel, then
rounded to whole percent (so a pixel's values sum to 100 within the rounding of each class:
at most ``n_classes / 2`` off). With one prompt per class the division changes nothing; with
synonyms it keeps the order of the classes, so the largest probability is the ``landcover``
class, except where ``--prob-thd`` set the background class ``--bg-idx`` instead. ``confidence``
stays the undivided best score.

Chunks are one tile of one class (``1 x 1 x chunk x chunk``): a viewer, an export or
``cube.tw.probability("water")`` reads one class's map without the others. The overviews are
block means (:mod:`tasks.core.cube_overviews`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.tasks.core.cube_store import read_store
from terrawatch.tasks.core.cube_types import NODATA, CubeVariable
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE

PROBABILITY = "probability"
"""The variable's name."""
PROBABILITY_ATTRS = {
    "long_name": "class probability: 100 x the segmenter's class score divided by the scores' "
    "sum over the classes",
    "units": "percent",
    "valid_range": [0, 100],
    "comment": "one layer per class of the class coordinate; 255 (the fill value) = no data",
}


def probability_percent(scores: np.ndarray) -> np.ndarray:
    """uint8 percent ``[C, h, w]`` from class scores ``>= 0`` (NaN = no data): each class's share
    of the pixel's sum, rounded; 255 where the pixel has no data or no score at all."""
    scores = np.asarray(scores, dtype=np.float64)
    total = scores.sum(axis=0)
    valid = np.isfinite(total) & (total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = np.rint(100.0 * scores / np.where(valid, total, 1.0))
    return np.where(valid[None], percent, NODATA).astype(np.uint8)


def _encode_probability(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A tile of ``probability``: float class scores (encoded here) or uint8 percent (checked)."""
    array = np.asarray(array)
    if array.shape != shape:
        raise InputError(
            f"{name} must have one layer per class, shape {shape!r} (classes, rows, cols); "
            f"got {array.shape!r}"
        )
    if array.dtype == np.uint8:
        if np.any((array > 100) & (array != NODATA)):
            raise InputError(f"uint8 {name} must be percent 0..100 or {NODATA} (no data)")
        return array.copy()
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name} dtype {array.dtype} is not supported; pass float scores")
    if np.any(array[np.isfinite(array)] < 0):
        raise InputError(
            f"{name}: class scores must be >= 0 (probabilities), got min {np.nanmin(array)!r}; "
            "--probabilities needs a segmenter whose predict_logits gives class probabilities"
        )
    return probability_percent(array)


def _probability_follows_labels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays = LANDCOVER_CUBE.finish(arrays)
    arrays[PROBABILITY][:, arrays["landcover"] == NODATA] = NODATA
    return arrays


PROBABILITY_CUBE = dataclasses.replace(
    LANDCOVER_CUBE,
    variables=(
        *LANDCOVER_CUBE.variables,
        CubeVariable(PROBABILITY, PROBABILITY_ATTRS, encode=_encode_probability, per_class=True),
    ),
    done_comment="one element per chunk of landcover/confidence and the chunks of probability "
    "of every class; fill (0) = not written yet",
    finish=_probability_follows_labels,
)
"""The land-cover cube with per-class probabilities (``--probabilities``)."""


def segment_with_probabilities(
    model, rgb: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, confidence and class scores ``[C, h, w]`` of one image, from one forward pass.

    SegEarth-OV has ``predict_with_scores``; a plug-in segmenter (``--model-factory``) with
    only the documented ``predict``/``predict_logits`` runs twice.
    """
    from terrawatch.tasks.core.worker_model import image_tensor

    image = image_tensor(rgb)
    both = getattr(model, "predict_with_scores", None)
    if both is not None:
        labels, confidence, scores = both(image)
    else:
        labels, confidence = model.predict(image)
        scores = model.predict_logits(image)
    labels = labels[0].cpu().numpy()
    confidence = confidence[0].float().cpu().numpy()
    scores = scores[0].float().cpu().numpy()
    labels[~valid] = NODATA
    confidence[~valid] = np.nan
    scores[:, ~valid] = np.nan
    return labels, confidence, scores


def check_probability_store(store: str, probabilities: bool) -> None:
    """An existing cube keeps its variables: ``--probabilities`` on every run or on none.

    Raises:
        StoreMismatchError: the store was made the other way; nothing is written.
    """
    existing = read_store(store)
    if existing is None or "landcover" not in existing.variables:
        return
    has = PROBABILITY in existing.variables
    if probabilities and not has:
        raise StoreMismatchError(
            f"--probabilities: {store!r} was made without per-class probabilities; drop "
            "--probabilities, or write to a new store (--store)"
        )
    if has and not probabilities:
        raise StoreMismatchError(
            f"{store!r} holds per-class probabilities; rerun with --probabilities (every step "
            "of it has them), or write to a new store (--store)"
        )
