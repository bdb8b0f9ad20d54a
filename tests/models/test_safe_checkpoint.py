"""User-supplied checkpoints cannot run code unless trusted (issue 14, item 2)."""

from __future__ import annotations

import argparse
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from terrawatch.errors import UntrustedCheckpointError
from terrawatch.flows.cli import build_parser
from terrawatch.flows.options import ModelOptions
from terrawatch.models.clip_backbone import load_clip
from terrawatch.models.safe_checkpoint import read_torchscript_state_dict
from terrawatch.models.segearth import SegEarthOV
from terrawatch.models.simfeatup import JBUOne, load_simfeatup
from tests.conftest import build_tiny_clip, openai_format_state_dict


class WritesAFile:
    """A pickled object whose unpickling writes ``marker``: what a malicious file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def _simfeatup_with(path: Path, **extra) -> JBUOne:
    module = JBUOne(feat_dim=4, steps=1)
    state = {"upsampler." + k: v for k, v in module.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3, "callbacks": {}, **extra}, path)
    return module


def _refusal(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert "trust_checkpoint=True" in message
    assert "--trust-checkpoint" in message
    return message


def test_pickled_object_in_a_simfeatup_checkpoint_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    _simfeatup_with(path, hyper_parameters={"lr": WritesAFile(marker)})
    with pytest.raises(UntrustedCheckpointError) as err:
        load_simfeatup(path, steps=1)
    assert "unsupported global getattr" in _refusal(err, path)  # names what it pickles
    assert err.value.exit_code == UntrustedCheckpointError.exit_code == 8
    assert not marker.exists()


def test_trusted_checkpoint_with_a_pickled_object_loads(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    module = _simfeatup_with(path, hyper_parameters={"lr": WritesAFile(marker)})
    loaded = load_simfeatup(path, steps=1, trust_checkpoint=True)
    assert torch.equal(loaded.up.range_temp, module.up.range_temp)
    assert marker.read_text() == "code ran"  # trusting really unpickles everything


def test_from_pretrained_refuses_an_untrusted_upsampler_file_and_loads_a_trusted_one(
    tmp_path, tiny_clip_path
):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    module = JBUOne(feat_dim=32)
    state = {"upsampler." + k: v for k, v in module.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": WritesAFile(marker)}, path)
    kwargs = dict(weights=tiny_clip_path, upsampler_weights=path, device="cpu")
    with pytest.raises(UntrustedCheckpointError) as err:
        SegEarthOV.from_pretrained("ViT-B-16", **kwargs)
    _refusal(err, path)
    assert not marker.exists()
    model = SegEarthOV.from_pretrained("ViT-B-16", trust_checkpoint=True, **kwargs)
    assert torch.equal(model.upsampler.up.range_temp, module.up.range_temp)


def test_pickled_object_in_a_clip_checkpoint_is_refused_unless_trusted(tmp_path, tiny_clip_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil-clip.pt"
    state = torch.load(tiny_clip_path, weights_only=True)
    torch.save({"state_dict": state, "note": WritesAFile(marker)}, path)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_clip(path)
    _refusal(err, path)
    assert not marker.exists()
    trusted = load_clip(path, trust_checkpoint=True)
    assert torch.equal(trusted.visual.proj, load_clip(tiny_clip_path).visual.proj)


def test_published_lightning_format_fixture_loads_without_trust(tiny_simfeatup_path):
    assert isinstance(load_simfeatup(tiny_simfeatup_path), JBUOne)


def test_lightning_attribute_dict_hyper_parameters_load_without_lightning(tmp_path, monkeypatch):
    """Lightning 2.x pickles ``hparams`` as lightning_fabric's AttributeDict; it is allowed."""
    names = ["lightning_fabric", "lightning_fabric.utilities", "lightning_fabric.utilities.data"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    attribute_dict = type("AttributeDict", (dict,), {"__module__": names[-1]})
    sys.modules[names[-1]].AttributeDict = attribute_dict
    path = tmp_path / "hp.ckpt"
    module = _simfeatup_with(path, hyper_parameters=attribute_dict(lr=1e-3, feat_dim=4))
    for name in names:
        monkeypatch.delitem(sys.modules, name)  # loading needs no Lightning
    loaded = load_simfeatup(path, steps=1)
    assert torch.equal(loaded.up.range_temp, module.up.range_temp)


def test_argparse_namespace_hyper_parameters_load_without_trust(tmp_path):
    path = tmp_path / "ns.ckpt"
    module = _simfeatup_with(path, hyper_parameters=argparse.Namespace(lr=1e-3))
    assert torch.equal(load_simfeatup(path, steps=1).up.range_temp, module.up.range_temp)


class _Toy(torch.nn.Module):
    """Parameters, a buffer, a plain tensor attribute, a ModuleList, float16: OpenAI's mix."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)]).half()
        self.register_buffer("input_resolution", torch.tensor(224))
        self.register_buffer("mask", torch.ones(2, 2), persistent=False)
        self.plain = torch.zeros(2)  # an attribute, not a parameter or buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x + self.plain.sum()


def _jit_save(module: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(module), str(path))
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def _assert_same(safe: dict, jit: dict) -> None:
    assert list(safe) == list(jit)
    for key, tensor in jit.items():
        assert safe[key].dtype == tensor.dtype
        assert torch.equal(safe[key], tensor), key


def test_torchscript_archive_is_read_as_jit_load_reads_it(tmp_path):
    path = tmp_path / "toy.pt"
    jit = _jit_save(_Toy(), path)
    _assert_same(read_torchscript_state_dict(path), jit)
    assert "plain" not in jit


def test_scripted_clip_archive_loads_safely_with_the_same_weights(tmp_path, tiny_clip_path):
    model = build_tiny_clip()
    openai_format_state_dict(model)  # float16 weights, as OpenAI publishes
    # OpenAI's archives keep the causal mask as a plain attribute, not in the state dict
    model.attn_mask = model._buffers.pop("attn_mask")
    path = tmp_path / "ViT-B-16-script.pt"
    jit = _jit_save(model, path)
    _assert_same(read_torchscript_state_dict(path), jit)
    from_archive, from_state = load_clip(path), load_clip(tiny_clip_path)
    for key, tensor in from_state.state_dict().items():
        assert torch.equal(from_archive.state_dict()[key], tensor), key


def test_trust_checkpoint_is_an_option_of_the_command_line_and_reaches_the_spec():
    help_text = build_parser()._subparsers._group_actions[0].choices["landcover"].format_help()
    assert "--trust-checkpoint" in help_text
    spec = ModelOptions(trust_checkpoint=True).spec(["water", "land"])
    assert spec.trust_checkpoint is True
    assert ModelOptions().spec(["water", "land"]).trust_checkpoint is False
