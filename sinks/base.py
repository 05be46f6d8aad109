"""The one sink base: a store sink supplies its client and its write; this owns the rest.

What every :class:`StoreSink` promises, whatever the store:

- No I/O before the first non-empty batch; then one client per partition, kept open
  across batches.
- A transient store error (the backend decides which are) drops the client and retries
  the whole batch on a fresh one, with exponential backoff and jitter, for at most
  ``RetryPolicy.budget_s`` seconds. Retrying a whole batch is safe because every
  backend's write is idempotent under replay (its module says how).
- Any other error, and a transient one past the budget, raises :class:`SinkError` whose
  ``__cause__`` is the store's error: the flow stops and resumes from its last snapshot.
- ``close()`` may be called any number of times.
- Every batch is measured (``sinks.metrics``) under the sink's stable ``name``.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    wait_exponential_jitter,
)

from core import watchdog
from sinks.errors import SinkError
from sinks.metrics import SINK_ERRORS, SINK_RETRIES, SINK_WRITE_SECONDS

log = logging.getLogger(__name__)
T = TypeVar("T")
C = TypeVar("C")


@dataclass(frozen=True)
class RetryPolicy:
    """How long transient errors are retried, and how attempts are spaced.

    The n-th retry waits ``first_backoff_s * 2**(n-1)`` plus a random jitter of up to
    ``first_backoff_s``, capped at ``max_backoff_s``; no retry starts whose wait would end
    past ``budget_s`` after the first attempt began.
    """

    budget_s: float = 60.0
    first_backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    def retrying(
        self,
        retryable: Callable[[BaseException], bool],
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` that applies this policy to errors ``retryable``
        accepts (the last error re-raised once the budget is spent)."""
        return Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_before_delay(self.budget_s),
            wait=wait_exponential_jitter(
                multiplier=self.first_backoff_s,
                max=self.max_backoff_s,
                jitter=self.first_backoff_s,
            ),
            before_sleep=before_sleep,
            reraise=True,
        )


DEFAULT_RETRY = RetryPolicy()


def reporting(name: str) -> Callable[[RetryCallState], None]:
    """A ``before_sleep`` that makes a retry of ``name`` visible: a warning with the
    error, ``likes_sink_retries_total{sink=name}``, and a watchdog beat (retrying
    within the budget is progress, not a stall). Every retry loop of a write path uses
    it, inside a sink or not."""

    def report(state: RetryCallState) -> None:
        watchdog.beat()
        SINK_RETRIES.labels(name).inc()
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "%s: transient error (%s: %s); retry %d in %.2fs",
            name,
            type(error).__name__,
            error,
            state.attempt_number,
            state.upcoming_sleep,
        )

    return report


class StoreSink(DynamicSink[T], Generic[T, C]):
    """A sink into one store. A backend supplies ``connect``, ``disconnect``,
    ``is_transient`` and ``write``; constructors keep configuration only."""

    def __init__(self, name: str, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.name = name
        self.retry = retry

    @abstractmethod
    def connect(self) -> C:
        """A new client (on the first write, and after each transient error)."""

    @abstractmethod
    def disconnect(self, client: C) -> None:
        """Release ``client``; it is never used again."""

    @abstractmethod
    def is_transient(self, error: Exception) -> bool:
        """True if ``error`` may go away by itself, so a retry on a fresh client can succeed."""

    @abstractmethod
    def write(self, client: C, items: list[T]) -> None:
        """Apply ``items``, idempotently: a replay of the batch must change nothing."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition[T, C]:
        """One partition per worker; it connects on its first write."""
        return _StorePartition(self)


class _StorePartition(StatelessSinkPartition[T], Generic[T, C]):
    def __init__(self, sink: StoreSink[T, C]) -> None:
        self._sink = sink
        self._client: C | None = None
        self._retrying = sink.retry.retrying(self._retryable, self._before_retry)
        self._report = reporting(sink.name)

    def write_batch(self, items: list[T]) -> None:
        if not items:
            return
        name = self._sink.name
        with SINK_WRITE_SECONDS.labels(name).time():
            try:
                self._retrying(self._attempt, items)
            except Exception as e:
                SINK_ERRORS.labels(name).inc()
                raise SinkError(f"{name}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        self._drop_client()

    def _attempt(self, items: list[T]) -> None:
        if self._client is None:
            self._client = self._sink.connect()
        self._sink.write(self._client, items)

    def _retryable(self, error: BaseException) -> bool:
        return isinstance(error, Exception) and self._sink.is_transient(error)

    def _before_retry(self, state: RetryCallState) -> None:
        self._report(state)  # then reconnect: the next attempt gets a fresh client
        self._drop_client()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            self._sink.disconnect(client)
        except Exception:  # the client is discarded either way
            log.warning("%s: closing the client failed", self._sink.name, exc_info=True)
