"""Settings shared by every process kind, read from ``LIKES_*`` environment variables.

Defaults make the local stack (started by ``make up``) work with no variable set.
Each process kind extends :class:`CommonSettings`; values are passed explicitly into
sinks and flows rather than imported deep inside them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class CommonSettings(BaseSettings):
    """Where the stores are and where local runtime data lives."""

    model_config = SettingsConfigDict(env_prefix="LIKES_", extra="ignore")

    home: Path = Field(default=REPO_ROOT / ".local", description="runtime data, logs, PID files")
    api_url: str = "http://127.0.0.1:8000"
    postgres_url: str = "postgresql://likes:likes@127.0.0.1:55432/likes"
    redis_url: str = "redis://127.0.0.1:56379/0"
    kafka_bootstrap: str = "127.0.0.1:59092"
    kafka_controller_port: int = 59093
    connect_url: str = "http://127.0.0.1:58083"
    clickhouse_url: str = ""
    analytics_port: int = 58124
    jwt_secret: SecretStr = SecretStr("likestream-dev-secret-not-for-production")
    events_topic: str = "likes.events"
    dlq_topic: str = "likes.events.dlq"
    hot_topic: str = "likes.hot_posts"

    @property
    def effective_clickhouse_url(self) -> str:
        """The ClickHouse URL; embedded chDB under ``home`` unless set."""
        return self.clickhouse_url or f"chdb://{(self.home / 'chdb').resolve()}"

    def public_dict(self) -> dict[str, str]:
        """Effective settings for display, secrets masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            out[name] = "**********" if isinstance(value, SecretStr) else str(value)
        out["clickhouse_url"] = self.effective_clickhouse_url
        return out
