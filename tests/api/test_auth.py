"""Token verification: one algorithm, ``exp`` required, the user only from ``sub``."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from ingest_api.auth import issue_token, verify
from ingest_api.problems import ProblemError

SECRET = "s" * 40


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def test_valid_token_gives_user_and_scopes() -> None:
    p = verify(f"Bearer {issue_token(SECRET, 42, scope='posts:write a')}", SECRET)
    assert p.user_id == 42 and p.scopes == {"posts:write", "a"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic abc",
        "Bearer not-a-jwt",
        "Bearer " + issue_token("another-secret-of-sufficient-length!!", 1),
        "Bearer " + issue_token(SECRET, 1, ttl_s=-60),
        "Bearer "
        + _b64({"alg": "none", "typ": "JWT"})
        + "."
        + _b64({"sub": "1", "exp": int(time.time()) + 60})
        + ".",
        "Bearer " + jwt.encode({"sub": "1"}, SECRET, algorithm="HS256"),  # no exp
        "Bearer "
        + jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512"),
        "Bearer " + jwt.encode({"sub": "abc", "exp": int(time.time()) + 60}, SECRET),
        "Bearer " + jwt.encode({"sub": "0", "exp": int(time.time()) + 60}, SECRET),
        "Bearer " + jwt.encode({"sub": str(2**63), "exp": int(time.time()) + 60}, SECRET),
        "Bearer " + jwt.encode({"sub": 5, "exp": int(time.time()) + 60}, SECRET),
    ],
)
def test_bad_tokens_are_401(header: str | None) -> None:
    with pytest.raises(ProblemError) as e:
        verify(header, SECRET)
    assert e.value.status == 401


def test_a_remembered_token_still_expires_and_a_bad_one_is_never_remembered() -> None:
    token = issue_token(SECRET, 7, ttl_s=1)
    assert verify(f"Bearer {token}", SECRET, leeway_s=0).user_id == 7
    assert verify(f"Bearer {token}", SECRET, leeway_s=0).user_id == 7  # from memory
    time.sleep(1.1)
    with pytest.raises(ProblemError) as e:
        verify(f"Bearer {token}", SECRET, leeway_s=0)
    assert e.value.status == 401 and "expired" in e.value.detail
    with pytest.raises(ProblemError):
        verify(f"Bearer {token}", "another secret", leeway_s=60)  # same token, other secret
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):  # a failure is not remembered: it fails again, as invalid
        with pytest.raises(ProblemError) as e:
            verify(f"Bearer {forged}", SECRET, leeway_s=60)
        assert e.value.status == 401 and e.value.detail == "invalid token"
