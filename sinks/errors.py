"""The sinks' exception tree: one root, driver errors translated at the boundary."""

from __future__ import annotations


class SinkError(RuntimeError):
    """A sink could not apply a batch; the flow fails and resumes from its snapshot."""


class KafkaDeliveryError(SinkError):
    """The broker did not acknowledge every record of a batch."""
