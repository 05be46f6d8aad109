"""Schemathesis hooks of ``test_openapi.py``: ids of this run's own, state-bound rejections.

Loaded by the Schemathesis CLI through ``SCHEMATHESIS_HOOKS`` (the test sets it, with
``LIKES_ST_USER`` and ``LIKES_ST_POST_BASE``). Invalid ids are never touched: the
negative tests see exactly what Schemathesis generated.

- Post ids: Schemathesis favours a few ids (1, 2, ``2**63 - 1``) and deletes them with
  ``DELETE /v1/posts/{post_id}``, for good in the shared stack, after which every later
  run only sees 410 for them. A valid generated ``post_id`` is moved into a range fresh
  for this run (``LIKES_ST_POST_BASE`` + id mod 2**32, the same id every time, so a
  registered post can then be liked), like the other tests' ``fresh_id()``.
- ``GET /v1/users/{user_id}/likes`` and the ``/v1/users/{user_id}/following`` routes
  answer 403 for anyone but the token's user: a valid generated ``user_id`` becomes that
  user, so the run sees their 200 responses too.

``positive_data_acceptance`` (ST202) expects a schema-valid request to be answered 2xx,
3xx, 401, 403, 404, 409, 429 or 5xx. Two answers of ours to schema-valid requests depend
on what happened before, not on the request, and both are in the contract (§4):

- ``410 Gone``: the post was deleted (the run deletes posts it registered, then likes
  them), or the caller was erased (the stateful phase follows the ``user_id`` of a like
  response to ``DELETE /v1/users/{user_id}``, erasing the run's own user, whose likes
  and follows are then refused for good, contract §4). It is 404's sibling, which the
  check accepts for the same reason.
- ``422`` for an ``Idempotency-Key`` this user already spent on a different request
  (Schemathesis reuses short keys such as ``0`` across like and unlike): the request is
  valid, its key is used up; the IETF Idempotency-Key draft prescribes 422 as well.

Only ST202 failures with exactly these problems are dropped; the CLI counts them in its
summary ("dropped by `filter_failure`"). Everything else still fails the run.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

OWN_ROUTES = {
    "/v1/users/{user_id}/likes",
    "/v1/users/{user_id}/following",
    "/v1/users/{user_id}/following/{followee_id}",
}
MAX_ID = 2**63 - 1
POST_SPAN = 2**32
KEY_REUSED = "Idempotency-Key was already used for a different request"
ERASED = {"an erased user cannot follow or be followed"}


def _erased_user(detail: str) -> bool:
    return (
        re.fullmatch(r"user [1-9][0-9]* was erased: their likes cannot change", detail) is not None
    )


def _problem(response: schemathesis.Response) -> dict[str, object]:
    try:
        body = json.loads(response.content or b"")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def is_state_dependent_rejection(failure: object, response: schemathesis.Response) -> bool:
    """Whether ``failure`` is ST202 for a deleted post, an erased caller or a spent
    Idempotency-Key."""
    if not isinstance(failure, RejectedPositiveData):
        return False
    problem = _problem(response)
    if response.status_code == 410:
        detail = str(problem.get("detail", ""))
        return detail.endswith(" was deleted") or detail in ERASED or _erased_user(detail)
    return response.status_code == 422 and problem.get("detail") == KEY_REUSED


def _is_valid_id(value: object) -> bool:
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,18}", value):
        value = int(value)
    return type(value) is int and 0 < value <= MAX_ID


def _run_post_id(post_id: int) -> int:
    base = int(os.environ["LIKES_ST_POST_BASE"])
    if base <= post_id < base + POST_SPAN:  # already moved, e.g. a link from a response
        return post_id
    return base + post_id % POST_SPAN


@schemathesis.hook
def map_case(
    context: schemathesis.HookContext, case: schemathesis.Case[Any]
) -> schemathesis.Case[Any]:
    """Valid post ids into this run's range; a valid ``user_id`` of own data to the caller."""
    params = case.path_parameters
    if not params:
        return case
    if _is_valid_id(params.get("post_id")):
        params["post_id"] = _run_post_id(int(params["post_id"]))
    if case.operation.path in OWN_ROUTES and _is_valid_id(params.get("user_id")):
        params["user_id"] = int(os.environ["LIKES_ST_USER"])
    return case


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: object,
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> bool:
    """Keep every failure but the two state-dependent rejections above."""
    return not is_state_dependent_rejection(failure, response)
