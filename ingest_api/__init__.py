"""ingest_api package."""
