"""Object-store credentials of tile writes, from Prefect Secret blocks, never in a worker's env.

Whoever reaches a Dask scheduler can read its workers' environment
(``Client(...).run(lambda: dict(os.environ))``), so storage keys placed there are handed to
everyone on the cluster's network. Here the Dask workers start with none: the run's tile
coordinator (a Prefect task, holding its flow run's API settings) loads the Secret blocks when
it starts writing a store (:func:`resolve_store_credentials`), and hands them to each tile with
the tile's task (:func:`use_store_credentials`, which makes fsspec use them in that worker
process). The flow-run process gets the same blocks from the work pool's job template.

Trade-off: the keys travel inside the tile tasks (pickled, over the cluster's mutual TLS) and sit
in the worker processes' memory while they write, as fsspec defaults; a process holding a Dask
TLS certificate could still read them from a task. What is gone is the keys in every worker's
environment and the Prefect API's auth string beside them (workers need neither). They are never
logged: :class:`StoreCredentials` hides them from ``repr`` (Dask logs a failed task's
arguments). Stores of other clouds, and S3 without the blocks, use the default credential chain
of their filesystem (instance or pod identity, config files), which is what a cloud deployment
should prefer: then nothing is handed around at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEY_ID_BLOCK = "terrawatch-storage-key-id"
"""Prefect Secret block of the S3 access key id (deploy/work-pool.process.json, compose)."""
SECRET_KEY_BLOCK = "terrawatch-storage-secret-key"
"""Prefect Secret block of the S3 secret access key."""
S3_PROTOCOLS = ("s3", "s3a")


@dataclass(frozen=True)
class StoreCredentials:
    """fsspec options of one protocol (``key``/``secret`` for s3fs); ``repr`` shows no secret."""

    protocol: str
    options: dict[str, str] = field(repr=False)

    def __repr__(self) -> str:
        return f"StoreCredentials({self.protocol!r}, {sorted(self.options)} hidden)"


def resolve_store_credentials(store: str | None) -> StoreCredentials | None:
    """The Secret blocks' keys for an ``s3://`` store, loaded now (so a rotation takes effect at
    the next run); None for other stores or without the blocks (default credential chain).

    Call it where the flow run's Prefect settings are active (a Prefect task or the flow).
    """
    from fsspec.core import split_protocol
    from prefect.blocks.system import Secret

    protocol = split_protocol(str(store or ""))[0]
    if protocol not in S3_PROTOCOLS:
        return None
    try:
        key = Secret.load(KEY_ID_BLOCK).get()
        secret = Secret.load(SECRET_KEY_BLOCK).get()
    except ValueError:  # no such block: keys from the environment or the instance identity
        return None
    if not key or not secret:
        return None
    return StoreCredentials("s3", {"key": str(key), "secret": str(secret)})


def use_store_credentials(credentials: StoreCredentials | None) -> None:
    """Make this process's fsspec filesystems of ``credentials.protocol`` use them (no-op for
    None): fsspec applies ``fsspec.config.conf`` to every filesystem it creates, so zarr, the
    writer lease and xarray need no storage options passed down."""
    if credentials is None:
        return
    import fsspec.config

    # s3fs reads the defaults of both its protocols ("s3", "s3a"): one entry serves both
    fsspec.config.conf.setdefault(credentials.protocol, {}).update(credentials.options)
