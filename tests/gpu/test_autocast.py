"""SegEarth-OV's CUDA path: reduced-precision autocast, and the same answer as fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch

from terrawatch.models.segearth import SegEarthOV
from tests.models.change_fixtures import planted_pair

pytestmark = pytest.mark.gpu
CLASSES = ["background", "building", "water"]


def _model(files, device: str) -> SegEarthOV:
    model = SegEarthOV.from_pretrained(
        weights=str(files["clip"]), upsampler_weights=str(files["simfeatup"]), device=device
    )
    model.set_classes(CLASSES)
    return model


def test_cuda_runs_the_backbone_in_reduced_precision(tiny_model_files):
    model = _model(tiny_model_files, "cuda")
    assert model.device.type == "cuda"
    dtypes = []  # the patch embedding's output: bf16/fp16 under autocast, float32 without
    handle = model.clip.visual.conv1.register_forward_hook(
        lambda _m, _i, out: dtypes.append(out.dtype)
    )
    try:
        scores = model.predict_logits(planted_pair(size=224).t1[None])
    finally:
        handle.remove()
    assert dtypes and set(dtypes) <= {torch.bfloat16, torch.float16}
    assert scores.dtype == torch.float32 and scores.device.type == "cuda"


def test_autocast_scores_match_fp32_on_the_cpu(tiny_model_files):
    """bf16 on the CPU measured max 0.011 / mean 0.0026 on this input; fp16 is closer."""
    image = planted_pair(size=224).t1[None]
    reference = _model(tiny_model_files, "cpu").predict_logits(image)
    cuda = _model(tiny_model_files, "cuda").predict_logits(image).cpu()
    difference = (cuda - reference).abs()
    assert float(difference.max()) < 0.05
    assert float(difference.mean()) < 0.01
    agreement = (cuda.argmax(dim=1) == reference.argmax(dim=1)).float().mean()
    assert float(agreement) > 0.98
