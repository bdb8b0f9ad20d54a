"""Mask proposals: MaskSet, superpixels, and the bi-temporal merge (area filter + box NMS)."""

from __future__ import annotations

import pytest
import torch

from terrawatch.models.proposals import (
    MaskProposer,
    MaskSet,
    SuperpixelProposer,
    mask_pixel_chunks,
    merge_bitemporal,
)
from tests.models.change_fixtures import planted_pair

H, W = 40, 50


def _box_mask(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _set(*masks: torch.Tensor, scores: list[float] | None = None) -> MaskSet:
    stacked = torch.stack(masks) if masks else torch.zeros(0, H, W, dtype=torch.bool)
    count = len(masks)
    values = torch.tensor(scores if scores is not None else [1.0] * count, dtype=torch.float32)
    return MaskSet(stacked, values, torch.zeros(count, dtype=torch.int64))


def test_boxes_are_exclusive_and_zero_for_empty_masks():
    masks = _set(_box_mask(3, 5, 10, 7), torch.zeros(H, W, dtype=torch.bool))
    assert masks.boxes().tolist() == [[3.0, 5.0, 10.0, 7.0], [0.0, 0.0, 0.0, 0.0]]


def test_maskset_rejects_non_bool_masks():
    with pytest.raises(ValueError, match="masks must be bool"):
        MaskSet(torch.zeros(1, H, W), torch.ones(1), torch.zeros(1, dtype=torch.int64))


@pytest.mark.parametrize("method", ["slic", "felzenszwalb"])
def test_superpixels_partition_the_image(method):
    image = planted_pair(size=64).t1
    masks = SuperpixelProposer(method, region_px=64).propose(image)
    assert masks.masks.dtype == torch.bool and masks.masks.shape[1:] == (64, 64)
    assert torch.equal(masks.masks.sum(dim=0), torch.ones(64, 64, dtype=torch.int64))
    assert torch.equal(masks.scores, torch.ones(len(masks)))
    assert torch.equal(masks.origin, torch.zeros(len(masks), dtype=torch.int64))


def test_slic_region_size_sets_the_number_of_superpixels():
    image = planted_pair(size=64).t1
    few = len(SuperpixelProposer(region_px=256).propose(image))
    many = len(SuperpixelProposer(region_px=32).propose(image))
    assert few < many


def test_superpixel_proposer_implements_the_protocol_and_reports_settings():
    proposer = SuperpixelProposer(region_px=100, compactness=5.0)
    assert isinstance(proposer, MaskProposer)
    info = proposer.provenance()
    assert info["name"] == "superpixel" and info["region_px"] == 100 and info["weights"] is None


def test_superpixel_proposer_rejects_unknown_method():
    with pytest.raises(ValueError, match="method must be 'slic' or 'felzenszwalb'"):
        SuperpixelProposer("watershed")  # type: ignore[arg-type]


def test_superpixel_proposer_rejects_non_rgb_image():
    with pytest.raises(ValueError, match=r"image must be RGB with shape \[3, H, W\]"):
        SuperpixelProposer().propose(torch.rand(4, 16, 16))


def test_merge_collapses_a_duplicate_across_dates_to_the_higher_score():
    first = _set(_box_mask(0, 0, 10, 10), scores=[0.6])
    second = _set(_box_mask(0, 0, 10, 11), scores=[0.9])
    merged = merge_bitemporal(first, second)
    assert len(merged) == 1
    assert merged.origin.tolist() == [1] and merged.scores.tolist() == pytest.approx([0.9])


def test_merge_keeps_disjoint_masks_of_both_dates():
    first = _set(_box_mask(0, 0, 10, 10))
    second = _set(_box_mask(20, 20, 30, 30))
    merged = merge_bitemporal(first, second)
    assert merged.origin.tolist() == [0, 1]
    assert torch.equal(merged.masks, torch.cat([first.masks, second.masks]))


def test_merge_drops_masks_covering_at_least_area_thresh_of_the_image():
    large = _box_mask(0, 0, W, 32)  # 32 / 40 = exactly 0.8 of the image
    just_below = _box_mask(0, 0, W, 31)
    merged = merge_bitemporal(_set(large), _set(just_below))
    assert merged.origin.tolist() == [1]
    assert int(merged.masks.sum()) == 31 * W


def test_merge_puts_first_date_survivors_first():
    first = _set(_box_mask(0, 0, 5, 5), _box_mask(30, 30, 40, 40), scores=[0.2, 0.3])
    second = _set(_box_mask(10, 10, 20, 20), _box_mask(30, 30, 40, 39), scores=[0.9, 0.95])
    merged = merge_bitemporal(first, second)
    assert merged.origin.tolist() == [0, 1, 1]
    assert merged.scores.tolist() == pytest.approx([0.2, 0.9, 0.95])


def test_merge_breaks_score_ties_in_favour_of_the_first_date():
    first = _set(_box_mask(0, 0, 10, 10))
    second = _set(_box_mask(0, 0, 10, 10))
    assert merge_bitemporal(first, second).origin.tolist() == [0]


def test_merge_of_two_empty_sets_is_empty():
    merged = merge_bitemporal(_set(), _set())
    assert len(merged) == 0 and merged.shape == (H, W)


def test_merge_rejects_dates_of_different_sizes():
    other = MaskSet.empty(H + 1, W)
    with pytest.raises(ValueError, match="same image size"):
        merge_bitemporal(_set(), other)


def test_clipping_to_valid_pixels_drops_masks_left_empty():
    masks = _set(_box_mask(0, 0, 10, 10), _box_mask(20, 20, 30, 30))
    valid = torch.zeros(H, W, dtype=torch.bool)
    valid[:, :25] = True
    clipped = masks.clipped(valid)
    assert len(clipped) == 2
    assert int(clipped.masks[1].sum()) == 10 * 5
    assert len(masks.clipped(~_box_mask(0, 0, 10, 10) & valid)) == 1


def test_pixel_chunks_list_every_set_pixel_once_in_small_chunks():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(9, H, W, generator=generator) > 0.7
    masks[4] = False  # empty: skipped
    masks[5] = False
    masks[5, 30:33, 40:45] = True
    chunks = list(mask_pixel_chunks(masks, max_elements=3 * H * W // 2))
    assert len(chunks) > 1
    found = torch.zeros_like(masks)
    for indices, mask, pixel in chunks:
        assert not found[indices].any()
        found.view(len(masks), -1)[indices[mask], pixel] = True
    assert torch.equal(found, masks)
