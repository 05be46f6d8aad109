"""Per-user rate limit on mutations: 429 with Retry-After past the limit."""

from __future__ import annotations

import httpx
import pytest

from core.settings import ApiSettings, CommonSettings
from tests.conftest import auth, fresh_id, register_post

pytestmark = pytest.mark.integration


def test_rate_limit_429_with_retry_after(api: httpx.Client, stack: CommonSettings) -> None:
    limit = ApiSettings().rate_limit_requests
    post, user = register_post(api, stack), fresh_id()
    h = auth(stack, user)
    # twice the limit: whatever window boundary falls inside, one window overflows
    codes = [api.post(f"/v1/posts/{post}/like", headers=h) for _ in range(2 * limit + 5)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, "no request was limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["content-type"].startswith("application/problem+json")
    other = api.post(f"/v1/posts/{post}/like", headers=auth(stack, fresh_id()))
    assert other.status_code == 200, "limits are per user"
