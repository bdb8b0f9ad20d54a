"""Weight files are checked where they are found, and every missing file is named at once."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from terrawatch.errors import WeightsCorruptError, WeightsNotFoundError
from terrawatch.models.hf_weights import resolve_hf_model
from terrawatch.models.weights import REGISTRY, resolve_weights, weights_dir
from terrawatch.models.weights_check import all_missing_weights, weights_file_problem

CLIP = REGISTRY["ViT-B-16"].filename


@pytest.fixture
def weights(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(folder))
    return folder


def test_a_whole_checkpoint_passes(weights, tiny_clip_path):
    shutil.copy(tiny_clip_path, weights / CLIP)
    assert resolve_weights("ViT-B-16") == weights / CLIP


def test_a_truncated_checkpoint_is_corrupt_with_the_fetch_command(weights, tiny_clip_path):
    data = tiny_clip_path.read_bytes()
    (weights / CLIP).write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsCorruptError) as raised:
        resolve_weights("ViT-B-16")
    message = str(raised.value)
    assert "truncated" in message
    assert f"delete {weights / CLIP} and run `terrawatch weights fetch ViT-B-16`" in message


def test_a_damaged_byte_inside_a_tensor_is_corrupt(weights, tiny_clip_path):
    data = bytearray(tiny_clip_path.read_bytes())
    with zipfile.ZipFile(tiny_clip_path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    # the member's data starts after its 30-byte local header, its name and its extra field
    name_length, extra_length = struct.unpack_from("<HH", data, member.header_offset + 26)
    start = member.header_offset + 30 + name_length + extra_length
    data[start + member.file_size // 2] ^= 0xFF
    (weights / CLIP).write_bytes(bytes(data))
    with pytest.raises(WeightsCorruptError, match="damaged"):
        resolve_weights("ViT-B-16")


def test_an_empty_file_and_a_truncated_safetensors_are_corrupt(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.touch()
    assert weights_file_problem(empty) == "it is empty"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    whole = tmp_path / "model.safetensors"
    whole.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    assert weights_file_problem(whole) is None
    whole.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    assert weights_file_problem(whole) == "truncated (tensor data missing)"


def test_every_missing_checkpoint_is_named_in_one_error_with_one_fetch_command(weights):
    with pytest.raises(WeightsNotFoundError) as raised, all_missing_weights():
        resolve_weights("ViT-B-16")
        resolve_weights("simfeatup-jbu-one-million-aid")
        resolve_hf_model("dinov2-base")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"missing weights: {CLIP} (about 335 MiB), ")
    assert "dinov2-base/ (about 350 MB) not in " + str(weights_dir()) in message
    assert "`terrawatch weights fetch ViT-B-16 simfeatup-jbu-one-million-aid dinov2-base`" in (
        message
    )
    with pytest.raises(WeightsNotFoundError, match=r"ViT-B-16\.pt"):  # outside: the first raises
        resolve_weights("ViT-B-16")
