"""Typed stream helpers shared by the flows.

``op.branch`` narrows only its ``trues`` stream, and only for a predicate declared
``-> TypeGuard[...]`` (a lambda never narrows). :func:`split_by_type` branches on
``isinstance`` and types both outputs, so a stream of ``A | B`` items becomes a
``Stream[A]`` and a ``Stream[B]`` with no unwrap step. It adds exactly one ``branch``
step named ``step_id`` where it is called (it is not an ``@operator``, so it adds no
namespace of its own). :func:`output` writes a stream to any sink, keying its items for
their partition first when the sink is a :class:`~sinks.owner.RoutedSink`.
"""

from __future__ import annotations

from typing import TypeVar, cast

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import Sink

from sinks.owner import RoutedSink

A = TypeVar("A")
B = TypeVar("B")


def split_by_type(
    step_id: str, up: Stream[A | B], yes: type[A], no: type[B]
) -> tuple[Stream[A], Stream[B]]:
    """Items that are instances of ``yes``, and the rest (which the type says are ``no``)."""
    branched = op.branch(step_id, up, lambda item: isinstance(item, yes))
    return cast(Stream[A], branched.trues), cast(Stream[B], branched.falses)


def output(step_id: str, up: Stream[A], sink: Sink[A] | RoutedSink[A]) -> None:
    """``op.output``; for a :class:`RoutedSink` the items are keyed for it first."""
    if isinstance(sink, RoutedSink):
        key = sink.route_key
        keyed = op.key_on(f"{step_id}_to_part", up, lambda _item: key)
        op.output(step_id, keyed, sink)
        return
    op.output(step_id, up, sink)
