"""The flows' side of the writer lease: hold it for a whole run, hand its token to the tiles.

:func:`holds_writer_lease` wraps a flow function whose ``store`` parameter names its cube; the
tile jobs carry :func:`writer_token` and the flow checks :func:`held_lease` before publishing
(:mod:`terrawatch.tasks.core.writer_lease` says what the lease guarantees).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from terrawatch.tasks.core.run_watch import RunStoppedError
from terrawatch.tasks.core.writer_lease import WriterLease, writer_lease

_HELD: ContextVar[dict[str, WriterLease] | None] = ContextVar(
    "terrawatch_writer_leases", default=None
)
F = TypeVar("F", bound=Callable[..., Any])


def holds_writer_lease(fn: F) -> F:
    """Run a flow function holding the writer lease of its ``store`` parameter.

    The lease is taken before the flow's first step, so a busy cube is refused (or waited for)
    before any search or model load, renewed while the tiles are written and given back when the
    function returns or raises. The flow reads the token with :func:`writer_token`.
    """
    import inspect

    # annotations resolved in the flow's module: Prefect builds the parameter model from the
    # wrapper's signature and would resolve string annotations in this module's globals
    signature = inspect.signature(fn, eval_str=True)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _call_holding_lease(fn, signature, args, kwargs)

    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _call_holding_lease(
    fn: Callable[..., Any], signature: Any, args: tuple, kwargs: dict[str, Any]
) -> Any:
    """``fn(*args, **kwargs)`` holding the lease of its ``store`` argument.

    A module-level function, not the wrapper's body: Prefect pickles the flow function into
    its task runs' context, and a wrapper that named this module's ContextVar could not be.
    """
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError
    from prefect.runtime import flow_run

    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    store = str(bound.arguments["store"])
    run_id = str(flow_run.get_id() or "")
    try:
        log = get_run_logger()  # the waiting and takeover lines belong in the run's log
    except MissingContextError:  # the plain function (flow.fn), outside a run
        log = None
    with writer_lease(store, run_id, log=log) as lease:
        reset = _HELD.set({**(_HELD.get() or {}), store: lease})
        try:
            return fn(*args, **kwargs)
        except RunStoppedError as stopped:
            if not stopped.cancelled:
                raise
            from prefect.states import Cancelled

            # the run was cancelled through the API while its tiles were written: it ends
            # Cancelled, as asked, not Failed (a terminal Cancelled may still become Failed)
            return Cancelled(message=str(stopped))
        finally:
            _HELD.reset(reset)


def held_lease(store: str) -> WriterLease:
    """The lease this flow holds on ``store`` (inside a :func:`holds_writer_lease` function)."""
    lease = (_HELD.get() or {}).get(str(store))
    if lease is None:
        raise RuntimeError(
            f"no writer lease held on {store!r}: decorate the flow with holds_writer_lease"
        )
    return lease


def writer_token(store: str) -> str:
    """The token the tiles of this flow carry for ``store``."""
    return held_lease(store).token
