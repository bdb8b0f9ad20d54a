"""A cube's STAC folder on S3 (moto's real S3 API on loopback): a reader never finds the
Collection linking an Item that is missing or half written, even when a write fails half way."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest

from terrawatch.tasks.core.atomic_write import put_whole, write_whole
from terrawatch.tasks.core.cube_stac import describe_cube
from terrawatch.tasks.core.cube_store import prepare_step, write_cube_tile
from terrawatch.tasks.core.cube_types import TimeStep
from terrawatch.tasks.landcover.cube import LANDCOVER_CUBE
from tests.tasks.core.test_export import CHUNK, CLASSES, GRID

BUCKET = "catalogs"
STEPS = (
    TimeStep("2024-06-01", "2024-06-30", ("june",)),
    TimeStep("2024-07-01", "2024-07-31", ("july",)),
)


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on loopback, s3fs pointed at it: the network edge, nothing leaves."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "terrawatch-test",
        "AWS_SECRET_ACCESS_KEY": "terrawatch-test-secret",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield s3fs
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _add_step(store: str, step: TimeStep) -> None:
    plan = prepare_step(
        store, GRID, CLASSES, step, {"run_id": step.items[0]}, CHUNK, LANDCOVER_CUBE
    )
    height, width = GRID.shape
    labels = np.zeros(GRID.shape, np.uint8)
    for row, col in plan.todo:
        rows = slice(row * CHUNK, min((row + 1) * CHUNK, height))
        cols = slice(col * CHUNK, min((col + 1) * CHUNK, width))
        arrays = {"landcover": labels[rows, cols], "confidence": labels[rows, cols] + 90}
        write_cube_tile(store, LANDCOVER_CUBE, plan.time_index, (row, col), arrays, CHUNK)


def _read(url: str) -> dict | None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return json.loads(fs.cat_file(path)) if fs.exists(path) else None


def _linked_items(stac: str) -> list[str]:
    """The ids of the Items the Collection links, after checking each is there and whole."""
    collection = _read(f"{stac}/collection.json")
    assert collection is not None
    ids = []
    for link in (li for li in collection["links"] if li["rel"] == "item"):
        item = _read(f"{stac}/{link['href'].removeprefix('./')}")
        assert item is not None and item["id"] == link["title"], link
        assert item["properties"]["cube:variables"]["landcover"]["data_type"] == "uint8"
        ids.append(item["id"])
    return ids


def test_a_failed_write_never_leaves_the_collection_linking_a_missing_item(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "lc.zarr")
    stac = f"s3://{BUCKET}/lc.stac"
    _add_step(store, STEPS[0])
    describe_cube(store, stac)
    assert _linked_items(stac) == ["lc-2024-06-01"]
    _add_step(store, STEPS[1])

    puts: list[str] = []
    original = s3.S3FileSystem._pipe_file
    fail_at = [0]

    async def pipe_file(self, path, data, *args, **kwargs):  # the network edge: one PUT
        puts.append(path)
        if len(puts) == fail_at[0]:
            raise ConnectionResetError(f"connection reset during the PUT of {path}")
        return await original(self, path, data, *args, **kwargs)

    monkeypatch.setattr(s3.S3FileSystem, "_pipe_file", pipe_file)
    s3.S3FileSystem.clear_instance_cache()  # new instances take the patched method
    for k in (1, 2, 3):  # june's item, july's item, the collection: each write fails once
        puts.clear()
        fail_at[0] = k
        with pytest.raises(ConnectionResetError):
            describe_cube(store, stac)
        assert _linked_items(stac) == ["lc-2024-06-01"]  # the previous, complete catalog
    fail_at[0] = 0
    puts.clear()
    describe_cube(store, stac)
    assert [p.rsplit("/", 1)[-1] for p in puts] == [
        "lc-2024-06-01.json",
        "lc-2024-07-01.json",
        "collection.json",
    ]  # one PUT per file, no temporary keys to leave behind
    assert _linked_items(stac) == ["lc-2024-06-01", "lc-2024-07-01"]
    fs, root = fsspec.core.url_to_fs(stac)
    assert not [p for p in fs.find(root) if p.endswith(".tmp")]


def test_local_paths_and_file_urls_are_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "a" / "doc.json"
    write_whole(str(target), b'{"v": 1}')
    write_whole(target.as_uri(), b'{"v": 2}')
    assert json.loads(target.read_text()) == {"v": 2}
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]  # no temporary left


def test_filesystems_without_atomic_writes_get_a_temporary_key_then_a_move(tmp_path: Path) -> None:
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    moves: list[tuple[str, str]] = []

    class Watched(DirFileSystem):  # protocol "dir": a filesystem put_whole knows nothing of
        def mv(self, path1, path2, **kwargs):
            moves.append((path1, path2))
            return super().mv(path1, path2, **kwargs)

    fs = Watched(path=str(tmp_path), fs=LocalFileSystem())
    put_whole(fs, "out/doc.json", b'{"v": 1}')
    put_whole(fs, "out/doc.json", b'{"v": 2}')
    assert [m[1] for m in moves] == ["out/doc.json"] * 2 and moves[0][0].endswith(".tmp")
    assert json.loads((tmp_path / "out" / "doc.json").read_text()) == {"v": 2}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["doc.json"]
