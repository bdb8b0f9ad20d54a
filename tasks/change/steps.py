"""Which proposer and comparator a change run uses: ``auto`` picks the best whose weights are here.

DynamicEarth's default method is SAM masks compared with DINOv2 features
(``shared/reference/algorithms.md`` §3.1). Both are large downloads, so ``auto`` uses them only
when both models already sit in the weights directory (``$TERRAWATCH_WEIGHTS_DIR/sam-vit-huge/``
and ``.../dinov2-base/``) and falls back to the weights-free superpixels with the segmenter's
own CLIP features otherwise: ``auto`` never downloads and never fails for missing weights. An
explicit ``sam`` / ``dinov2`` keeps its strict behaviour (weights directory, then a download,
else the clear missing-weights error). The choice and its reason go to the run's log and the
cube's provenance, so an analyst can tell which method made a cube.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terrawatch.errors import InputError
from terrawatch.models.features import DINOV2_WEIGHTS
from terrawatch.models.hf_weights import is_model_dir
from terrawatch.models.sam import SAM_WEIGHTS
from terrawatch.models.weights import weights_dir
from terrawatch.tasks.change import COMPARATORS, PROPOSERS

AUTO = "auto"
PUBLISHED = ("sam", "dinov2")
"""DynamicEarth's default proposer and comparator."""
FALLBACK = ("superpixel", "clip")
"""Weights-free proposer, and the comparator on the segmenter's already loaded CLIP."""


@dataclass(frozen=True)
class StepChoice:
    """The proposer and comparator a run uses, where their weights are, and why."""

    proposer: str
    comparator: str
    proposer_weights: str | None
    """SAM model directory (explicit, or the one ``auto`` found); None otherwise."""
    comparator_weights: str | None
    """DINOv2 model directory (explicit, or the one ``auto`` found); None otherwise."""
    reason: str
    """One sentence for the log and the provenance."""

    def provenance(self, requested: tuple[str, str]) -> dict[str, str]:
        """What was asked, what was chosen, and why (JSON-safe)."""
        return {
            "requested_proposer": requested[0],
            "requested_comparator": requested[1],
            "proposer": self.proposer,
            "comparator": self.comparator,
            "reason": self.reason,
        }


def choose_steps(
    proposer: str,
    comparator: str,
    proposer_weights: str | None = None,
    comparator_weights: str | None = None,
) -> StepChoice:
    """Resolve ``auto`` proposer/comparator from the models present in the weights directory.

    Both ``auto``: SAM + DINOv2 when both models are present (an explicit ``*_weights``
    directory counts as present), else superpixels + CLIP. One ``auto``: that step alone takes
    its published model when present, else its fallback. Explicit choices pass through.

    Raises:
        InputError: an unknown proposer or comparator name.
    """
    if proposer not in PROPOSERS:
        raise InputError(f"--proposer must be one of {PROPOSERS}, got {proposer!r}")
    if comparator not in COMPARATORS:
        raise InputError(f"--comparator must be one of {COMPARATORS}, got {comparator!r}")
    sam = _present(SAM_WEIGHTS, proposer_weights)
    dinov2 = _present(DINOV2_WEIGHTS, comparator_weights)
    if proposer == AUTO and comparator == AUTO:
        if sam is not None and dinov2 is not None:
            return StepChoice(
                *PUBLISHED,
                str(sam),
                str(dinov2),
                f"auto: SAM ({sam}) and DINOv2 ({dinov2}) are present, so the published "
                "DynamicEarth method SAM + DINOv2 is used",
            )
        missing = " and ".join(
            f"{name} (looked in {path})"
            for name, path, found in (
                (SAM_WEIGHTS, _where(SAM_WEIGHTS, proposer_weights), sam),
                (DINOV2_WEIGHTS, _where(DINOV2_WEIGHTS, comparator_weights), dinov2),
            )
            if found is None
        )
        return StepChoice(
            *FALLBACK,
            None,
            None,
            f"auto: superpixels + CLIP, because {missing} is missing; put both models in the "
            "weights directory (`terrawatch weights fetch sam-vit-huge dinov2-base`) for the "
            "published SAM + DINOv2 method",
        )
    reasons = []
    chosen_proposer, chosen_comparator = proposer, comparator
    if proposer == AUTO:
        chosen_proposer = PUBLISHED[0] if sam is not None else FALLBACK[0]
        reasons.append(_one_reason("proposer", chosen_proposer, SAM_WEIGHTS, sam, proposer_weights))
    if comparator == AUTO:
        chosen_comparator = PUBLISHED[1] if dinov2 is not None else FALLBACK[1]
        reasons.append(
            _one_reason("comparator", chosen_comparator, DINOV2_WEIGHTS, dinov2, comparator_weights)
        )
    return StepChoice(
        chosen_proposer,
        chosen_comparator,
        str(sam) if chosen_proposer == "sam" and proposer == AUTO else proposer_weights,
        str(dinov2) if chosen_comparator == "dinov2" and comparator == AUTO else comparator_weights,
        "; ".join(reasons) or f"as requested: {proposer} + {comparator}",
    )


def _where(name: str, explicit: str | None) -> Path:
    return Path(explicit).expanduser() if explicit else weights_dir() / name


def _present(name: str, explicit: str | None) -> Path | None:
    """The model directory when it holds the model, else None (never downloads)."""
    path = _where(name, explicit)
    return path if is_model_dir(path) else None


def _one_reason(step: str, chosen: str, name: str, found: Path | None, explicit: str | None) -> str:
    if found is not None:
        return f"auto {step}: {chosen}, {name} is present ({found})"
    return f"auto {step}: {chosen}, {name} is missing (looked in {_where(name, explicit)})"
