"""STAC search: the local-folder backend on real fixture items, and the STAC API backend
against a real `rustac serve` process on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.states import Completed, Failed

from terrawatch.errors import InputError, NoScenesError
from terrawatch.tasks.core.catalog import (
    SearchResult,
    _make_query,
    _retry_unless_user_error,
    _search_kwargs,
    parse_aoi,
    search_items,
    search_items_task,
)
from tests.conftest import shared_data

MNM_FILE = "pc_sentinel-2-l2a_35MNM_2020jun-jul_13items.itemcollection.json"
C1_FILE = "earthsearch-v1_sentinel-2-c1-l2a_10items.itemcollection.json"
MNM_AOI = "27.2,-8.0,27.5,-7.5"  # inside MGRS tile 35MNM
MNM_JUNE = [  # 35MNM items from 2020-06-10 to 2020-07-05, by date, with eo:cloud_cover
    ("S2A_MSIL2A_20200611T080611_R078_T35MNM_20200826T230619", 1.21),
    ("S2B_MSIL2A_20200616T080609_R078_T35MNM_20201027T073925", 0.02),
    ("S2A_MSIL2A_20200621T080611_R078_T35MNM_20200823T125142", 1.04),
    ("S2B_MSIL2A_20200626T080609_R078_T35MNM_20200824T052748", 5.86),
    ("S2A_MSIL2A_20200701T080611_R078_T35MNM_20200824T191001", 29.22),
]
RKH_ID = "S2A_29RKH_20200219_0_L2A"


@pytest.fixture(scope="module")
def stac_dir() -> Path:
    return shared_data("stac")


def _mnm_ids(max_cloud: float = 100.0) -> list[str]:
    return [item_id for item_id, cloud in MNM_JUNE if cloud <= max_cloud]


# ------------------------------------------------------------------------------ local backend


def test_local_search_selects_aoi_period_and_sorts_by_datetime(stac_dir: Path):
    result = search_items(str(stac_dir), MNM_AOI, "2020-06-10", "2020-07-05")

    assert isinstance(result, SearchResult)
    assert list(result.ids) == _mnm_ids()
    assert result.catalog == str(stac_dir.resolve())


def test_local_search_drops_items_over_cloud_limit_with_reason(stac_dir: Path):
    result = search_items(str(stac_dir), MNM_AOI, "2020-06-10", "2020-07-05", max_cloud=5)

    assert list(result.ids) == _mnm_ids(5)
    reasons = dict(result.dropped)
    assert reasons[MNM_JUNE[3][0]] == "over cloud limit 5 (eo:cloud_cover 5.85993)"
    assert reasons[MNM_JUNE[4][0]].startswith("over cloud limit 5")


def test_local_search_records_outside_period_and_wrong_collection(stac_dir: Path):
    result = search_items(
        str(stac_dir), MNM_AOI, "2020-06-10", "2020-07-05", collections=["sentinel-2-l2a"]
    )

    reasons = dict(result.dropped)
    assert reasons["S2A_MSIL2A_20200731T080611_R078_T35MNM_20200818T062751"].startswith(
        "outside period"
    )
    s1_id = "S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_rtc"
    assert reasons[s1_id] == "wrong collection (collection 'sentinel-1-rtc')"
    assert len(result.dropped) + len(result.items) == 33  # every candidate accounted for


def test_local_search_uses_item_geometry_not_bbox(stac_dir: Path):
    # This AOI lies inside the bbox of the partial-coverage 13TDE scenes but outside their
    # footprint polygons; only the five full-coverage scenes really contain it.
    result = search_items(str(stac_dir), "-105.31,40.15,-105.29,40.16", "2024-03-01", "2024-05-01")

    assert list(result.ids) == [
        "S2B_T13TDE_20240331T175111_L2A",
        "S2A_T13TDE_20240405T175934_L2A",
        "S2B_T13TDE_20240410T175332_L2A",
        "S2A_T13TDE_20240415T180048_L2A",
        "S2B_T13TDE_20240420T175329_L2A",
    ]
    assert dict(result.dropped)["S2A_T13TDE_20240422T174753_L2A"].startswith("outside AOI")


def test_local_search_breaks_datetime_ties_by_id(stac_dir: Path):
    # The four Planetary Computer items (a plain JSON list) share one datetime.
    result = search_items(str(stac_dir), "92,80,98,83", "2024-04-19", "2024-04-19")

    assert list(result.ids) == sorted(result.ids)
    assert len(result.ids) == 4


def test_local_search_resolves_relative_hrefs_to_absolute_paths(stac_dir: Path):
    result = search_items(str(stac_dir), "-11.5,24.5,-11.0,25.0", "2020-02-19", "2020-02-19")

    href = result.items[0]["assets"]["red"]["href"]
    cogs = stac_dir.parent / "cogs" / "sentinel-2-l2a" / RKH_ID
    assert Path(href).is_absolute() and Path(href).is_file()
    assert Path(href).resolve() == (cogs / "B04.tif").resolve()  # also in symlinked checkouts


def test_local_search_drops_duplicate_id_keeping_first_file(stac_dir: Path):
    result = search_items(str(stac_dir), "-11.5,24.5,-11.0,25.0", "2020-02-19", "2020-02-19")

    assert result.ids == (RKH_ID,)
    (reason,) = [r for item_id, r in result.dropped if item_id == RKH_ID]
    assert reason.startswith("duplicate id") and "LOCAL-DERIVED" in reason.split("kept")[1]


def test_local_search_max_items_keeps_the_latest(stac_dir: Path):
    result = search_items(str(stac_dir), MNM_AOI, "2020-06-01", "2020-07-31", max_items=2)

    assert list(result.ids) == [
        "S2B_MSIL2A_20200726T080609_R078_T35MNM_20200908T180357",
        "S2A_MSIL2A_20200731T080611_R078_T35MNM_20200818T062751",
    ]
    assert sum(r.startswith("over max_items 2") for _, r in result.dropped) == 11


def test_local_search_accepts_a_single_item_collection_file(stac_dir: Path):
    result = search_items(str(stac_dir / MNM_FILE), MNM_AOI, "2020-06-10", "2020-07-05")

    assert list(result.ids) == _mnm_ids()
    assert {reason.split(" (")[0] for _, reason in result.dropped} == {"outside period"}


def test_local_search_keeps_items_without_cloud_cover_and_logs_it(
    stac_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    item = json.loads((stac_dir / MNM_FILE).read_text())["features"][0]
    del item["properties"]["eo:cloud_cover"]
    (tmp_path / "item.json").write_text(json.dumps(item))

    with caplog.at_level(logging.INFO, logger="terrawatch.tasks.core.catalog"):
        result = search_items(str(tmp_path), MNM_AOI, "2020-07-31", "2020-07-31", max_cloud=1)

    assert result.ids == (item["id"],)
    assert "has no eo:cloud_cover; kept" in caplog.text


def test_local_search_skips_unreadable_json_with_a_warning(
    stac_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    shutil.copy(stac_dir / MNM_FILE, tmp_path / "items.json")
    (tmp_path / "broken.json").write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="terrawatch.tasks.core.catalog"):
        result = search_items(str(tmp_path), MNM_AOI, "2020-06-10", "2020-07-05")

    assert list(result.ids) == _mnm_ids()
    assert "broken.json, not readable JSON" in caplog.text


def test_local_search_nothing_matching_raises_no_scenes_with_counts(stac_dir: Path):
    with pytest.raises(NoScenesError, match=r"cloud limit 0\.001 %.*13 over cloud limit 0\.001"):
        search_items(
            str(stac_dir),
            MNM_AOI,
            "2020-06-01",
            "2020-07-31",
            collections=["sentinel-2-l2a"],
            max_cloud=0.001,
        )


def test_local_search_outside_period_raises_no_scenes(stac_dir: Path):
    with pytest.raises(NoScenesError, match=r"period 2021-01-01T00:00:00Z.*13 outside period"):
        search_items(str(stac_dir), MNM_AOI, "2021-01-01", "2021-12-31")


def test_local_search_empty_folder_raises_no_scenes(tmp_path: Path):
    with pytest.raises(NoScenesError, match=r"holds no STAC Items.*terrawatch catalog add"):
        search_items(str(tmp_path), MNM_AOI, "2020-06-01", "2020-07-31")


def test_local_search_unknown_collection_lists_present_ones(stac_dir: Path):
    with pytest.raises(InputError, match=r"\['landsat-c2-l2'\] not found.*'sentinel-2-l2a'"):
        search_items(str(stac_dir), MNM_AOI, "2020-06-01", "2020-07-31", ["landsat-c2-l2"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aoi": "10,5,9,6"}, r"aoi=\[10.0, 5.0, 9.0, 6.0\] is empty or inverted"),
        ({"aoi": "10,5,11,5"}, "empty or inverted"),
        ({"aoi": [190, 0, 191, 1]}, r"outside lon -180\.\.180"),
        ({"aoi": (0, -95, 1, 1)}, r"lat -90\.\.90"),
        ({"aoi": "a,b,c,d"}, r"aoi='a,b,c,d' is not a bbox; write it as 'W,S,E,N'"),
        ({"aoi": [1, 2, 3]}, "must be 4 numbers"),
        ({"start": "2020-07-05", "end": "2020-06-10"}, r"start='2020-07-05' is after end"),
        ({"start": "yesterday"}, r"start='yesterday' is not a date; use 'YYYY-MM-DD'"),
        ({"end": "2020-13-01"}, r"end='2020-13-01' is not a date"),
        ({"collections": []}, r"collections=\(\) must be None or non-empty"),
        ({"max_cloud": 150}, r"max_cloud=150 must be a percentage in 0\.\.100"),
        ({"max_cloud": -1}, r"max_cloud=-1 must be a percentage"),
        ({"max_items": 0}, r"max_items=0 must be a positive integer"),
        ({"catalog": "/no/such/catalog"}, "no such local folder.*terrawatch catalog add"),
    ],
)
def test_search_rejects_bad_input_before_searching(stac_dir: Path, kwargs: dict, match: str):
    args = {"catalog": str(stac_dir), "aoi": MNM_AOI, "start": "2020-06-01", "end": "2020-07-31"}
    with pytest.raises(InputError, match=match):
        search_items(**{**args, **kwargs})


# ---------------------------------------------------------------------------------- parse_aoi


def test_parse_aoi_bbox_string_gives_polygon_and_bounds():
    geometry, bbox = parse_aoi("6.9, 50.9, 7.0, 51.0")

    assert geometry["type"] == "Polygon"
    assert bbox == (6.9, 50.9, 7.0, 51.0)


def test_parse_aoi_reads_a_geojson_feature_collection_file(tmp_path: Path):
    features = [
        {"type": "Feature", "properties": {}, "geometry": parse_aoi([0, 0, 1, 1])[0]},
        {"type": "Feature", "properties": {}, "geometry": parse_aoi([2, 2, 3, 3])[0]},
    ]
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))

    geometry, bbox = parse_aoi(path)

    assert geometry["type"] == "MultiPolygon"
    assert bbox == (0.0, 0.0, 3.0, 3.0)


def test_parse_aoi_rejects_a_self_intersecting_polygon():
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(InputError, match=r"invalid geometry.*Self-intersection"):
        parse_aoi(bowtie)


def test_parse_aoi_missing_file_names_it(tmp_path: Path):
    with pytest.raises(InputError, match=r"aoi file '.*nope\.geojson' does not exist"):
        parse_aoi(tmp_path / "nope.geojson")


# ------------------------------------------------------------------------- search parameters


def test_cloud_filter_goes_to_the_server_only_when_it_conforms_to_filter():
    query = _make_query(MNM_AOI, "2020-06-01", "2020-07-31", None, 20, 10)

    with_filter = _search_kwargs(query, filter_supported=True)
    without = _search_kwargs(query, filter_supported=False)

    assert with_filter["filter"] == {
        "op": "<=",
        "args": [{"property": "eo:cloud_cover"}, 20],
    }
    assert with_filter["max_items"] == 10
    assert "filter" not in without
    assert without["max_items"] == 100  # over-fetch: cloud cover is filtered client-side
    assert without["bbox"] == [27.2, -8.0, 27.5, -7.5]


def test_task_wrapper_does_not_retry_user_errors():
    assert search_items_task.name == "search-items"
    assert search_items_task.retries == 2
    assert not _retry_unless_user_error(None, None, Failed(data=InputError("bad aoi")))
    assert not _retry_unless_user_error(None, None, Failed(data=NoScenesError("none")))
    assert _retry_unless_user_error(None, None, Failed(data=ConnectionError("down")))
    assert _retry_unless_user_error(None, None, Completed(data=None))


# -------------------------------------------------------------- STAC API: real rustac server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rustac() -> str:
    beside = Path(sys.executable).parent / "rustac"
    found = str(beside) if beside.exists() else shutil.which("rustac")
    if not found:
        pytest.skip("the `rustac` CLI is not installed (pip install 'rustac>=0.9')")
    return found


@pytest.fixture(scope="module")
def stac_api(stac_dir: Path) -> str:
    """`rustac serve` (in-memory backend: no CQL2 filter) with the 35MNM and 13TDE items."""
    port = _free_port()
    files = [str(stac_dir / MNM_FILE), str(stac_dir / C1_FILE)]
    cmd = [_rustac(), "serve", "--create-collections", "--addr", f"127.0.0.1:{port}", *files]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rustac serve exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"rustac serve did not answer on {url} within 30 s")


def test_api_search_returns_the_same_sorted_items_as_the_local_backend(
    stac_api: str, stac_dir: Path
):
    args = (MNM_AOI, "2020-06-10", "2020-07-05")
    remote = search_items(stac_api, *args, collections=["sentinel-2-l2a"])
    local = search_items(str(stac_dir / MNM_FILE), *args, collections=["sentinel-2-l2a"])

    assert list(remote.ids) == _mnm_ids()
    assert remote.ids == local.ids
    assert remote.catalog == stac_api
    assert remote.items[0]["assets"]["B04"]["href"].startswith("https://")


def test_api_search_filters_cloud_cover_client_side(stac_api: str):
    # rustac's memory backend does not advertise CQL2 filter (and would return nothing for
    # one), so the limit must be applied here.
    result = search_items(
        stac_api, MNM_AOI, "2020-06-10", "2020-07-05", ["sentinel-2-l2a"], max_cloud=5
    )

    assert list(result.ids) == _mnm_ids(5)
    assert sorted(item_id for item_id, _ in result.dropped) == sorted(
        item_id for item_id, cloud in MNM_JUNE if cloud > 5
    )


def test_api_search_without_collections_searches_all(stac_api: str):
    result = search_items(stac_api, "-106.1,40.0,-106.0,40.1", "2024-04-01", "2024-04-30")

    assert {item["collection"] for item in result.items} == {"sentinel-2-c1-l2a"}
    assert len(result.ids) == 4


def test_api_unknown_collection_lists_available_ones(stac_api: str):
    with pytest.raises(
        InputError, match=r"\['landsat-c2-l2'\] not found in STAC catalog.*'sentinel-2-c1-l2a'"
    ):
        search_items(stac_api, MNM_AOI, "2020-06-01", "2020-07-31", ["landsat-c2-l2"])


def test_api_nothing_matching_raises_no_scenes(stac_api: str):
    with pytest.raises(NoScenesError, match=r"no scenes in 'http://127\.0\.0\.1:\d+/'"):
        search_items(stac_api, MNM_AOI, "2019-01-01", "2019-12-31", ["sentinel-2-l2a"])


def test_unreachable_api_raises_one_connection_error_with_offline_hint():
    url = f"http://127.0.0.1:{_free_port()}/"  # nothing listens there

    with pytest.raises(ConnectionError, match=r"Could not reach the STAC catalog.*--catalog DIR"):
        search_items(url, MNM_AOI, "2020-06-01", "2020-07-31")


def test_offline_mode_refuses_public_catalogs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TERRAWATCH_OFFLINE", "1")

    with pytest.raises(ConnectionError, match=r"offline mode is on.*--catalog DIR"):
        search_items("earth-search", MNM_AOI, "2020-06-01", "2020-07-31")


def test_named_catalog_validates_input_before_going_remote(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TERRAWATCH_OFFLINE", "1")  # a remote call would raise ConnectionError

    with pytest.raises(InputError, match="max_cloud=101"):
        search_items("planetary-computer", MNM_AOI, "2020-06-01", "2020-07-31", max_cloud=101)
