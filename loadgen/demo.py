"""``make demo``: a realistic workload against the running system, then what users see.

Many users, Zipf post popularity, one viral post, unlikes and client retries with the
same Idempotency-Key go through the HTTP API; then the script prints what a feed service
reads from Redis, what an analyst gets from ClickHouse, and the drift check.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import redis

from core.settings import CommonSettings
from loadgen.workload import Workload, register_posts, run_workload
from ops.analytics import query
from ops.drift import measure
from schemas.redis_keys import HOT_KEY, TRENDING_KEY, count_key


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def main() -> None:
    """Drive the workload and print what each kind of user sees."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--operations", type=int, default=10_000)
    ap.add_argument("--posts", type=int, default=300)
    a = ap.parse_args()
    s = CommonSettings()
    base = random.randrange(10**12, 2**62)
    posts = list(range(base, base + a.posts))
    secret = s.jwt_secret.get_secret_value()
    asyncio.run(register_posts(s.api_url, secret, posts, author=base))
    print(f"registered {len(posts)} posts; post {posts[0]} will go viral")
    res = asyncio.run(
        run_workload(s.api_url, secret, Workload(posts=posts, operations=a.operations))
    )
    print(
        f"sent {res.ops} requests in {res.seconds:.1f}s ({res.ops / res.seconds:.0f}/s), "
        f"p50 {_percentile(res.latencies_ms, 50):.1f} ms, "
        f"p99 {_percentile(res.latencies_ms, 99):.1f} ms; {res.replayed} retries replayed, "
        f"errors {res.errors or 'none'}"
    )
    time.sleep(5)
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    top = posts[:5]
    counts = r.mget([count_key(p) for p in top])
    print("\nfeed service (Redis MGET likes:count:*):")
    for p, c in zip(top, counts, strict=True):
        print(f"  post {p}: {c if c is not None else 0!s} likes")
    print("  hot:", r.zrevrange(HOT_KEY, 0, 4, withscores=True))
    print("  trending:", r.zrevrange(TRENDING_KEY, 0, 4))
    cols, rows = query(
        s,
        "SELECT post_id, sum(likes) AS likes, sum(unlikes) AS unlikes, "
        f"sum(net) AS net FROM likes.post_like_windows WHERE post_id >= {base} "
        f"AND post_id < {base + a.posts} GROUP BY post_id "
        "ORDER BY likes DESC LIMIT 5",
    )
    print("\nanalyst (ClickHouse likes.post_like_windows, top posts):")
    print("  " + "\t".join(cols))
    for row in rows:
        print("  " + "\t".join(str(v) for v in row))
    report = measure(s, posts)
    print(f"\ndrift against the edge store: {report.summary()}")


if __name__ == "__main__":
    main()
