"""Parity with the plain reference where the tiny test CLIP cannot catch bugs.

The shared tiny CLIP has one attention head (a wrong per-head split passes) and meets square
224 windows (an h/w mix-up in the positional-embedding resize passes). This CLIP has four heads,
a positional embedding that varies differently along rows and columns, and is run on a
non-square 224 x 320 window (a 14 x 20 patch grid).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from terrawatch.models.clip_backbone import positional_embedding, self_self_attention
from terrawatch.models.segearth import SegEarthOV
from tests.conftest import openai_format_state_dict
from tests.models.reference_impl import (
    attention_output,
    grid_positional_embedding,
    reference_scores,
)

HEADS = 4
CLASSES = [["water", "river"], ["building"], ["tree", "forest"]]


def _build_multihead_clip(seed: int = 3):
    """Random CLIP whose image tower has 4 heads of 64 (width 256: open_clip infers width // 64).

    The patch positions get a smooth pattern whose frequencies differ along rows and columns
    (plus noise), so resizing rows as columns changes the result.
    """
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        32,
        CLIPVisionCfg(layers=2, width=HEADS * 64, patch_size=16, image_size=224),
        CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,
    )
    with torch.no_grad():
        pos = model.visual.positional_embedding
        side = math.isqrt(pos.shape[0] - 1)
        rows = torch.arange(side).repeat_interleave(side).float()[:, None]
        cols = torch.arange(side).repeat(side).float()[:, None]
        freq = torch.linspace(0.1, 0.9, pos.shape[1])[None]
        pos[1:] = torch.sin(rows * freq) + 0.5 * torch.cos(cols * 2 * freq) + 0.1 * pos[1:]
    return model.eval()


@pytest.fixture(scope="module")
def multihead_clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4-head CLIP saved as an OpenAI-format state dict, loaded by the real loader."""
    path = tmp_path_factory.mktemp("multihead") / "multihead-ViT-B-16.pt"
    torch.save(openai_format_state_dict(_build_multihead_clip()), path)
    return path


def _model(clip_path: Path, simfeatup: Path | None, **settings) -> SegEarthOV:
    model = SegEarthOV.from_pretrained(
        weights=clip_path,
        upsampler="simfeatup" if simfeatup else "bilinear",
        upsampler_weights=simfeatup,
        device="cpu",
        **settings,
    )
    assert model.clip.visual.transformer.resblocks[0].attn.num_heads == HEADS
    return model


def _image(height: int, width: int) -> torch.Tensor:
    torch.manual_seed(7)
    base = torch.rand(1, 3, height // 16 + 1, width // 16 + 1)
    smooth = torch.nn.functional.interpolate(base, size=(height, width), mode="bilinear")
    return (0.7 * smooth + 0.3 * torch.rand(1, 3, height, width)).clamp(0, 1)


def test_positional_embedding_of_a_non_square_grid_matches_reference(multihead_clip_path):
    visual = _model(multihead_clip_path, None).clip.visual
    expected = grid_positional_embedding(visual.positional_embedding, 14, 20)
    assert torch.allclose(positional_embedding(visual, 14, 20), expected, atol=1e-6)
    transposed = grid_positional_embedding(visual.positional_embedding, 20, 14)
    assert not torch.allclose(expected, transposed, atol=1e-2)  # the test can tell h from w


@pytest.mark.parametrize("variant", ["segearth", "vanilla"])
def test_multihead_attention_matches_the_per_head_reference(multihead_clip_path, variant):
    visual = _model(multihead_clip_path, None).clip.visual
    torch.manual_seed(5)
    tokens = torch.randn(1, 1 + 14 * 20, visual.transformer.width)
    block = visual.transformer.resblocks[-1]
    with torch.no_grad():
        got = self_self_attention(block, tokens, variant)
        expected = attention_output(block, tokens, variant)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("upsampler", ["bilinear", "simfeatup"])
def test_predict_logits_of_a_non_square_window_match_reference(
    multihead_clip_path, tiny_simfeatup_path, upsampler
):
    simfeatup = tiny_simfeatup_path if upsampler == "simfeatup" else None
    # One 224 x 320 window: the patch grid is 14 x 20 and the positions are resized.
    model = _model(multihead_clip_path, simfeatup, resize_long_side=None, window=320, stride=160)
    model.set_classes([",".join(c) for c in CLASSES])
    image = _image(224, 320)
    expected = reference_scores(
        model.clip, model.upsampler, image[0], CLASSES, resize=None, window=320, stride=160
    )
    assert torch.allclose(model.predict_logits(image)[0], expected, atol=2e-4)
