"""CLIP ViT image tower with SegEarth-OV's modified last block(s), giving dense patch features.

Follows SegEarth-OV (Li et al., CVPR 2025) as specified in ``shared/reference/algorithms.md`` §1.4:
the last ``last_n_layers`` blocks contribute only their self-self attention output (residual and
FFN dropped), summed, and all tokens including [CLS] go through ``ln_post`` and ``proj``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, build_model_from_openai_state_dict
from open_clip.transformer import QuickGELU
from torch import Tensor, nn

from terrawatch.errors import InputError
from terrawatch.models.safe_checkpoint import (
    is_torchscript,
    load_checkpoint,
    load_torchscript_state_dict,
)
from terrawatch.models.settings import Attention

ATTENTION_VARIANTS: tuple[str, ...] = ("segearth", "sclip", "clearclip", "maskclip", "vanilla")
Activation = Literal["quickgelu", "gelu"]
ACTIVATIONS: tuple[str, ...] = ("quickgelu", "gelu")

# Keys whose presence marks an OpenAI-layout CLIP ViT state dict (also open_clip's own layout).
_REQUIRED_KEYS = (
    "visual.conv1.weight",
    "visual.proj",
    "visual.positional_embedding",
    "token_embedding.weight",
    "text_projection",
    "ln_final.weight",
)


def load_clip(
    path: str | Path,
    activation: Activation | None = None,
    *,
    default_activation: Activation = "quickgelu",
    trust_checkpoint: bool = False,
) -> CLIP:
    """Build a float32 CLIP model from a checkpoint in the OpenAI / open_clip key layout.

    Accepts the TorchScript archives OpenAI publishes, plain state dicts in the same key layout
    (what open_clip and our tests save), open_clip training checkpoints (``{"state_dict": ...}``,
    ``module.`` prefixes stripped, as open_clip's ``load_checkpoint`` does) and ``.safetensors``.
    The architecture is inferred from the tensor shapes by open_clip's
    ``build_model_from_openai_state_dict``. The MLP activation cannot be inferred from weights:

    * ``activation`` given: used as is.
    * else the ``"activation"`` entry a checkpoint written by :mod:`models.distill` records;
    * else ``default_activation``: QuickGELU, as the OpenAI models were trained. AlignEarth
      passes ``"gelu"`` (see :mod:`models.alignearth`).

    Nothing in the file is executed unless ``trust_checkpoint`` (see
    :mod:`models.safe_checkpoint`): TorchScript archives are read without ``torch.jit.load``,
    and a file that pickles Python objects is refused.

    Raises:
        ValueError: the file is not a CLIP ViT checkpoint (names the missing keys), or an
            unknown activation.
    """
    state_dict, recorded = _read_checkpoint(Path(path), trust_checkpoint)
    chosen = activation or recorded or default_activation
    if chosen not in ACTIVATIONS:
        source = "activation" if activation else f"the activation recorded in {str(path)!r}"
        raise InputError(f"{source} must be one of {ACTIVATIONS}, got {chosen!r}")
    missing = [key for key in _REQUIRED_KEYS if key not in state_dict]
    if missing:
        raise InputError(
            f"{str(path)!r} is not a CLIP ViT checkpoint in the OpenAI/open_clip format: missing "
            f"keys {missing}; expected a full CLIP model such as OpenAI's ViT-B-16.pt"
            + _bare_tower_hint(state_dict)
        )
    try:
        model = build_model_from_openai_state_dict(
            state_dict, quick_gelu=chosen == "quickgelu", cast_dtype=None
        )
    except (RuntimeError, KeyError) as err:
        raise InputError(f"cannot build CLIP from {str(path)!r}: {err}") from err
    # open_clip's builder loads into float16 weights, which rounds float32 checkpoints
    # (AlignEarth, distilled students): load once more at float32, exact for both kinds.
    model = model.float()
    model.load_state_dict(state_dict)
    return model.eval()


def clip_activation(model: nn.Module) -> Activation:
    """The MLP activation of a CLIP model's image tower (``quickgelu`` or ``gelu``)."""
    act = model.visual.transformer.resblocks[0].mlp.gelu
    return "quickgelu" if isinstance(act, QuickGELU) else "gelu"


def _bare_tower_hint(state_dict: dict[str, Tensor]) -> str:
    if "conv1.weight" in state_dict and "proj" in state_dict:
        return (
            " (this looks like a bare image tower without the 'visual.' prefix and without the "
            "text tower; save the full CLIP model, as models.distill.Distiller.save does)"
        )
    return ""


def _read_checkpoint(
    path: Path, trust_checkpoint: bool = False
) -> tuple[dict[str, Tensor], str | None]:
    """The state dict and the activation recorded beside it (None when the file names none)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), None
    if is_torchscript(path):  # OpenAI publishes TorchScript archives
        return load_torchscript_state_dict(path, trust_checkpoint), None
    loaded = load_checkpoint(path, trust_checkpoint)
    recorded = None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        recorded = loaded.get("activation")
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise InputError(f"{str(path)!r} holds a {type(loaded).__name__}, not a state dict")
    if loaded and next(iter(loaded)).startswith("module."):  # saved from DistributedDataParallel
        loaded = {key.removeprefix("module."): value for key, value in loaded.items()}
    return loaded, recorded


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
            raise InputError(f"attention must be one of {ATTENTION_VARIANTS}, got {attention!r}")
        n_blocks = len(visual.transformer.resblocks)
        if not 1 <= last_n_layers <= n_blocks:
            raise InputError(f"last_n_layers must be in 1..{n_blocks}, got {last_n_layers!r}")
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
        x, grid_h, grid_w = embed_patches(visual, images)
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
        return _split_tokens(out, grid_h, grid_w)

    def _positional_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        return positional_embedding(self.visual, grid_h, grid_w)


def encode_tokens(visual: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """The unmodified CLIP image tower on CLIP-normalised images: every block intact.

    AlignEarth distillation (algorithms.md §2.3) compares the encoders' own outputs, so both
    teacher and student run the standard forward here; the SCLIP/SegEarth modification is
    applied only at inference, training-free, as for the optical model.

    Returns:
        ``(patches [B, D, h, w], cls [B, D])``: all tokens after ``ln_post`` and ``proj``.
    """
    x, grid_h, grid_w = embed_patches(visual, images)
    for block in visual.transformer.resblocks:
        x = block(x)
    return _split_tokens(visual.ln_post(x) @ visual.proj, grid_h, grid_w)


def embed_patches(visual: nn.Module, images: Tensor) -> tuple[Tensor, int, int]:
    """Patch embedding + [CLS] + positional embedding + ``ln_pre``: ``([B, 1 + h*w, W], h, w)``."""
    x = visual.conv1(images)
    batch, width, grid_h, grid_w = x.shape
    x = x.reshape(batch, width, grid_h * grid_w).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(batch, 1, width)
    x = torch.cat([cls, x], dim=1) + positional_embedding(visual, grid_h, grid_w).to(x.dtype)
    return visual.ln_pre(x), grid_h, grid_w


def positional_embedding(visual: nn.Module, grid_h: int, grid_w: int) -> Tensor:
    """Positional embedding for a ``grid_h`` x ``grid_w`` patch grid (bicubic resize).

    Deviation: the reference passes ``scale_factor=(g + 0.1) / g0`` to ``interpolate``; we pass
    the target size, which samples up to ~1 % of a patch apart. For the default 224 window of
    ViT-B/16 no interpolation happens, so the published setting is unaffected.
    """
    pos = visual.positional_embedding
    side = math.isqrt(pos.shape[0] - 1)
    if (grid_h, grid_w) == (side, side):
        return pos
    grid = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1)])


def _split_tokens(out: Tensor, grid_h: int, grid_w: int) -> tuple[Tensor, Tensor]:
    patches = out[:, 1:].transpose(1, 2).reshape(out.shape[0], -1, grid_h, grid_w)
    return patches, out[:, 0]


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
