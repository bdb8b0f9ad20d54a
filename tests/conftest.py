"""Shared fixtures: offline environment, tiny random-weight checkpoints in the real formats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# No test may reach a model hub or a public STAC API.
os.environ["TERRAWATCH_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"shared test data not available: {path} (expected ../shared/data beside the repo)"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Empty weights directory and text cache per test session: nothing from the user's cache."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(root / "weights-empty"))
    monkeypatch.setenv("TERRAWATCH_TEXT_CACHE", str(root / "text-cache"))


def build_tiny_clip(
    seed: int = 0, embed_dim: int = 32, width: int = 64, layers: int = 2, patch: int = 16
):
    """A random-weight CLIP of the real ViT architecture (OpenAI key layout), 3.4 M params."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim,
        CLIPVisionCfg(layers=layers, width=width, patch_size=patch, image_size=patch * 14),
        CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
        quick_gelu=True,
    )
    return model.eval()


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP saved as an OpenAI-format state dict (what ``load_clip`` reads)."""
    path = tmp_path_factory.mktemp("tiny-weights") / "tiny-ViT-B-16.pt"
    torch.save(openai_format_state_dict(build_tiny_clip()), path)
    return path


def openai_format_state_dict(model) -> dict:
    """The state dict as OpenAI publishes it: linear, conv and attention weights in float16."""
    from open_clip.model import convert_weights_to_fp16

    convert_weights_to_fp16(model)
    return model.state_dict()


@pytest.fixture(scope="session")
def tiny_simfeatup_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random JBUOne for 32-d features saved in the published Lightning checkpoint format."""
    from terrawatch.models.simfeatup import JBUOne, save_simfeatup_checkpoint

    torch.manual_seed(1)
    module = JBUOne(feat_dim=32)
    with torch.no_grad():  # move away from the init values so every parameter matters
        module.up.range_temp.fill_(0.7)
        module.up.sigma_spatial.fill_(0.6)
    path = tmp_path_factory.mktemp("tiny-simfeatup") / "xclip_jbu_one_tiny.ckpt"
    save_simfeatup_checkpoint(module, path)
    return path


@pytest.fixture(scope="session")
def tiny_model_files(tiny_clip_path: Path, tiny_simfeatup_path: Path) -> dict[str, Path]:
    """Both tiny checkpoints."""
    return {"clip": tiny_clip_path, "simfeatup": tiny_simfeatup_path}
