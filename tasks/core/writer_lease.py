"""One writer per cube, enforced by the storage: a writer lease beside the Zarr store.

Prefect's concurrency limits say who *should* write a cube; they cannot stop the Dask tiles of a
flow run whose process died (its slot expires, a rerun starts, and the orphaned tiles keep
writing). The lease makes the cube itself refuse a second writer:

- **Where**: ``<store>.terrawatch-lease/<generation>.json`` in the same storage as the store
  (a local folder or any fsspec URL). Beside the store, not in it: a fresh store must be an empty
  path when the first run creates it (``to_zarr(mode="w-")``), and the lease exists before that.
- **What**: owner run id, host, pid, acquisition time, last heartbeat, expiry and a random token.
  The token names the generation, so a check reads one small file.
- **Taking it**: create-if-absent of the next generation's file (:mod:`tasks.core.lease_files`):
  ``os.link`` of a complete temporary file locally (atomic on POSIX, NFS included), a
  conditional PUT (``If-None-Match: *``) through s3fs on S3 APIs (AWS S3, MinIO), and elsewhere
  fsspec's exists-then-write with a read-back, which is not atomic: it narrows the race to two
  takers within a second; it cannot close it (the runbook says so).
- **Holding it**: a heartbeat thread rewrites the file every TTL / :data:`HEARTBEAT_FRACTION`
  with a new expiry; a holder that finds a newer generation has lost the lease and stops.
- **Waiting or refusing**: a live lease of another run is waited for up to ``wait_s`` (0:
  refuse at once), then refused with a message naming the holder. A lease past its expiry, one
  released, one of the same flow run (a rescheduled crashed run) or one whose holder process is
  gone from this very host (same boot and pid namespace) is taken over by the next generation.
- **Every tile write** carries the token (:func:`check_writer_token`): a token of an older
  generation, a released or an expired lease refuses the write, so the tiles of a dead run stop
  writing once another run has taken the cube over (and once their lease has expired, even
  before). A tile that passed the check an instant before a takeover may still write that one
  chunk (the window of one chunk write); from the same scenes its data equals the new run's.

Expiry compares the holder's wall clock (written in the file) with the reader's: keep the
hosts' clocks in sync (NTP); a skew of seconds only shortens or lengthens a 30 s TTL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from terrawatch.errors import InputError, TerrawatchError
from terrawatch.tasks.core.lease_files import LEASE_SUFFIX, LeaseFiles

logger = logging.getLogger(__name__)

TTL_ENV = "TERRAWATCH_LEASE_TTL_S"
WAIT_ENV = "TERRAWATCH_LEASE_WAIT_S"
DEFAULT_TTL_S = 30.0
"""Seconds a lease stays valid without a heartbeat: how long a dead run blocks its cube."""
DEFAULT_WAIT_S = 90.0
"""Seconds a run waits for a busy cube before it refuses: over a TTL, so a rerun right after a
crash on another host takes the dead run's lease over instead of failing."""
HEARTBEAT_FRACTION = 6
"""Heartbeats per TTL: a TTL of 30 s renews every 5 s, so five missed writes still hold."""
POLL_SECONDS = 1.0
"""How often a waiting run looks at the lease again."""


class WriterLeaseError(TerrawatchError, RuntimeError):
    """The cube is written by another run, or this run's lease was taken over (exit code 1).

    Transient: the same run may succeed once the holder has finished, so Prefect may retry it.
    """

    transient = True


@dataclass(frozen=True)
class LeaseRecord:
    """The content of one lease file."""

    token: str
    generation: int
    run_id: str
    host: str
    host_id: str
    pid: int
    acquired: float
    heartbeat: float
    expires: float
    released: bool = False

    def describe(self) -> str:
        """The holder in words, for messages."""
        since = datetime.fromtimestamp(self.acquired, UTC).isoformat(timespec="seconds")
        beat = datetime.fromtimestamp(self.heartbeat, UTC).isoformat(timespec="seconds")
        return (
            f"flow run {self.run_id or '(none)'} on host {self.host} (pid {self.pid}), "
            f"since {since}, last heartbeat {beat}"
        )

    def takeable_by(self, run_id: str, now: float) -> bool:
        """Whether a run may take this lease over (released, expired, same run or dead holder)."""
        if self.released or now >= self.expires:
            return True
        if run_id and self.run_id == run_id:
            return True
        here = host_identity()
        return bool(here) and self.host_id == here and not _pid_alive(self.pid)


def host_identity() -> str:
    """This kernel boot and pid namespace: where a pid means the same process as here."""
    from pathlib import Path

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""  # unknown (not Linux): never judge another host's process dead by its pid
    return f"{boot}:{namespace}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _decode(raw: bytes | None) -> LeaseRecord | None:
    if raw is None:
        return None
    try:
        return LeaseRecord(**json.loads(raw))
    except (ValueError, TypeError):
        return None  # a foreign or torn file: treated as no lease of this generation


def _encode(record: LeaseRecord) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()


# --- the lease ---------------------------------------------------------------------------------


class WriterLease:
    """A held lease: renew it (:meth:`renew`), check it (:meth:`check`), give it back."""

    def __init__(self, files: LeaseFiles, record: LeaseRecord, ttl_s: float) -> None:
        self.files, self.record, self.ttl_s = files, record, ttl_s
        self.lost: str | None = None
        self.log: logging.Logger | logging.LoggerAdapter = logger
        self._lock = threading.Lock()

    @property
    def token(self) -> str:
        """What every tile write of this run carries (:func:`check_writer_token`)."""
        return self.record.token

    def renew(self) -> bool:
        """Push the expiry forward; False (and :attr:`lost` set) once another run took over."""
        with self._lock:
            if self.lost:
                return False
            if self.files.exists(self.record.generation + 1):
                self.lost = "another run took the lease over"
                return False
            now = time.time()
            record = _replace(self.record, heartbeat=now, expires=now + self.ttl_s)
            self.files.replace(record.generation, _encode(record))
            self.record = record
            return True

    def check(self) -> None:
        """Raise WriterLeaseError unless this run still holds the lease."""
        check_writer_token(self.files.url[: -len(LEASE_SUFFIX)], self.token)

    def release(self) -> None:
        """Mark the lease released (the next run takes it at once), unless it was lost."""
        with self._lock:
            if self.lost or self.files.exists(self.record.generation + 1):
                return
            record = _replace(self.record, released=True, expires=time.time())
            self.files.replace(record.generation, _encode(record))
            self.record = record


def _replace(record: LeaseRecord, **changes: Any) -> LeaseRecord:
    return LeaseRecord(**{**asdict(record), **changes})


def lease_settings() -> tuple[float, float]:
    """``(ttl_s, wait_s)`` from ``$TERRAWATCH_LEASE_TTL_S`` / ``$TERRAWATCH_LEASE_WAIT_S``."""
    return _env_seconds(TTL_ENV, DEFAULT_TTL_S, 1.0), _env_seconds(WAIT_ENV, DEFAULT_WAIT_S, 0.0)


def _env_seconds(name: str, default: float, least: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= least:
        raise InputError(f"${name} must be a number of seconds >= {least:g}, got {raw!r}")
    return value


def acquire_lease(
    store: str,
    run_id: str = "",
    *,
    ttl_s: float | None = None,
    wait_s: float | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> WriterLease:
    """Take the writer lease of ``store``, waiting up to ``wait_s`` for another run's to end.

    Args:
        store: The cube's path or fsspec URL.
        run_id: The flow run taking it (a lease of the same run is taken over at once).
        ttl_s: Validity without a heartbeat (default :func:`lease_settings`).
        wait_s: Longest wait for a live lease of another run; 0 refuses at once.
        log: Where the waiting and takeover lines go (the flow run's logger; default this
            module's).

    Raises:
        WriterLeaseError: Another run holds a live lease after ``wait_s``; names the holder.
    """
    log = log or logger
    env_ttl, env_wait = lease_settings()
    ttl_s = env_ttl if ttl_s is None else ttl_s
    wait_s = env_wait if wait_s is None else wait_s
    files = LeaseFiles(store)
    deadline = time.monotonic() + wait_s
    waited_for: str | None = None
    while True:
        try:
            gens = files.generations()
        except (NotADirectoryError, PermissionError) as error:
            raise _unwritable(files, error) from error
        current = _decode(files.read(gens[-1])) if gens else None
        last = gens[-1] if gens else 0
        now = time.time()
        if current is None or current.takeable_by(run_id, now):
            try:
                lease = _take(files, last + 1, run_id, ttl_s, now)
            except (NotADirectoryError, PermissionError) as error:
                raise _unwritable(files, error) from error
            if lease is not None:
                if current is not None and not current.released:
                    log.warning(
                        "took over the writer lease of %s from %s", store, current.describe()
                    )
                for old in gens[:-1]:
                    files.remove(old)
                return lease
            continue  # another run took that generation first: look again
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WriterLeaseError(
                f"cube {store!r} is being written by {current.describe()}; waited {wait_s:g} s. "
                f"Let that run finish or cancel it; a holder that stopped heartbeating is taken "
                f"over {ttl_s:g} s after its last heartbeat (set ${WAIT_ENV} to wait longer)"
            )
        if waited_for != current.token:
            waited_for = current.token
            log.warning("waiting up to %.0f s for the writer lease of %s, held by %s",
                           remaining, store, current.describe())  # fmt: skip
        time.sleep(min(POLL_SECONDS, remaining))


def _unwritable(files: LeaseFiles, error: OSError) -> InputError:
    return InputError(
        f"cannot create the writer lease {files.url!r} beside the store ({error}); "
        "pass a --store in a writable place"
    )


def _take(
    files: LeaseFiles, generation: int, run_id: str, ttl_s: float, now: float
) -> WriterLease | None:
    record = LeaseRecord(
        token=f"{generation:012d}-{uuid.uuid4().hex}",
        generation=generation,
        run_id=run_id,
        host=socket.gethostname(),
        host_id=host_identity(),
        pid=os.getpid(),
        acquired=now,
        heartbeat=now,
        expires=now + ttl_s,
    )
    try:
        files.create(generation, _encode(record))
    except FileExistsError:
        return None
    return WriterLease(files, record, ttl_s)


def check_writer_token(store: str, token: str) -> None:
    """Refuse a write whose token is not the store's live lease (older, released or expired).

    Raises:
        WriterLeaseError: The lease of ``token`` was taken over, released or has expired.
    """
    try:
        generation = int(token.split("-", 1)[0])
    except ValueError:
        raise WriterLeaseError(f"{token!r} is not a writer lease token of {store!r}") from None
    files = LeaseFiles(store)
    record = _decode(files.read(generation))
    if record is None or record.token != token:
        reason = "its lease is gone"
    elif files.exists(generation + 1):
        newer = _decode(files.read(generation + 1))
        reason = "another run took the cube over" + (f": {newer.describe()}" if newer else "")
    elif record.released:
        reason = "its run released the lease"
    elif time.time() >= record.expires:
        reason = "its lease expired (the run stopped heartbeating)"
    else:
        return
    owner = f"flow run {record.run_id or '(none)'}" if record else "a run"
    raise WriterLeaseError(f"refused a write to {store!r} by {owner}: {reason}")


@contextlib.contextmanager
def writer_lease(store: str, run_id: str = "", **kwargs: Any) -> Iterator[WriterLease]:
    """Hold the lease of ``store`` for the block: acquired, renewed by a thread, released."""
    lease = acquire_lease(store, run_id, **kwargs)
    lease.log = kwargs.get("log") or logger
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(lease, stop), name=f"lease {store}", daemon=True
    )
    beat.start()
    try:
        yield lease
    finally:
        stop.set()
        beat.join()
        try:
            lease.release()
        except Exception as error:  # never hide the run's own outcome; the lease expires anyway
            lease.log.warning("could not release the writer lease of %s: %s", store, error)


def _heartbeat(lease: WriterLease, stop: threading.Event) -> None:
    every = lease.ttl_s / HEARTBEAT_FRACTION
    while not stop.wait(every):
        try:
            if not lease.renew():
                lease.log.error("lost the writer lease of %s: %s", lease.files.url, lease.lost)
                return
        except Exception as error:  # storage hiccup: the next beat tries again
            lease.log.warning("writer lease heartbeat of %s failed: %s", lease.files.url, error)


def release_run_lease(store: str, run_id: str) -> bool:
    """Release the lease of ``store`` if flow run ``run_id`` holds it, from any process.

    What a cancellation or crash hook calls: the run's own process may be gone, and its tiles
    on the Dask workers refuse to write once the lease is released (:func:`check_writer_token`).

    Returns:
        True if a live lease of that run was released.
    """
    files = LeaseFiles(store)
    gens = files.generations()
    record = _decode(files.read(gens[-1])) if gens else None
    if record is None or not run_id or record.run_id != run_id or record.released:
        return False
    files.replace(record.generation, _encode(_replace(record, released=True, expires=time.time())))
    return True
