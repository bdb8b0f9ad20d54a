"""The distillation task without Prefect: resume rules, refusals, and the job's checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from terrawatch.errors import InputError, StoreMismatchError
from terrawatch.tasks.alignearth.train import TrainJob, train_alignearth
from tests.tasks.alignearth.test_chips import (
    SIZE_M,
    _build,
    block_ids,
    optical_of,
    sar_db_of,
    write_optical,
    write_sar,
)

SETTINGS = (("lr", 1e-3), ("regions", 2.0))  # 32-pixel chips: 2 x 2 tokens


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _chips(root: Path, sar_day: str = "2024-06-02") -> str:
    catalog = root / "catalog"
    ids = block_ids(SIZE_M, 10.0)
    write_optical(catalog, "opt", "2024-06-01T10:30:00Z", optical_of(ids))
    write_sar(catalog, "sar", f"{sar_day}T05:50:00Z", sar_db_of(ids))
    _build(catalog, root / "chips.zarr")
    return str(root / "chips.zarr")


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> str:
    return _chips(tmp_path_factory.mktemp("train-chips"))


def _job(chips: str, out: Path, teacher: Path, **kw) -> TrainJob:
    params = dict(steps=4, batch_size=4, weights=str(teacher), settings=SETTINGS, eval_every=2,
                  save_every=2, device="cpu", threads=1)  # fmt: skip
    return TrainJob(chips, str(out), **{**params, **kw})


def test_training_resumes_at_the_newest_checkpoint(chips, tiny_clip_path, tmp_path):
    first = train_alignearth(_job(chips, tmp_path, tiny_clip_path))
    assert first.step == 4 and first.resumed_from == 0
    more = train_alignearth(_job(chips, tmp_path, tiny_clip_path, steps=6))
    assert more.resumed_from == 4 and more.step == 6
    history = json.loads(Path(more.manifest).read_text())["losses"]
    assert [r["step"] for r in history] == list(range(1, 7))


def test_a_finished_run_is_not_trained_again(chips, tiny_clip_path, tmp_path):
    train_alignearth(_job(chips, tmp_path, tiny_clip_path))
    again = train_alignearth(_job(chips, tmp_path, tiny_clip_path))
    assert again.step == again.resumed_from == 4 and again.chips_per_second == 0
    assert again.heldout_start is not None


def test_held_out_records_after_the_resumed_step_are_dropped(chips, tiny_clip_path, tmp_path):
    train_alignearth(_job(chips, tmp_path, tiny_clip_path))
    for path in tmp_path.glob("step-0000004*"):
        path.unlink()
    train_alignearth(_job(chips, tmp_path, tiny_clip_path))
    records = json.loads((tmp_path / "heldout.json").read_text())["records"]
    assert [r["step"] for r in records] == [0, 2, 4]


def test_checkpoints_of_another_chip_dataset_are_refused(chips, tiny_clip_path, tmp_path):
    train_alignearth(_job(chips, tmp_path / "out", tiny_clip_path, steps=2))
    other = _chips(tmp_path / "other", sar_day="2024-06-03")
    with pytest.raises(StoreMismatchError, match="were distilled on chip dataset"):
        train_alignearth(_job(other, tmp_path / "out", tiny_clip_path, steps=4))


def test_existing_checkpoints_without_resume_are_refused(chips, tiny_clip_path, tmp_path):
    train_alignearth(_job(chips, tmp_path, tiny_clip_path, steps=2))
    with pytest.raises(InputError, match=r"already holds checkpoints .* and resume is off"):
        train_alignearth(_job(chips, tmp_path, tiny_clip_path, resume=False))


def test_a_copied_checkpoint_directory_resumes_elsewhere(chips, tiny_clip_path, tmp_path):
    train_alignearth(_job(chips, tmp_path / "a", tiny_clip_path, steps=2))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert train_alignearth(_job(chips, tmp_path / "b", tiny_clip_path)).resumed_from == 2


def test_unknown_setting_is_refused_before_training(chips, tiny_clip_path, tmp_path):
    with pytest.raises(TypeError, match=r"unknown distillation settings \['lr_max'\]"):
        _job(chips, tmp_path, tiny_clip_path, settings=(("lr_max", 1.0),))


def test_fractional_integer_setting_is_refused(chips, tiny_clip_path, tmp_path):
    with pytest.raises(ValueError, match=r"setting regions must be an integer, got 2\.5"):
        _job(chips, tmp_path, tiny_clip_path, settings=(("regions", 2.5),))


def test_zero_save_interval_is_refused(chips, tiny_clip_path, tmp_path):
    with pytest.raises(InputError, match="save_every must be an integer >= 1, got 0"):
        _job(chips, tmp_path, tiny_clip_path, save_every=0)
