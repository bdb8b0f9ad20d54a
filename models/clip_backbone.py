"""CLIP ViT image tower with SegEarth-OV's modified last block(s), giving dense patch features.

Follows SegEarth-OV (Li et al., CVPR 2025) as specified in ``shared/reference/algorithms.md`` §1.4:
the last ``last_n_layers`` blocks contribute only their self-self attention output (residual and
FFN dropped), summed, and all tokens including [CLS] go through ``ln_post`` and ``proj``.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, build_model_from_openai_state_dict
from torch import Tensor, nn

Attention = Literal["segearth", "sclip", "clearclip", "maskclip", "vanilla"]
ATTENTION_VARIANTS: tuple[str, ...] = ("segearth", "sclip", "clearclip", "maskclip", "vanilla")

# Keys whose presence marks an OpenAI-layout CLIP ViT state dict (also open_clip's own layout).
_REQUIRED_KEYS = (
    "visual.conv1.weight",
    "visual.proj",
    "visual.positional_embedding",
    "token_embedding.weight",
    "text_projection",
    "ln_final.weight",
)


def load_clip(path: str | Path) -> CLIP:
    """Build a float32 CLIP model from a checkpoint in the OpenAI format.

    Accepts the TorchScript archives OpenAI publishes, plain state dicts in the same key layout
    (what open_clip and our tests save) and ``.safetensors``; the architecture is inferred from
    the tensor shapes by open_clip's ``build_model_from_openai_state_dict`` (QuickGELU, as the
    OpenAI models were trained).

    Raises:
        ValueError: the file is not a CLIP ViT checkpoint (names the missing keys).
    """
    state_dict = _read_state_dict(Path(path))
    missing = [key for key in _REQUIRED_KEYS if key not in state_dict]
    if missing:
        raise ValueError(
            f"{str(path)!r} is not a CLIP ViT checkpoint in the OpenAI format: missing keys "
            f"{missing}; expected a file such as OpenAI's ViT-B-16.pt"
        )
    try:
        model = build_model_from_openai_state_dict(state_dict, quick_gelu=True, cast_dtype=None)
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"cannot build CLIP from {str(path)!r}: {err}") from err
    return model.float().eval()


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if _is_torchscript(path):  # OpenAI publishes TorchScript archives
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = {k.removeprefix("module."): v for k, v in loaded["state_dict"].items()}
    if not isinstance(loaded, dict):
        raise ValueError(f"{str(path)!r} holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; torch.save files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


class DenseCLIPEncoder(nn.Module):
    """Dense (per-patch) CLIP image features with the training-free last-block modification.

    Args:
        visual: the open_clip ``VisionTransformer`` of a CLIP model.
        attention: how the modified block(s) mix tokens: ``segearth`` = softmax(s·qqᵀ) +
            softmax(s·kkᵀ) + softmax(s·vvᵀ) (no renormalisation); ``sclip`` = qq + kk;
            ``clearclip`` = qq; ``maskclip`` = identity (each token keeps its own v);
            ``vanilla`` = softmax(s·qkᵀ).
        last_n_layers: how many last blocks are modified; their outputs are summed (1 for
            SegEarth-OV, 2 for AlignEarth on SAR).
    """

    def __init__(
        self, visual: nn.Module, attention: Attention = "segearth", last_n_layers: int = 1
    ):
        super().__init__()
        if attention not in ATTENTION_VARIANTS:
            raise ValueError(f"attention must be one of {ATTENTION_VARIANTS}, got {attention!r}")
        n_blocks = len(visual.transformer.resblocks)
        if not 1 <= last_n_layers <= n_blocks:
            raise ValueError(f"last_n_layers must be in 1..{n_blocks}, got {last_n_layers!r}")
        self.visual = visual
        self.attention = attention
        self.last_n_layers = last_n_layers

    @property
    def patch_size(self) -> int:
        """Side of one patch in pixels (16 for ViT-B/16)."""
        return int(self.visual.conv1.kernel_size[0])

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text space (after ``proj``)."""
        return int(self.visual.proj.shape[1])

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Encode CLIP-normalised images whose sides are multiples of the patch size.

        Returns:
            ``(patches [B, D, h, w], cls [B, D])``, both after ``ln_post`` and ``proj``,
            not normalised.
        """
        visual = self.visual
        x = visual.conv1(images)
        batch, width, grid_h, grid_w = x.shape
        x = x.reshape(batch, width, grid_h * grid_w).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(batch, 1, width)
        x = torch.cat([cls, x], dim=1) + self._positional_embedding(grid_h, grid_w).to(x.dtype)
        x = visual.ln_pre(x)
        blocks = visual.transformer.resblocks
        first_modified = len(blocks) - self.last_n_layers
        for block in blocks[:first_modified]:
            x = block(x)
        out = torch.zeros_like(x)
        for index, block in enumerate(blocks[first_modified:], start=first_modified):
            out = out + self_self_attention(block, x, self.attention)
            if index < len(blocks) - 1:  # advance the normal stream for the next modified block
                x = block(x)
        out = visual.ln_post(out) @ visual.proj
        patches = out[:, 1:].transpose(1, 2).reshape(batch, -1, grid_h, grid_w)
        return patches, out[:, 0]

    def _positional_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """Positional embedding for a ``grid_h`` x ``grid_w`` patch grid (bicubic resize).

        Deviation: the reference passes ``scale_factor=(g + 0.1) / g0`` to ``interpolate``; we pass
        the target size, which samples up to ~1 % of a patch apart. For the default 224 window of
        ViT-B/16 no interpolation happens, so the published setting is unaffected.
        """
        pos = self.visual.positional_embedding
        side = math.isqrt(pos.shape[0] - 1)
        if (grid_h, grid_w) == (side, side):
            return pos
        grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1)])


def self_self_attention(block: nn.Module, x: Tensor, attention: Attention) -> Tensor:
    """``out_proj(A · v)`` of one residual block on ``ln_1(x)``; residual and FFN dropped."""
    attn: nn.MultiheadAttention = block.attn
    y = block.ln_1(x)
    batch, length, width = y.shape
    heads = attn.num_heads
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(batch, length, heads, width // heads).transpose(1, 2) for t in (q, k, v))
    scale = (width // heads) ** -0.5
    if attention == "maskclip":
        mixed = v
    else:
        weights = {
            "segearth": lambda: _sm(q, q, scale) + _sm(k, k, scale) + _sm(v, v, scale),
            "sclip": lambda: _sm(q, q, scale) + _sm(k, k, scale),
            "clearclip": lambda: _sm(q, q, scale),
            "vanilla": lambda: _sm(q, k, scale),
        }[attention]()
        mixed = weights @ v
    mixed = mixed.transpose(1, 2).reshape(batch, length, width)
    return attn.out_proj(mixed)


def _sm(a: Tensor, b: Tensor, scale: float) -> Tensor:
    return torch.softmax((a @ b.transpose(-2, -1)) * scale, dim=-1)
