"""RFC 9457 problem details: the one shape of every error the API returns."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ProblemIssue(BaseModel):
    """One reason a request is not valid."""

    loc: list[str | int] = Field(
        description='Where: the request part, then the path inside it, e.g. ["query", "limit"].'
    )
    msg: str = Field(description="What is wrong there.")


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


class Problem(BaseModel):
    """An RFC 9457 problem: the body of every error response."""

    type: str = Field(default="about:blank", description="A URI naming the problem type.")
    title: str = Field(description="The HTTP status phrase, e.g. `Not Found`.")
    status: int = Field(ge=400, le=599, description="The HTTP status code, repeated.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The request path the problem occurred on.",
        json_schema_extra=_no_default,
    )
    errors: list[ProblemIssue] | SkipJsonSchema[None] = Field(
        default=None,
        description="Each invalid input (422 for malformed requests only).",
        json_schema_extra=_no_default,
    )


class ProblemError(Exception):
    """An error to report to the client as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.errors = errors


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem+json response, its body checked against :class:`Problem`."""
    problem = Problem(
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance or None,
        errors=None if errors is None else [ProblemIssue.model_validate(e) for e in errors],
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def allowed_methods(request: Request) -> str:
    """The ``Allow`` value for the request's path: every method any route serves there.

    Starlette answers 405 from the first route whose path matches, so a path served by
    several routes (``POST`` and ``DELETE /v1/posts/{post_id}/like``) would list one only.
    """
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and route.methods:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        instance=request.url.path,
        headers=exc.headers,
        errors=exc.errors,
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return problem_response(
        422, "the request is not valid", instance=request.url.path, errors=errors
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    if exc.status_code == 400:
        # FastAPI's only 400: a JSON body it cannot read (not UTF-8); invalid input is 422
        return problem_response(
            422, "the request body is not valid JSON", instance=request.url.path
        )
    return problem_response(
        exc.status_code, str(exc.detail), instance=request.url.path, headers=headers or None
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return problem_response(500, "internal error", instance=request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
