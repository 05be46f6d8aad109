"""Prometheus metrics of every sink, labelled by the sink's stable ``name`` (contract §7).

- ``likes_sink_write_seconds``: the time a flow waited for one batch, retries included,
  whether the batch landed or not.
- ``likes_sink_retries_total``: transient store errors that were retried with a fresh client.
- ``likes_sink_errors_total``: batches that failed (a :class:`~sinks.errors.SinkError` was
  raised: a permanent error, or a transient one past the retry budget). A retried error
  that ends in success is not counted here.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SINK_WRITE_SECONDS = Histogram(
    "likes_sink_write_seconds",
    "Seconds a sink took to apply a batch, retries included",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SINK_ERRORS = Counter(
    "likes_sink_errors_total", "Batches a sink failed to apply (SinkError raised)", ["sink"]
)
SINK_RETRIES = Counter(
    "likes_sink_retries_total", "Transient store errors a sink retried", ["sink"]
)
