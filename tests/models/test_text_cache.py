"""The text-embedding cache keys on everything that changes the text tower (issue 14, item 3)."""

from __future__ import annotations

import pytest
import torch

from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.text import TEMPLATES, TextEmbeddingCache, text_encoder_id
from tests.conftest import build_tiny_clip


def _model(tiny_clip_path, activation: str) -> SegEarthOV:
    return SegEarthOV.from_pretrained(
        "ViT-B-16", weights=tiny_clip_path, upsampler="bilinear", device="cpu",
        activation=activation,
    )  # fmt: skip


def _counting(model: SegEarthOV, calls: list[int], monkeypatch) -> None:
    original = model.clip.encode_text
    monkeypatch.setattr(model.clip, "encode_text", lambda t: calls.append(len(t)) or original(t))


def _embed(model: SegEarthOV, word: str) -> torch.Tensor:
    return model.text_cache.get([word], TEMPLATES, model._encode_prompts)[0]


def test_models_differing_only_in_activation_do_not_share_entries(
    tiny_clip_path, tmp_path, monkeypatch
):
    monkeypatch.setenv("TERRAWATCH_TEXT_CACHE", str(tmp_path / "cache"))
    gelu, quick = _model(tiny_clip_path, "gelu"), _model(tiny_clip_path, "quickgelu")
    calls: list[int] = []
    _counting(gelu, calls, monkeypatch)
    _counting(quick, calls, monkeypatch)
    from_gelu = _embed(gelu, "moraine")
    from_quick = _embed(quick, "moraine")
    assert calls == [len(TEMPLATES), len(TEMPLATES)]  # the second model encoded its own
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # one disk entry each
    assert (from_gelu - from_quick).abs().max() > 1e-4
    # a fresh instance of each reads its own entry from disk, encoding nothing
    again_gelu, again_quick = _model(tiny_clip_path, "gelu"), _model(tiny_clip_path, "quickgelu")
    _counting(again_gelu, calls, monkeypatch)
    _counting(again_quick, calls, monkeypatch)
    assert torch.equal(_embed(again_gelu, "moraine"), from_gelu)
    assert torch.equal(_embed(again_quick, "moraine"), from_quick)
    assert len(calls) == 2


def test_same_model_twice_shares_entries_in_memory_and_on_disk(
    tiny_clip_path, tmp_path, monkeypatch
):
    monkeypatch.setenv("TERRAWATCH_TEXT_CACHE", str(tmp_path / "cache"))
    model = _model(tiny_clip_path, "quickgelu")
    calls: list[int] = []
    _counting(model, calls, monkeypatch)
    first = _embed(model, "esker")
    assert torch.equal(_embed(model, "esker"), first)  # memory
    twin = _model(tiny_clip_path, "quickgelu")
    monkeypatch.setattr(twin.clip, "encode_text", lambda t: pytest.fail("text encoder ran"))
    assert torch.equal(_embed(twin, "esker"), first)  # disk
    assert calls == [len(TEMPLATES)]


def test_key_changes_with_each_part_of_the_text_encoder(tmp_path):
    clip = build_tiny_clip()
    base = text_encoder_id("ViT-B-16:abc", clip)
    assert base["activation"] == "quickgelu"
    assert base["context_length"] == 77
    variants = [
        {**base, "weights": "ViT-B-16:other"},
        {**base, "activation": "gelu"},
        {**base, "context_length": 32},
        {**base, "dtype": "torch.float16"},
    ]
    encode_calls: list[int] = []

    def encode(prompts: list[str]) -> torch.Tensor:
        encode_calls.append(len(prompts))
        return torch.ones(len(prompts), 4)

    for encoder in [base, *variants]:
        TextEmbeddingCache(encoder, tmp_path).get(["tundra"], ("a {}.",), encode)
    assert len(encode_calls) == 5  # no variant reused another's entry
    TextEmbeddingCache(base, tmp_path).get(["tundra"], ("a photo of {}.",), encode)
    assert len(encode_calls) == 6  # templates are part of the key
    TextEmbeddingCache(dict(reversed(base.items())), tmp_path).get(["tundra"], ("a {}.",), encode)
    assert len(encode_calls) == 6  # the same encoder, whatever the order of its description


def test_models_built_without_a_weights_id_are_told_apart_by_their_text_weights():
    first, second = build_tiny_clip(seed=0), build_tiny_clip(seed=1)
    assert text_encoder_id("unidentified", first) == text_encoder_id("unidentified", first)
    assert text_encoder_id("unidentified", first) != text_encoder_id("unidentified", second)
