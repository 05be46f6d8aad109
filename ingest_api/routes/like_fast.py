"""The like/unlike hot path: ``POST`` and ``DELETE /v1/posts/{post_id}/like`` served
without FastAPI's per-request machinery (dependency solving, parameter and response
models, its request and response objects).

Guarantee: a request this route takes gets the answer the documented FastAPI route in
:mod:`ingest_api.routes.likes` would give (status, body, headers), because both call the
same :func:`~ingest_api.routes.likes.mutate` and raise the same problems to the same
problem+json handlers. It takes only requests whose inputs are plainly well formed: a
canonical decimal post id (``[1-9][0-9]*``, at most ``2**63 - 1``) and at most one
``Idempotency-Key`` header, matching the documented pattern. Anything else (``05``,
``+5``, a key out of pattern, two keys, another method) is not matched here and falls
through to the FastAPI route, which owns input validation and its 422 answers.

Why it exists: under load the API is the largest CPU cost per like in the whole system,
and FastAPI's routing, dependency solving and response validation were about a quarter
of the API's samples (README, "Where the time goes now").
"""

from __future__ import annotations

import re
from typing import Any

from starlette._utils import get_route_path  # how Starlette's routes see the path
from starlette.datastructures import URL, URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from ingest_api.auth import MAX_ID
from ingest_api.deps import AppState, principal_of
from ingest_api.idempotency import KEY_RE
from ingest_api.models import LikeState
from ingest_api.routes.likes import REPLAYED, mutate

_PATH = re.compile(r"/v1/posts/([1-9][0-9]{0,18})/like")
_LIKED = {"POST": True, "DELETE": False}
_SCOPE_KEY = "likes.like_request"
_JSON = (b"content-type", b"application/json")
_REPLAYED = (REPLAYED.lower().encode(), b"true")


def _request(scope: Scope) -> tuple[int, bool, str | None, str | None] | None:
    """``(post_id, liked, authorization, idempotency_key)`` of a plainly well-formed
    like/unlike request, else None (the FastAPI route judges it)."""
    liked = _LIKED.get(scope["method"])
    if liked is None:
        return None
    m = _PATH.fullmatch(get_route_path(scope))
    if m is None:
        return None
    post_id = int(m[1])
    if post_id > MAX_ID:
        return None
    authorization: str | None = None
    key: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:  # Starlette's Headers.get: the first one
                authorization = value.decode("latin-1")
        elif name == b"idempotency-key":
            if key is not None:
                return None
            key = value.decode("latin-1")
    if key is not None and KEY_RE.fullmatch(key) is None:
        return None
    return post_id, liked, authorization, key


class FastLikeRoute(BaseRoute):
    """Like and unlike, for the requests :func:`_request` accepts (see the module)."""

    # the route label of the request metrics: the same as the FastAPI route's
    path = "/v1/posts/{post_id}/like"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        request = _request(scope)
        if request is None:
            return Match.NONE, {}
        # "route": FastAPI's router takes the selected route from the child scope (the
        # request metrics' label), where Starlette's sets it itself
        return Match.FULL, {"route": self, _SCOPE_KEY: request}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # the documented routes carry the names

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        post_id, liked, authorization, key = scope[_SCOPE_KEY]
        state: AppState = scope["app"].state.likes
        caller = principal_of(authorization, state.settings)
        done = await mutate(
            state,
            caller.user_id,
            method=scope["method"],
            # the idempotency fingerprint's path, as the FastAPI route reads it
            path=URL(scope=scope).path if key is not None else "",
            post_id=post_id,
            key=key,
            liked=liked,
        )
        body = LikeState.model_validate(done.body).model_dump_json().encode()
        headers = [(b"content-length", str(len(body)).encode()), _JSON]
        if done.replayed:
            headers.append(_REPLAYED)
        await send({"type": "http.response.start", "status": done.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
