"""The erased-users cache beside the ClickHouse writers, on a real embedded store: an
erasure (which holds the store's lock) and a writer re-reading the set (which holds the
cache's lock, then waits for the store's) never wait on each other forever, and the
writer sees the erased user afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sinks import clickhouse_store
from sinks.clickhouse_erasure import ErasedUsers, erase_user

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"chdb://{tmp_path_factory.mktemp('erasure') / 'store'}"
    clickhouse_store.ensure_schema(url)
    yield url
    clickhouse_store.close_all()  # later tests may open another store path


def test_an_erasure_during_a_re_read_does_not_deadlock(store: str) -> None:
    cache = ErasedUsers(store, ttl_s=3600)
    assert cache.ids() == frozenset()
    cache.invalidate()
    seen: list[frozenset[int]] = []
    with clickhouse_store.LOCK:  # as erase_user holds it
        reader = threading.Thread(target=lambda: seen.append(cache.ids()), daemon=True)
        reader.start()  # takes the cache's lock, then waits for the store's
        reader.join(0.3)
        assert reader.is_alive()
        invalidating = threading.Thread(target=cache.invalidate, daemon=True)
        invalidating.start()
        invalidating.join(2)
        assert not invalidating.is_alive(), "invalidate waited for the reader: deadlock"
    reader.join(10)
    assert not reader.is_alive() and seen == [frozenset()]
    # the invalidation came during that read, so the next call reads again
    user = 4_242
    erase_user(store, user)
    assert user in cache.ids()
