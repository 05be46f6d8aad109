"""The OpenAPI document: problem+json error responses, documented headers, bearer auth.

Routes declare the errors they can return with :func:`problem_responses`; each one is
``application/problem+json`` with the shared ``Problem`` schema, which
:class:`LikesAPI` adds to the document's components. :class:`LikesAPI` also puts back
the exact component schemas: FastAPI's document model types numeric bounds as floats,
which turns the 64-bit id maximum ``2**63 - 1`` into ``9.223372036854776e18`` (``2**63``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ingest_api import models
from ingest_api.problems import PROBLEM_JSON, Problem

PROBLEM_REF = "#/components/schemas/Problem"

_DESCRIPTIONS = {
    401: "The bearer token is missing, malformed, invalid or expired.",
    403: "The token lacks the required scope, or the data belongs to another user.",
    404: "The post does not exist.",
    409: "A conflicting request: the same Idempotency-Key is still in flight, "
    "or the post is registered to another author.",
    410: "The post was deleted.",
    422: "The request is not valid: path, query, header or body.",
    429: "Too many mutations by this user; retry after `Retry-After` seconds.",
    503: "The edge store is unavailable; retry after `Retry-After` seconds.",
}

RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The authentication scheme to use: `Bearer`.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    409: {"Retry-After": RETRY_AFTER},
    429: {"Retry-After": {**RETRY_AFTER, "required": True}},
    503: {"Retry-After": {**RETRY_AFTER, "required": True}},
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status as problem+json with its headers."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[status] = response
    return out


def exact_schemas() -> dict[str, Any]:
    """The JSON schema of every body model (and ``Problem``), as pydantic writes it."""
    bodies: list[type[BaseModel]] = [Problem]
    for m in vars(models).values():
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == models.__name__:
            bodies.append(m)
    _, top = models_json_schema(
        [(m, "validation") for m in bodies],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = top["$defs"]
    return defs


class LikesAPI(FastAPI):
    """FastAPI whose OpenAPI document has exact body schemas and the ``Problem`` schema."""

    def openapi(self) -> dict[str, Any]:
        """The document, built once."""
        if self.openapi_schema is None:
            doc = super().openapi()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(exact_schemas())
        return super().openapi()
