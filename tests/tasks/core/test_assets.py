"""Tests for tasks.core.assets: hrefs as the readers open them, SAS tokens renewed before expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import planetary_computer
import pytest
import requests

from terrawatch.errors import InputError
from terrawatch.tasks.core.assets import SAS_RENEW_MARGIN, asset_href, fresh_href

BLOB = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/29/R/KH/B04_10m.tif"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _signed(expiry: datetime) -> str:
    """A Planetary Computer style signed href: the SAS token is the whole query."""
    se = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{BLOB}?st=2026-11-25T10%3A00%3A00Z&se={se}&sp=rl&sv=2024-05-04&sr=c&sig=abc%3D"


@pytest.fixture
def token_service(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Planetary Computer's token endpoint, at the network edge: records what it signs."""
    signed: list[str] = []

    def sign(href: str) -> str:
        signed.append(href)
        return f"{href}?se=2026-11-25T14%3A00%3A00Z&sp=rl&sig=renewed"

    monkeypatch.setattr(planetary_computer, "sign", sign)
    return signed


def test_expired_token_is_renewed_from_the_bare_url(token_service: list[str]) -> None:
    href = fresh_href(_signed(NOW - timedelta(minutes=1)), now=NOW)

    assert token_service == [BLOB]
    assert parse_qs(urlsplit(href).query)["sig"] == ["renewed"]


def test_token_about_to_expire_is_renewed(token_service: list[str]) -> None:
    # a read that starts just before expiry may still be running after it
    fresh_href(_signed(NOW + SAS_RENEW_MARGIN - timedelta(seconds=1)), now=NOW)

    assert token_service == [BLOB]


@pytest.mark.parametrize(
    "href",
    [
        _signed(NOW + SAS_RENEW_MARGIN + timedelta(minutes=1)),  # still valid long enough
        BLOB,  # public container, not signed
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/x/B04.tif?se=2000-01-01T00:00:00Z",
        "/data/scene.tif",
        f"{BLOB}?se=not-a-date&sig=abc",  # not a token this code understands: left alone
    ],
)
def test_other_hrefs_are_left_alone_without_a_network_call(
    href: str, token_service: list[str]
) -> None:
    assert fresh_href(href, now=NOW) == href
    assert token_service == []


def test_asset_href_renews_the_items_expired_token(token_service: list[str]) -> None:
    # tile tasks resolve every href through asset_href, long after the search signed it
    item = {"id": "S2A_x", "assets": {"B04": {"href": _signed(datetime(2020, 1, 1, tzinfo=UTC))}}}

    href = asset_href(item, "B04")

    assert token_service == [BLOB]
    assert href.endswith("sig=renewed")


def test_relative_href_is_still_refused() -> None:
    with pytest.raises(InputError, match="hrefs must be absolute"):
        asset_href({"id": "x", "assets": {"B04": {"href": "B04.tif"}}}, "B04")


def test_unreachable_token_service_names_the_href_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def offline(href: str) -> str:
        raise requests.ConnectionError("Max retries exceeded")

    monkeypatch.setattr(planetary_computer, "sign", offline)

    with pytest.raises(ValueError, match=r"B04_10m\.tif.*expired.*could not be renewed.*rerun"):
        fresh_href(_signed(NOW - timedelta(hours=1)), now=NOW)
