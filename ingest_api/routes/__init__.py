"""ingest_api/routes package."""
