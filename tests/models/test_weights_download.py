"""The real weights download against an HTTP server on loopback: the network is the only fake.

The server serves the tiny CLIP checkpoint in OpenAI's format; the registry entry points at it
(the URL is the network edge). Each test clears the offline switch the suite sets, for itself.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from terrawatch.errors import WeightsCorruptError, WeightsNotFoundError
from terrawatch.flows.cli import main
from terrawatch.models.clip_backbone import load_clip
from terrawatch.models.weights import PARTIAL_SUFFIX, REGISTRY, WeightsEntry, resolve_weights

NAME = "tiny-clip-download"
FILENAME = "tiny-ViT-B-16.pt"


@dataclass
class Served:
    """What the loopback server sends, and the Range headers it was asked with."""

    payload: bytes
    cut_at: int | None = None
    """Send the full Content-Length but close the connection after this many body bytes."""
    ranges: bool = True
    """Answer ``Range: bytes=N-`` with 206; False: ignore it and send the whole file (200)."""
    requests: list[str | None] = field(default_factory=list)


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked = self.headers.get("Range")
            served.requests.append(asked)
            if self.path != f"/{FILENAME}":
                self.send_error(404)
                return
            body, start, total = served.payload, 0, len(served.payload)
            if asked and served.ranges:
                start = int(asked.removeprefix("bytes=").removesuffix("-"))
                if start >= total:
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            else:
                self.send_response(200)
            body = body[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if served.cut_at is not None:
                body, served.cut_at = body[: served.cut_at], None  # cut once, then serve whole
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def payload(tiny_clip_path: Path) -> bytes:
    return tiny_clip_path.read_bytes()


@pytest.fixture
def server(payload: bytes) -> Iterator[tuple[Served, str]]:
    served = Served(payload)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def online(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: tuple[Served, str], payload: bytes
) -> tuple[Served, Path]:
    """Downloads allowed (for this test only), an empty weights folder, the entry on loopback."""
    monkeypatch.delenv("TERRAWATCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    folder = tmp_path / "weights"
    monkeypatch.setenv("TERRAWATCH_WEIGHTS_DIR", str(folder))
    served, base = server
    entry = WeightsEntry(
        name=NAME,
        filename=FILENAME,
        url=f"{base}/{FILENAME}",
        sha256_prefix=hashlib.sha256(payload).hexdigest(),
        size="a few MiB",
        description="tiny test CLIP",
    )
    monkeypatch.setitem(REGISTRY, NAME, entry)
    return served, folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_lands_under_the_final_name_verified_and_loads(online, payload, tiny_clip_path):
    served, folder = online
    path = resolve_weights(NAME)
    assert path == folder / FILENAME
    assert _sha(path) == hashlib.sha256(payload).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == [FILENAME]  # no .partial left
    assert served.requests == [None]
    model = load_clip(path)
    for key, value in torch.load(tiny_clip_path, weights_only=True).items():
        assert torch.equal(model.state_dict()[key], value.float()), key
    assert resolve_weights(NAME) == path and len(served.requests) == 1  # second use: no fetch


def test_checksum_mismatch_is_a_corrupt_error_that_deletes_the_file(online, payload):
    served, folder = online
    served.payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])  # one byte changed in transit
    with pytest.raises(WeightsCorruptError) as caught:
        resolve_weights(NAME)
    message = str(caught.value)
    assert not isinstance(caught.value, WeightsNotFoundError)
    assert "corrupt" in message and "not found" not in message
    assert f"expected SHA-256 {hashlib.sha256(payload).hexdigest()}" in message
    assert f"got {hashlib.sha256(served.payload).hexdigest()}" in message
    assert "deleted" in message and f"terrawatch weights fetch {NAME}" in message
    assert list(folder.iterdir()) == []
    served.payload = payload  # the retry the message suggests works
    assert _sha(resolve_weights(NAME)) == hashlib.sha256(payload).hexdigest()


def test_corrupt_download_exits_with_its_own_code(online, payload, capsys):
    served, _ = online
    served.payload = b"<html>proxy login page</html>"
    assert main(["weights", "fetch", NAME]) == WeightsCorruptError.exit_code == 7
    assert "is corrupt" in capsys.readouterr().err


def test_interrupted_download_leaves_no_file_under_the_final_name(online, payload):
    served, folder = online
    served.cut_at = len(payload) // 3
    with pytest.raises(WeightsNotFoundError, match="connection closed after") as caught:
        resolve_weights(NAME)
    assert f"{len(payload) // 3} of {len(payload)} bytes" in str(caught.value)
    assert not (folder / FILENAME).exists()
    partial = folder / (FILENAME + PARTIAL_SUFFIX)
    assert partial.read_bytes() == payload[: len(payload) // 3]


def test_interrupted_download_resumes_with_a_range_request(online, payload):
    served, folder = online
    cut = len(payload) // 3
    served.cut_at = cut
    with pytest.raises(WeightsNotFoundError):
        resolve_weights(NAME)
    path = resolve_weights(NAME)
    assert served.requests == [None, f"bytes={cut}-"]
    assert path.read_bytes() == payload
    assert sorted(p.name for p in folder.iterdir()) == [FILENAME]


def test_resume_restarts_cleanly_when_the_server_ignores_ranges(online, payload):
    served, folder = online
    served.ranges = False
    folder.mkdir()
    (folder / (FILENAME + PARTIAL_SUFFIX)).write_bytes(b"stale bytes of another run")
    path = resolve_weights(NAME)
    assert served.requests == ["bytes=26-"]
    assert path.read_bytes() == payload


def test_a_partial_file_of_other_bytes_is_caught_by_the_checksum(online, payload):
    _, folder = online
    folder.mkdir()
    partial = folder / (FILENAME + PARTIAL_SUFFIX)
    partial.write_bytes(b"x" * 100)  # not a prefix of the file: resuming it cannot give it
    with pytest.raises(WeightsCorruptError, match="corrupt"):
        resolve_weights(NAME)
    assert list(folder.iterdir()) == []
    assert resolve_weights(NAME).read_bytes() == payload


def test_http_error_is_weights_not_found_naming_the_failure(online, monkeypatch):
    _, folder = online
    entry = REGISTRY[NAME]
    monkeypatch.setitem(
        REGISTRY, NAME, WeightsEntry(**{**entry.__dict__, "url": entry.url + ".missing"})
    )
    with pytest.raises(WeightsNotFoundError, match="download failed: HTTP Error 404"):
        resolve_weights(NAME)
    assert not (folder / FILENAME).exists()


def test_offline_forbids_the_download(online, monkeypatch):
    served, folder = online
    monkeypatch.setenv("TERRAWATCH_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="offline"):
        resolve_weights(NAME)
    assert served.requests == []
    assert not folder.exists() or list(folder.iterdir()) == []
