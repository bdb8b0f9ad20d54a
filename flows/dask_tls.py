"""Dask TLS of flow runs: a ``tls://`` scheduler is reached with Dask's own TLS settings.

A shared scheduler runs with mutual TLS (deploy/README.md, "Dask TLS"): it accepts only clients
holding a certificate its CA signed, so reaching port 8786 no longer lets anyone run code on the
workers or read their environment. The flow run's client certificate comes from Dask's standard
settings (``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``, ``..._CLIENT__CERT``, ``..._CLIENT__KEY``),
which ``distributed.Client`` reads itself: one home per setting, nothing of terrawatch's own.

Without them Dask fails deep in the first connection ("TLS expects a `ssl_context` argument"),
after the run has started; :func:`check_dask_tls` says what is missing in one line first.
"""

from __future__ import annotations

import os
from pathlib import Path

from terrawatch.errors import InputError

CA_FILE = ("distributed.comm.tls.ca-file", "DASK_DISTRIBUTED__COMM__TLS__CA_FILE")
CLIENT_CERT = ("distributed.comm.tls.client.cert", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT")
CLIENT_KEY = ("distributed.comm.tls.client.key", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY")
REQUIRE_ENCRYPTION = (
    "distributed.comm.require-encryption",
    "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION",
)
HELP = "deploy/README.md, 'Dask TLS'; certificates: deploy/tls/make-certs.sh"


def check_dask_tls(address: str | None = None, flag: str = "--address") -> None:
    """Refuse, in one line, a scheduler address the flow run's TLS settings cannot reach.

    Args:
        address: The scheduler (``tls://host:8786``, ``tcp://...``); None: the one the flow's
            task runner takes from ``$TERRAWATCH_DASK_ADDRESS``, if any (else a local cluster,
            nothing to check).
        flag: What the user set ``address`` with, named in the message.

    Raises:
        InputError: a ``tls://`` address without a CA or client certificate configured, a
            configured file that does not exist, or a ``tcp://`` address while Dask is told to
            require encryption.
    """
    import dask.config

    from terrawatch.flows.runner import DASK_ADDRESS_ENV

    if not address:
        address, flag = os.environ.get(DASK_ADDRESS_ENV), f"${DASK_ADDRESS_ENV}"
    if not address:
        return
    if not address.startswith("tls://"):
        if dask.config.get(REQUIRE_ENCRYPTION[0], False) and "://" in address:
            raise InputError(
                f"{flag}={address} is not encrypted but ${REQUIRE_ENCRYPTION[1]} is set: "
                f"use the scheduler's tls:// address ({HELP})"
            )
        return
    missing = [env for key, env in (CA_FILE, CLIENT_CERT) if not dask.config.get(key, None)]
    if missing:
        raise InputError(
            f"{flag}={address} is a TLS scheduler but {' and '.join('$' + m for m in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: set them (and "
            f"${CLIENT_KEY[1]}) to the CA and the client certificate ({HELP})"
        )
    for key, env in (CA_FILE, CLIENT_CERT, CLIENT_KEY):
        path = dask.config.get(key, None)
        if path and not Path(path).is_file():
            raise InputError(f"${env}={path}: no such file on this host ({HELP})")
