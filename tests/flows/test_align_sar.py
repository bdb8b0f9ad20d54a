"""The AlignEarth distillation flow end to end: synthetic optical and SAR scenes, tiny CLIP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from terrawatch.flows.align_sar import align_sar
from terrawatch.flows.options import ChipOptions, PairSearchOptions, TrainingOptions
from terrawatch.models.segearth import SegEarthOV
from tests.tasks.alignearth.test_chips import scene_aoi, write_optical, write_sar

SIZE = 480  # pixels a side at 10 m: a 4 x 4 grid of 112-pixel chips in the AOI
COLOURS = np.array([(30, 60, 90), (40, 90, 40), (150, 170, 80), (170, 160, 150), (190, 160, 120)])
BACKSCATTER_DB = np.array([-22.0, -8.0, -12.0, -3.0, -15.0])  # water, forest, crop, town, bare
DATES = (("2024-06-01", "2024-06-02"), ("2024-06-11", "2024-06-12"))  # optical, SAR (1 day)
STEPS = 40
pytestmark = pytest.mark.slow


def land_cover(seed: int = 0) -> np.ndarray:
    """A map of 5 classes in blobs of a few hundred metres."""
    fields = torch.rand(1, 5, 10, 10, generator=torch.Generator().manual_seed(seed))
    smooth = F.interpolate(fields, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return smooth[0].argmax(0).numpy()


def make_align_catalog(root: Path) -> Path:
    """Two optical days (8-bit RGB) and two SAR passes a day later, of one land-cover map."""
    catalog, classes = root / "catalog", land_cover()
    rng = np.random.default_rng(0)
    for optical_day, sar_day in DATES:
        rgb = COLOURS[classes].transpose(2, 0, 1) + rng.normal(0, 8, (3, SIZE, SIZE))
        write_optical(catalog, f"opt-{optical_day}", f"{optical_day}T10:30:00Z",
                      np.clip(rgb, 1, 255).astype(np.uint8))  # fmt: skip
        speckle = rng.gamma(4.4, 1 / 4.4, (SIZE, SIZE))
        vv_db = (BACKSCATTER_DB[classes] + 10 * np.log10(speckle)).astype(np.float32)
        write_sar(catalog, f"sar-{sar_day}", f"{sar_day}T05:50:00Z", vv_db)
    return catalog


def align_params(catalog: Path, out: Path, teacher: Path, **overrides) -> dict:
    """Flow parameters of a small offline run (112-pixel chips, batch 8, one thread)."""
    params = dict(
        aoi=scene_aoi(SIZE * 10.0), start="2024-06-01", end="2024-06-30", out=str(out),
        search=PairSearchOptions(catalog=str(catalog), optical_collections=["local"],
                                 sar_collections=["sentinel-1-rtc"], max_cloud=None),
        chips=ChipOptions(chip=112),
        training=TrainingOptions(steps=STEPS, batch_size=8, weights=str(teacher),
                                 settings={"lr": 1e-3}, eval_every=10, save_every=20,
                                 device="cpu", threads=1),
    )  # fmt: skip
    return {**params, **overrides}


def run_align(dask_cluster, **params) -> dict:
    from prefect_dask import DaskTaskRunner

    runner = DaskTaskRunner(address=dask_cluster.scheduler_address)
    return align_sar.with_options(task_runner=runner)(**params)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return make_align_catalog(tmp_path_factory.mktemp("align"))


@pytest.fixture(scope="module")
def first_run(prefect_api, dask_cluster, catalog, tiny_clip_path, tmp_path_factory):
    """One run of 40 steps: (summary, out directory)."""
    out = tmp_path_factory.mktemp("align-out") / "student"
    return run_align(dask_cluster, **align_params(catalog, out, tiny_clip_path)), out


def _manifest(out: Path, step: int) -> dict:
    return json.loads((out / f"step-{step:07d}.json").read_text())


def test_losses_fall_over_training(first_run):
    summary, out = first_run
    losses = [r["loss"] for r in _manifest(out, STEPS)["losses"]]
    assert len(losses) == STEPS
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert summary["losses"]["step"] == STEPS


def test_checkpoints_and_manifests_are_written_every_n_steps_and_at_the_end(first_run):
    summary, out = first_run
    assert sorted(p.name for p in out.glob("step-*.pt")) == [
        "step-0000020.pt", "step-0000020.train.pt", "step-0000040.pt", "step-0000040.train.pt",
    ]  # fmt: skip
    assert summary["checkpoint"] == str(out / "step-0000040.pt")
    assert summary["manifest"] == str(out / "step-0000040.json")


def test_manifest_names_the_chip_dataset(first_run):
    summary, out = first_run
    data = _manifest(out, STEPS)["data"]
    assert data["dataset"]["chips"] == str((out / "chips.zarr").resolve())
    assert data["dataset"]["counts"] == {k: v for k, v in summary["chips"].items()
                                         if k not in ("dataset", "reused")}  # fmt: skip
    assert data["dataset"]["request"]["max_days"] == 3.0 and data["batch_size"] == 8


def test_chip_dataset_holds_both_pairs(first_run):
    summary, _ = first_run
    assert summary["chips"]["pairs"] == 2 and summary["chips"]["chips"] == 32
    assert summary["chips"]["heldout"] == 4 and not summary["chips"]["reused"]


def test_held_out_cosine_is_recorded_at_the_start_and_the_end(first_run):
    summary, out = first_run
    records = json.loads((out / "heldout.json").read_text())["records"]
    assert [r["step"] for r in records] == [0, 10, 20, 30, 40]
    assert summary["heldout_cosine"]["start"]["cls"] == records[0]["cls"]
    assert summary["heldout_cosine"]["end"]["region"] == records[-1]["region"]


def test_student_loads_through_the_sar_inference_path(first_run, tiny_simfeatup_path):
    summary, _ = first_run
    model = SegEarthOV.from_pretrained(
        sensor="sar", weights=summary["checkpoint"], upsampler_weights=tiny_simfeatup_path,
        device="cpu", resize_long_side=None,
    )  # fmt: skip
    model.set_classes(["water", "forest", "town"])
    labels, _ = model.predict(torch.rand(1, 3, 112, 112))
    assert labels.shape == (1, 112, 112)
    saved = torch.load(summary["checkpoint"], weights_only=True)["state_dict"]
    assert torch.equal(model.clip.visual.conv1.weight.float(), saved["visual.conv1.weight"])


def test_rerun_resumes_from_the_last_checkpoint(first_run, dask_cluster, catalog, tiny_clip_path,
                                                tmp_path):  # fmt: skip
    _, out = first_run
    crashed = tmp_path / "student"
    shutil.copytree(out, crashed, ignore=shutil.ignore_patterns("chips.zarr", "step-0000040*"))
    chips = ChipOptions(chip=112, dataset=str(out / "chips.zarr"))
    summary = run_align(dask_cluster, **align_params(catalog, crashed, tiny_clip_path, chips=chips))
    assert summary["resumed_from"] == 20 and summary["steps"] == STEPS
    assert summary["chips"]["reused"]
    resumed = [r["loss"] for r in _manifest(crashed, STEPS)["losses"]]
    original = [r["loss"] for r in _manifest(out, STEPS)["losses"]]
    assert resumed == pytest.approx(original, rel=1e-4)  # same batches, same optimiser state
