"""``OwnerOnlySink``: every item reaches the inner sink exactly once, written by the one
partition the owner lists (the cluster profile's two-process case is in tests/cluster)."""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from flows.streams import output
from sinks.owner import OWNER_KEY, OwnerOnlySink
from tests.flows.conftest import Runner


def test_every_item_written_once_through_the_owner(entry_point: Runner) -> None:
    items = list(range(500))
    written: list[int] = []
    flow = Dataflow("owner_sink")
    stream = op.input("in", flow, TestingSource(items, batch_size=7))
    output("out", stream, OwnerOnlySink(TestingSink(written), owns=True))
    entry_point(flow)
    assert sorted(written) == items  # values, unkeyed, none lost or doubled


def test_only_the_owner_lists_the_partition() -> None:
    inner: TestingSink[int] = TestingSink([])
    assert OwnerOnlySink(inner, owns=True).list_parts() == [OWNER_KEY]
    assert OwnerOnlySink(inner, owns=False).list_parts() == []
