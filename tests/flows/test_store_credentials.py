"""Object-store keys from Prefect Secret blocks, handed to tiles (tasks/core/store_credentials.py):
resolved for s3:// stores only, hidden from every repr, and applied to fsspec's filesystems."""

from __future__ import annotations

import fsspec
import pytest

from terrawatch.tasks.core.store_credentials import (
    KEY_ID_BLOCK,
    SECRET_KEY_BLOCK,
    StoreCredentials,
    resolve_store_credentials,
    use_store_credentials,
)

SECRET = "secret-never-shown-5c2e"


@pytest.fixture
def storage_blocks(prefect_api):
    """The two Secret blocks an operator saves; deleted afterwards (other tests write S3 with
    their own keys)."""
    from prefect.blocks.system import Secret

    Secret(value="key-id-1").save(KEY_ID_BLOCK, overwrite=True)
    Secret(value=SECRET).save(SECRET_KEY_BLOCK, overwrite=True)
    try:
        yield
    finally:
        for name in (KEY_ID_BLOCK, SECRET_KEY_BLOCK):
            Secret.delete(name)


def test_s3_store_gets_the_blocks_keys_and_no_repr_shows_them(storage_blocks):
    credentials = resolve_store_credentials("s3://cubes/koeln.zarr")
    assert credentials == StoreCredentials("s3", {"key": "key-id-1", "secret": SECRET})
    assert SECRET not in repr(credentials) + str(credentials) + repr([credentials])
    assert resolve_store_credentials("/data/cubes/koeln.zarr") is None
    assert resolve_store_credentials("gs://cubes/koeln.zarr") is None  # default chain


def test_without_blocks_the_default_credential_chain_is_used(prefect_api):
    assert resolve_store_credentials("s3://cubes/koeln.zarr") is None


def test_applied_credentials_reach_new_s3_filesystems(monkeypatch):
    monkeypatch.setattr(fsspec.config, "conf", {})
    use_store_credentials(None)
    assert "s3" not in fsspec.config.conf
    use_store_credentials(StoreCredentials("s3", {"key": "k", "secret": SECRET}))
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    assert (fs.key, fs.secret) == ("k", SECRET)
    assert fsspec.filesystem("s3a", skip_instance_cache=True).secret == SECRET
