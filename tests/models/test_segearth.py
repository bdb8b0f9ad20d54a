"""SegEarth-OV: parity with a plain reference, invariants, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from terrawatch.errors import WeightsNotFoundError
from terrawatch.models.classes import parse_class_names
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.sliding import plan_windows, window_starts
from tests.models.reference_impl import reference_scores

CLASSES = [["water", "river"], ["building", "roof"], ["road"], ["tree", "forest"]]


def _load(files: dict[str, Path], upsampler: str = "simfeatup", **settings) -> SegEarthOV:
    return SegEarthOV.from_pretrained(
        "ViT-B-16",
        weights=files["clip"],
        upsampler=upsampler,
        upsampler_weights=files["simfeatup"] if upsampler == "simfeatup" else None,
        device="cpu",
        **settings,
    )


def _image(seed: int, height: int, width: int) -> torch.Tensor:
    torch.manual_seed(seed)
    base = torch.rand(1, 3, height // 8 + 1, width // 8 + 1)
    smooth = torch.nn.functional.interpolate(base, size=(height, width), mode="bilinear")
    return (0.7 * smooth + 0.3 * torch.rand(1, 3, height, width)).clamp(0, 1)


@pytest.mark.parametrize("variant", ["segearth", "sclip", "clearclip", "maskclip", "vanilla"])
def test_predict_logits_matches_reference_for_each_attention(tiny_model_files, variant):
    model = _load(tiny_model_files, attention=variant, resize_long_side=300)
    model.set_classes([",".join(c) for c in CLASSES])
    image = _image(0, 240, 200)
    expected = reference_scores(
        model.clip, model.upsampler, image[0], CLASSES, variant=variant, resize=300
    )
    assert torch.allclose(model.predict_logits(image)[0], expected, atol=2e-4)


@pytest.mark.parametrize(
    ("upsampler", "gba"), [("simfeatup", 0.0), ("bilinear", 0.3), ("bilinear", 0.0)]
)
def test_predict_logits_matches_reference_with_and_without_upsampler_and_gba(
    tiny_model_files, upsampler, gba
):
    model = _load(tiny_model_files, upsampler, gba_lambda=gba, resize_long_side=300)
    model.set_classes([",".join(c) for c in CLASSES])
    image = _image(1, 200, 260)
    up = model.upsampler if upsampler == "simfeatup" else None
    expected = reference_scores(model.clip, up, image[0], CLASSES, gba=gba, resize=300)
    assert torch.allclose(model.predict_logits(image)[0], expected, atol=2e-4)


def test_sclip_over_last_two_layers_matches_reference(tiny_model_files):
    model = _load(tiny_model_files, attention="sclip", last_n_layers=2, resize_long_side=None)
    model.set_classes([",".join(c) for c in CLASSES])
    image = _image(2, 224, 224)
    expected = reference_scores(
        model.clip, model.upsampler, image[0], CLASSES, variant="sclip", last_n=2, resize=None
    )
    assert torch.allclose(model.predict_logits(image)[0], expected, atol=2e-4)


def test_batched_images_equal_one_at_a_time(tiny_model_files):
    model = _load(tiny_model_files, resize_long_side=None, batch_size=3)
    model.set_classes(["water", "building", "tree"])
    images = torch.cat([_image(3, 230, 250), _image(4, 230, 250)])
    together = model.predict_logits(images)
    single = torch.cat([model.predict_logits(images[i : i + 1]) for i in range(2)])
    assert torch.allclose(together, single, atol=1e-5)


def test_stitching_a_224_input_equals_one_window_forward(tiny_model_files):
    model = _load(tiny_model_files, resize_long_side=None)
    model.set_classes(["water", "building"])
    image = _image(5, 224, 224)
    crop = (image - model.mean) / model.std
    direct = model.window_logits(crop)
    probs = torch.softmax(50 * direct, dim=1)
    assert torch.allclose(model.predict_logits(image), probs, atol=1e-6)


@pytest.mark.parametrize(("height", "width"), [(448, 448), (300, 517), (224, 225), (100, 90)])
def test_windows_cover_every_pixel(height, width):
    covered = torch.zeros(height, width, dtype=torch.int32)
    for w in plan_windows(1, height, width, 224, 112):
        assert w.top >= 0 and w.left >= 0
        assert w.top + w.height <= height and w.left + w.width <= width
        covered[w.top : w.top + w.height, w.left : w.left + w.width] += 1
    assert int(covered.min()) >= 1


def test_window_count_matches_reference_formula():
    assert window_starts(448, 224, 112) == [0, 112, 224]
    assert window_starts(500, 224, 112) == [0, 112, 224, 276]
    assert window_starts(100, 224, 112) == [0]


def test_synonyms_merge_to_their_class_maximum(tiny_model_files):
    model = _load(tiny_model_files, resize_long_side=None)
    image = _image(6, 224, 224)
    model.set_classes(["water", "river", "tree"])
    per_query = model.predict_logits(image)
    model.set_classes(["water,river", "tree"])
    merged = model.predict_logits(image)
    assert torch.allclose(merged[:, 0], per_query[:, :2].max(dim=1).values, atol=1e-6)
    assert torch.allclose(merged[:, 1], per_query[:, 2], atol=1e-6)


def test_low_confidence_pixels_get_the_background_index(tiny_model_files):
    model = _load(tiny_model_files, resize_long_side=None, prob_thd=0.0, bg_idx=2)
    model.set_classes(["water", "building", "background"])
    image = _image(7, 224, 224)
    labels, confidence = model.predict(image)
    threshold = float(confidence.median())
    model.with_settings(prob_thd=threshold)
    thresholded, _ = model.predict(image)
    low = confidence < threshold
    assert bool(low.any())
    assert bool((thresholded[low] == 2).all())
    assert torch.equal(thresholded[~low], labels[~low])
    assert labels.dtype == torch.uint8


def test_second_predict_does_not_call_the_text_encoder(tiny_model_files, monkeypatch):
    model = _load(tiny_model_files, resize_long_side=None)
    calls = []
    original = model.clip.encode_text
    monkeypatch.setattr(model.clip, "encode_text", lambda t: calls.append(len(t)) or original(t))
    model.set_classes(["glacier", "vineyard"])  # words no other test encodes
    first = len(calls)
    model.predict(_image(8, 224, 224))
    model.set_classes(["glacier", "vineyard"])
    model.predict(_image(9, 224, 224))
    assert first == 2
    assert len(calls) == first


def test_text_embeddings_are_reused_from_disk_by_a_new_model(tiny_model_files, monkeypatch):
    _load(tiny_model_files).set_classes(["cropland", "pavement"])
    model = _load(tiny_model_files)
    monkeypatch.setattr(model.clip, "encode_text", lambda t: pytest.fail("text encoder ran"))
    model.set_classes(["cropland", "pavement"])


def test_class_file_synonyms_are_parsed(tmp_path):
    path = tmp_path / "cls.txt"
    path.write_text("background\nbareland, barren\ntree,forest")
    classes = parse_class_names(path)
    assert classes.names == ("background", "bareland", "tree")
    assert classes.queries == ("background", "bareland", "barren", "tree", "forest")
    assert classes.query_class == (0, 1, 1, 2, 2)


def test_empty_class_list_is_refused(tiny_model_files):
    model = _load(tiny_model_files)
    with pytest.raises(ValueError, match="class list is empty"):
        model.set_classes([])


def test_non_rgb_tensor_is_refused(tiny_model_files):
    model = _load(tiny_model_files)
    model.set_classes(["water", "tree"])
    with pytest.raises(ValueError, match=r"shape \[B, 3, H, W\]"):
        model.predict(torch.rand(1, 4, 64, 64))


def test_values_outside_unit_range_are_refused(tiny_model_files):
    model = _load(tiny_model_files)
    model.set_classes(["water", "tree"])
    with pytest.raises(ValueError, match=r"values in 0\.\.1"):
        model.predict(torch.rand(1, 3, 64, 64) * 255)


def test_missing_weights_offline_name_the_file_and_the_fix():
    with pytest.raises(WeightsNotFoundError, match=r"ViT-B-16\.pt \(about 335 MiB\).*offline"):
        SegEarthOV.from_pretrained("ViT-B-16", device="cpu")


def test_unknown_setting_is_refused(tiny_model_files):
    with pytest.raises(TypeError, match="unknown SegEarth-OV settings"):
        _load(tiny_model_files, windw=224)


def test_provenance_names_weights_hashes_and_classes(tiny_model_files):
    model = _load(tiny_model_files)
    model.set_classes(["water", "tree,forest"])
    info = model.provenance()
    assert len(info["clip_sha256"]) == 64 and len(info["upsampler_sha256"]) == 64
    assert info["classes"] == [["water"], ["tree", "forest"]]
    assert len(info["templates"]) == 80
