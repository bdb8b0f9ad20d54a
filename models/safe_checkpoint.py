"""Reading user-supplied checkpoints without running code from them.

``torch.load(weights_only=False)`` and ``torch.jit.load`` unpickle arbitrary Python objects: a
file that pickles an object whose ``__reduce__`` runs a command runs it on load. terrawatch
loads checkpoints users name or download, so by default it reads only tensors, containers and
the allow-listed classes below; anything else is refused with
:class:`~terrawatch.errors.UntrustedCheckpointError` unless the user passes
``trust_checkpoint=True`` (command line: ``--trust-checkpoint``).

TorchScript archives (OpenAI publishes ``ViT-B-16.pt`` as one) are read without
``torch.jit.load``: :func:`read_torchscript_state_dict` unpickles the archive's ``data.pkl``
with an unpickler that resolves only tensor rebuilding and stands in plain records for the
scripted module classes, and takes each module's parameter and buffer names from the
``__parameters__``/``__buffers__`` lines of its ``code/`` file (parsed with :mod:`ast`, never
executed). The result equals ``torch.jit.load(path).state_dict()`` (tests compare both).
"""

from __future__ import annotations

import argparse
import ast
import collections
import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor

from terrawatch.errors import InputError, UntrustedCheckpointError

logger = logging.getLogger(__name__)


class _LightningAttributeDict:
    """Stand-in for Lightning's ``AttributeDict`` (a dict subclass with attribute access).

    Lightning checkpoints pickle ``hyper_parameters`` as one (``LightningModule.hparams``):
    ``AttributeDict.__new__`` then item assignment. The weights-only unpickler assigns items
    only to plain dicts, so "creating" one returns a plain dict: read without Lightning.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}


# Classes a published PyTorch Lightning checkpoint pickles besides tensors and builtins, each
# read as a harmless stand-in or itself (mapped by the name the pickle records):
# - AttributeDict: ``hyper_parameters`` (``self.save_hyperparameters()``); its module moved
#   from pytorch_lightning.utilities.parsing (1.x) to lightning_fabric.utilities.data (2.x),
#   and the unified ``lightning`` package pickles it as lightning.fabric.utilities.data.
# - argparse.Namespace: ``hyper_parameters`` of modules built from argparse arguments
#   (Lightning 1.x saved ``hparams`` as given); it only sets attributes from a dict.
# The rest of a Lightning checkpoint (epoch, global_step, state_dict, optimizer_states,
# lr_schedulers, loops, callbacks' state such as ModelCheckpoint's best_model_score) is
# tensors, numbers, strings and dicts, which the weights-only unpickler reads anyway. This list
# is reasoned from Lightning's ``_dump_checkpoint`` and from what the loader met before (the
# Namespace test); no real Lightning checkpoint could be downloaded to check it.
LIGHTNING_SAFE_GLOBALS: list[Any] = [
    (_LightningAttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_LightningAttributeDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_LightningAttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
    argparse.Namespace,
]


def trust_hint() -> str:
    """How to load a refused file anyway, for the refusal message."""
    return (
        "load it only if you trust its source: pass trust_checkpoint=True "
        "(command line: --trust-checkpoint)"
    )


def load_checkpoint(
    path: Path, trust_checkpoint: bool = False, safe_globals: list[Any] | None = None
) -> Any:
    """``torch.load`` of a user file that refuses pickled objects unless trusted.

    Args:
        path: the checkpoint (a ``torch.save`` file).
        trust_checkpoint: on a pickled object outside ``safe_globals``, unpickle everything
            (``weights_only=False``, which can run code) instead of refusing.
        safe_globals: classes allowed besides tensors and builtins (``add_safe_globals`` form).

    Raises:
        UntrustedCheckpointError: the file pickles another object and is not trusted.
    """
    try:
        with torch.serialization.safe_globals(list(safe_globals or [])):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_checkpoint:
            raise UntrustedCheckpointError(
                f"checkpoint {str(path)!r} pickles Python objects ({_first_line(err)}) that "
                f"loading could run code for; " + trust_hint()
            ) from None
        logger.warning("%s pickles Python objects; trusted, loading it in full", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def _first_line(err: Exception) -> str:
    """What torch's weights-only unpickler refused, in one line (its message has many)."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"unsupported global {found.group(1)}"
    detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
    return detail.group(1).strip() if detail else text.strip().splitlines()[0]


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; torch.save files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_torchscript_state_dict(path: Path, trust_checkpoint: bool = False) -> dict[str, Tensor]:
    """The state dict of a TorchScript archive, read safely; ``jit.load`` only when trusted.

    Raises:
        UntrustedCheckpointError: the archive pickles something besides modules and tensors
            and is not trusted.
    """
    try:
        return read_torchscript_state_dict(path)
    except UntrustedCheckpointError:
        if not trust_checkpoint:
            raise
        logger.warning("%s: trusted TorchScript archive, loading it with torch.jit.load", path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


class _ScriptedObject:
    """Record standing in for a scripted class: its pickled attributes, nothing executed."""

    qualified_name = ""

    def __setstate__(self, state: Any) -> None:
        self.attributes = state if isinstance(state, dict) else {}


def _rebuild_tensor(
    storage: tuple[torch.UntypedStorage, torch.dtype],
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    _hooks: Any = None,
    _metadata: Any = None,
) -> Tensor:
    """A view of ``storage`` (what ``torch._utils._rebuild_tensor_v2`` builds), no grad."""
    untyped, dtype = storage
    return torch.empty(0, dtype=dtype).set_(untyped, offset, size, stride)


def _rebuild_parameter(data: Tensor, _requires_grad: bool = False, _hooks: Any = None) -> Tensor:
    """A parameter read as its plain tensor."""
    return data


# The storage classes data.pkl names, read as the dtype of the bytes they mark.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

# Callables data.pkl may name that only rebuild data: tensor rebuilding (our own functions
# under torch's names) and TorchScript's typed-list markers.
_TORCHSCRIPT_CALLABLES = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, _type: value,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
}


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl``: tensors, containers and module records only."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(file)
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, Any] = {}
        self._classes: dict[str, type[_ScriptedObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(
                    name, (_ScriptedObject,), {"qualified_name": qualified}
                )
            return self._classes[qualified]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]  # only a dtype marker for persistent_load
        if (module, name) in _TORCHSCRIPT_CALLABLES:
            return _TORCHSCRIPT_CALLABLES[(module, name)]
        raise UntrustedCheckpointError(
            f"TorchScript archive {str(self._path)!r} pickles {module}.{name}, which reading "
            f"its tensors safely does not allow; " + trust_hint()
        )

    def persistent_load(self, pid: Any) -> Any:
        kind, dtype, key, _location, _numel = pid
        if kind != "storage":
            raise UntrustedCheckpointError(
                f"TorchScript archive {str(self._path)!r} has an unknown record {kind!r}; "
                + trust_hint()
            )
        if key not in self._storages:
            data = bytearray(self._archive.read(f"{self._root}/data/{key}"))
            untyped = (
                torch.UntypedStorage.from_buffer(data, dtype=torch.uint8)
                if data
                else torch.UntypedStorage(0)
            )
            self._storages[key] = (untyped, dtype)
        return self._storages[key]


def read_torchscript_state_dict(path: Path) -> dict[str, Tensor]:
    """Parameters and buffers of a TorchScript archive, as ``jit.load(...).state_dict()``.

    Raises:
        UntrustedCheckpointError: ``data.pkl`` names a global outside tensors and modules.
        InputError: the archive is not a TorchScript module archive.
    """
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if PurePosixPath(name).parts[1:] == ("data.pkl",)]
        if len(pickles) != 1:
            raise InputError(f"{str(path)!r} is not a TorchScript archive (no top-level data.pkl)")
        root = PurePosixPath(pickles[0]).parts[0]
        order = f"{root}/byteorder"
        if order in names and archive.read(order).decode().strip() != "little":
            raise InputError(f"{str(path)!r} was saved big-endian; only little-endian is read")
        members = _module_members(archive, root)
        with archive.open(pickles[0]) as file:
            top = _TorchScriptUnpickler(file, archive, root, path).load()
    if not isinstance(top, _ScriptedObject):
        raise InputError(f"{str(path)!r} does not hold a scripted module")
    return {key: tensor.detach() for key, tensor in _state_items(top, members, "")}


def _module_members(archive: zipfile.ZipFile, root: str) -> dict[str, tuple[list[str], bool]]:
    """Per scripted class: its parameter and buffer names, and whether it is a Module."""
    members: dict[str, tuple[list[str], bool]] = {}
    for name in archive.namelist():
        parts = PurePosixPath(name).parts
        if len(parts) < 3 or parts[1] != "code" or not name.endswith(".py"):
            continue
        module = ".".join(parts[2:]).removesuffix(".py")
        tree = ast.parse(archive.read(name).decode("utf-8"))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            lists: dict[str, list[str]] = {"__parameters__": [], "__buffers__": []}
            for item in node.body:
                if isinstance(item, ast.Assign) and len(item.targets) == 1:
                    target = item.targets[0]
                    if isinstance(target, ast.Name) and target.id in lists:
                        lists[target.id] = [str(v) for v in ast.literal_eval(item.value)]
            is_module = any(isinstance(b, ast.Name) and b.id == "Module" for b in node.bases)
            members[f"{module}.{node.name}"] = (
                lists["__parameters__"] + lists["__buffers__"],
                is_module,
            )
    return members


def _state_items(
    obj: _ScriptedObject, members: dict[str, tuple[list[str], bool]], prefix: str
) -> Iterator[tuple[str, Tensor]]:
    """(key, tensor) in ``Module.state_dict`` order: own parameters, buffers, then submodules."""
    tensors, _ = members.get(obj.qualified_name, ([], True))
    attributes = getattr(obj, "attributes", {})
    for name in tensors:
        value = attributes.get(name)
        if isinstance(value, Tensor):
            yield prefix + name, value
    for name, value in attributes.items():
        if isinstance(value, _ScriptedObject) and members.get(value.qualified_name, ([], True))[1]:
            yield from _state_items(value, members, f"{prefix}{name}.")
