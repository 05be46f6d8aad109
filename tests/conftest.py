"""Shared fixtures: the real local stack (started, never mocked) and API clients.

Integration tests need Postgres, Redis, Kafka, Connect, the API and the flows. The
``stack`` fixture brings them up through the project's own ``devstack.stack.up``; if that
fails the tests fail: nothing here skips for a missing service.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import httpx
import pytest

from core.settings import CommonSettings
from devstack import stack as stack_ops
from ingest_api.auth import issue_token


@pytest.fixture(scope="session")
def settings() -> CommonSettings:
    return CommonSettings()


@pytest.fixture(scope="session")
def stack(settings: CommonSettings) -> CommonSettings:
    """Every component up and healthy (idempotent: a running stack is reused)."""
    stack_ops.up(settings)
    return settings


def token(settings: CommonSettings, user_id: int, scope: str = "", ttl: int = 3600) -> str:
    return issue_token(settings.jwt_secret.get_secret_value(), user_id, scope=scope, ttl_s=ttl)


def auth(settings: CommonSettings, user_id: int, scope: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, user_id, scope)}"}


@pytest.fixture()
def api(stack: CommonSettings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield client


_rng = random.SystemRandom()


def free_port() -> int:
    """A loopback TCP port free right now (for a server a test starts itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_id() -> int:
    """An id no other test (or earlier run) uses."""
    return _rng.randrange(10**12, 2**62)


def register_post(client: httpx.Client, settings: CommonSettings, author: int | None = None) -> int:
    post_id = fresh_id()
    r = client.put(
        f"/v1/posts/{post_id}",
        json={"author_id": author or fresh_id()},
        headers=auth(settings, fresh_id(), "posts:write"),
    )
    assert r.status_code == 201, r.text
    return post_id
