"""The three checkpoint formats ``load_clip`` reads give the same model and the same scores.

OpenAI publishes TorchScript archives: float16 linear/conv/attention weights, the scalars
``input_resolution``, ``context_length`` and ``vocab_size`` in the state dict, no causal mask.
The archive here is built the same way from the tiny CLIP; safetensors holds the plain dict.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from terrawatch.models.clip_backbone import load_clip
from terrawatch.models.segearth import SegEarthOV

CLASSES = ["water", "building", "tree,forest"]


class _Holder(torch.nn.Module):
    """A module tree that only carries tensors under the state-dict names (no forward)."""


def _save_torchscript_like_openai(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    root = _Holder()
    scalars = {
        "input_resolution": torch.tensor(224),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    for key, value in {**state_dict, **scalars}.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        if value.is_floating_point():
            module.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
        else:
            module.register_buffer(leaf, value.clone())
    torch.jit.save(torch.jit.script(root), str(path))


@pytest.fixture(scope="module")
def checkpoints(tiny_clip_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("formats")
    state_dict = torch.load(tiny_clip_path, weights_only=True)
    assert not any(key.endswith("attn_mask") for key in state_dict)
    assert state_dict["visual.conv1.weight"].dtype == torch.float16
    with warnings.catch_warnings():  # torch.jit is deprecated; OpenAI's files are what they are
        warnings.simplefilter("ignore", FutureWarning)
        _save_torchscript_like_openai(state_dict, folder / "ViT-B-16.pt")
    save_file({k: v.contiguous() for k, v in state_dict.items()}, folder / "ViT-B-16.safetensors")
    return {
        "state_dict": tiny_clip_path,
        "torchscript": folder / "ViT-B-16.pt",
        "safetensors": folder / "ViT-B-16.safetensors",
    }


def _scores(path: Path) -> torch.Tensor:
    model = SegEarthOV.from_pretrained(
        weights=path, upsampler="bilinear", device="cpu", resize_long_side=None
    )
    model.set_classes(CLASSES)
    torch.manual_seed(11)
    return model.predict_logits(torch.rand(1, 3, 224, 288))[0]


@pytest.mark.parametrize("kind", ["torchscript", "safetensors"])
def test_checkpoint_format_gives_the_plain_state_dicts_model_and_scores(checkpoints, kind):
    plain = load_clip(checkpoints["state_dict"]).state_dict()
    other = load_clip(checkpoints[kind]).state_dict()
    assert other.keys() == plain.keys()
    for key, value in plain.items():
        assert torch.equal(other[key], value), key
    assert torch.equal(_scores(checkpoints[kind]), _scores(checkpoints["state_dict"]))
