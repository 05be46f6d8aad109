"""Small pieces of the API without services: cursors, idempotency keys, id lists."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from ingest_api import cursor, idempotency
from ingest_api.auth import MAX_ID
from ingest_api.deps import parse_id_list
from ingest_api.likes_tx import LikeResult
from ingest_api.problems import ProblemError


def test_cursor_round_trip_and_rejects_garbage() -> None:
    ts = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    assert cursor.decode(cursor.encode(ts, 42)) == (ts, 42)
    assert cursor.decode(None) is None
    with pytest.raises(ProblemError) as e:
        cursor.decode("!!not-a-cursor")
    assert e.value.status == 422


def test_cursor_is_exactly_its_published_pattern() -> None:
    ts = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    for item_id in (1, MAX_ID):
        c = cursor.encode(ts, item_id)
        assert re.fullmatch(cursor.PATTERN, c) and len(c) <= cursor.MAX_LENGTH
        assert cursor.decode(c) == (ts, item_id)
    assert cursor.decode("") is None
    assert cursor.decode("ffffffffffffff.7fffffffffffffff") is not None  # any match decodes
    old = "WyIyMDI2LTExLTIxVDEwOjAwOjAwKzAwOjAwIiwgNDJd"  # the former base64 JSON cursor
    for bad in ("1.8000000000000000", "100000000000000.1", "A.1", "1.2.3", "1.", old):
        with pytest.raises(ProblemError) as e:
            cursor.decode(bad)
        assert e.value.status == 422


def test_idempotency_fingerprint_and_key_validation() -> None:
    a = idempotency.fingerprint("POST", "/v1/posts/1/like")
    assert a == idempotency.fingerprint("post", "/v1/posts/1/like")
    assert a != idempotency.fingerprint("DELETE", "/v1/posts/1/like")
    assert a != idempotency.fingerprint("POST", "/v1/posts/2/like")
    assert idempotency.validate_key("k" * 255) == "k" * 255
    assert idempotency.validate_key("a key, é") == "a key, é"
    for bad in ("", "k" * 256, "tab\there", " lead", "trail ", "soft\xadhyphen"):
        with pytest.raises(ProblemError):
            idempotency.validate_key(bad)


def test_id_lists() -> None:
    assert parse_id_list("3, 1,3", limit=100) == [3, 1, 3]
    for bad in ("", "1,,2", "0", "-1", "a", str(2**63), ",".join(["1"] * 101)):
        with pytest.raises(ProblemError):
            parse_id_list(bad, limit=100)


def test_like_result_body() -> None:
    assert LikeResult(1, 2, True, False, 3).body() == {
        "post_id": 1,
        "user_id": 2,
        "liked": True,
        "changed": False,
        "version": 3,
    }
