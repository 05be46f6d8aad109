"""Settings of the ingest API process."""

from __future__ import annotations

from ops.settings import CommonSettings


class ApiSettings(CommonSettings):
    """The API's knobs; every field is ``LIKES_<NAME>`` in the environment."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1
    pg_pool_min: int = 4
    pg_pool_max: int = 32
    pg_timeout_s: float = 3.0
    rate_limit_requests: int = 120
    rate_limit_window_s: int = 10
    viewer_cache_ttl_s: int = 3600
    idempotency_ttl_h: int = 24
    idempotency_stale_s: int = 30
    outbox_retention_s: int = 3600
    jwt_leeway_s: int = 5
