"""Typed stream helpers shared by the flows.

``op.branch`` narrows only its ``trues`` stream, and only for a predicate declared
``-> TypeGuard[...]`` (a lambda never narrows). :func:`split_by_type` branches on
``isinstance`` and types both outputs, so a stream of ``A | B`` items becomes a
``Stream[A]`` and a ``Stream[B]`` with no unwrap step. It adds exactly one ``branch``
step named ``step_id`` where it is called (it is not an ``@operator``, so it adds no
namespace of its own).
"""

from __future__ import annotations

from typing import TypeVar, cast

import bytewax.operators as op
from bytewax.dataflow import Stream

A = TypeVar("A")
B = TypeVar("B")


def split_by_type(
    step_id: str, up: Stream[A | B], yes: type[A], no: type[B]
) -> tuple[Stream[A], Stream[B]]:
    """Items that are instances of ``yes``, and the rest (which the type says are ``no``)."""
    branched = op.branch(step_id, up, lambda item: isinstance(item, yes))
    return cast(Stream[A], branched.trues), cast(Stream[B], branched.falses)
