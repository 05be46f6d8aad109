"""The sinks' exception tree: one root, driver errors translated at the boundary."""

from __future__ import annotations


class SinkError(RuntimeError):
    """A sink could not apply a batch; the flow fails and resumes from its snapshot.

    The store's own error is its ``__cause__``.
    """


class KafkaDeliveryError(SinkError):
    """The broker did not acknowledge every record of a batch.

    ``transient`` says whether producing the batch again, on a new producer, can succeed
    (unacknowledged in time, broker unreachable, producer fenced off by a fatal error),
    as opposed to a record the broker will always refuse (too large, not authorized).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
