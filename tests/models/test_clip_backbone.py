"""Dense CLIP encoder: positional-embedding interpolation and the modified-block options."""

from __future__ import annotations

import pytest
import torch

from terrawatch.models.clip_backbone import DenseCLIPEncoder
from tests.conftest import build_tiny_clip


@pytest.fixture
def encoder() -> DenseCLIPEncoder:
    return DenseCLIPEncoder(build_tiny_clip().visual)


def test_positional_embedding_is_unchanged_at_the_training_grid(encoder):
    pos = encoder._positional_embedding(14, 14)
    assert pos is encoder.visual.positional_embedding


def test_positional_embedding_is_interpolated_for_other_windows(encoder):
    with torch.no_grad():
        encoder.visual.positional_embedding[1:] = 0.25
    pos = encoder._positional_embedding(20, 10)
    assert pos.shape == (1 + 200, encoder.visual.positional_embedding.shape[1])
    assert torch.equal(pos[0], encoder.visual.positional_embedding[0])
    assert torch.allclose(pos[1:], torch.full_like(pos[1:], 0.25), atol=1e-6)


def test_encoder_runs_on_non_square_windows(encoder):
    patches, cls = encoder(torch.randn(2, 3, 320, 160))
    assert patches.shape == (2, 32, 20, 10) and cls.shape == (2, 32)


def test_bad_options_are_refused():
    visual = build_tiny_clip().visual
    with pytest.raises(ValueError, match="attention must be one of"):
        DenseCLIPEncoder(visual, attention="gem")
    with pytest.raises(ValueError, match=r"last_n_layers must be in 1\.\.2"):
        DenseCLIPEncoder(visual, last_n_layers=3)
