"""Text side of SegEarth-OV: class names with synonyms, prompt templates, cached text embeddings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import QuickGELU
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor, nn

logger = logging.getLogger(__name__)

# The 80 OpenAI ImageNet prompt templates ("a bad photo of a {}.", ...), as SegEarth-OV uses them.
TEMPLATES: tuple[str, ...] = tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)
TEXT_CACHE_ENV = "TERRAWATCH_TEXT_CACHE"


def text_cache_dir() -> Path:
    """Disk cache of text embeddings (``$TERRAWATCH_TEXT_CACHE``, else the user cache)."""
    env = os.environ.get(TEXT_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "terrawatch" / "text-embeddings"


def text_encoder_id(weights_id: str, clip: nn.Module) -> dict[str, Any]:
    """Everything besides word and templates that changes a CLIP model's text embeddings.

    The same weights file gives other embeddings under another MLP activation (QuickGELU or
    GELU is chosen at load time, not stored in OpenAI's files), another context length (the
    tokenizer pads or truncates to it) or another dtype. ``weights_id`` names the weights (the
    checkpoint's sha256); a model built without one is identified by its text tower's tensors.
    """
    act = clip.transformer.resblocks[0].mlp.gelu
    return {
        "weights": weights_id if weights_id != "unidentified" else _text_tower_digest(clip),
        "activation": "quickgelu" if isinstance(act, QuickGELU) else "gelu",
        "context_length": int(clip.context_length),
        "tokenizer": f"{SimpleTokenizer.__module__}.{SimpleTokenizer.__qualname__}",
        "dtype": str(clip.token_embedding.weight.dtype),
    }


def _text_tower_digest(clip: nn.Module) -> str:
    """sha256 over the text tower's tensors (every entry outside ``visual.``)."""
    digest = hashlib.sha256()
    for key, value in clip.state_dict().items():
        if not key.startswith("visual."):
            digest.update(key.encode("utf-8"))
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return "sha256-text:" + digest.hexdigest()


class TextEmbeddingCache:
    """Query embeddings cached by (text encoder, query word, templates), in memory and on disk.

    ``encoder`` identifies the text encoder (:func:`text_encoder_id`: weights, activation,
    context length, tokenizer, dtype), so models that encode text differently never share
    entries. Keyed per word, so a class list that shares words with an earlier one encodes only
    the new words; a flow encodes each list once, not once per tile or run.
    """

    def __init__(
        self,
        encoder: Mapping[str, Any],
        directory: Path | None = None,
        use_disk: bool = True,
    ):
        self.encoder = dict(encoder)
        self.directory = directory or text_cache_dir()
        self.use_disk = use_disk
        self._memory: dict[str, Tensor] = {}

    def get(
        self,
        queries: Sequence[str],
        templates: Sequence[str],
        encode: Callable[[list[str]], Tensor],
    ) -> Tensor:
        """Embeddings [Q, D] of ``queries``; ``encode`` (prompts -> [N, D]) runs only on misses."""
        keys = [self._key(query, templates) for query in queries]
        missing = [q for q, key in zip(queries, keys, strict=True) if not self._load(key)]
        if missing:
            logger.info("encoding %d text queries x %d templates", len(missing), len(templates))
            for query in missing:
                prompts = [template.format(query) for template in templates]
                embedding = encode_prompts(encode, prompts)
                self._store(self._key(query, templates), embedding)
        return torch.stack([self._memory[key] for key in keys])

    def _key(self, query: str, templates: Sequence[str]) -> str:
        payload = json.dumps(
            [self.encoder, query, list(templates)], ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _load(self, key: str) -> bool:
        if key in self._memory:
            return True
        path = self.directory / f"{key}.pt"
        if self.use_disk and path.is_file():
            self._memory[key] = torch.load(path, map_location="cpu", weights_only=True)
            return True
        return False

    def _store(self, key: str, embedding: Tensor) -> None:
        self._memory[key] = embedding
        if self.use_disk:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.directory / f"{key}.pt.{os.getpid()}.partial"
            torch.save(embedding, partial)
            partial.replace(self.directory / f"{key}.pt")


def encode_prompts(encode: Callable[[list[str]], Tensor], prompts: list[str]) -> Tensor:
    """One query embedding: normalise each prompt embedding, average, normalise again."""
    embeddings = F.normalize(encode(prompts).float(), dim=-1)
    return F.normalize(embeddings.mean(dim=0), dim=-1).cpu()
