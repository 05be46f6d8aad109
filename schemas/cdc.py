"""Names the CDC pipeline is known by (they match ``stack/connect/likes-outbox-connector.json``)."""

from __future__ import annotations

SLOT_NAME = "likes_outbox"
CONNECTOR_NAME = "likes-outbox"
