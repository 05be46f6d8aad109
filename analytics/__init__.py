"""Analyst access to ClickHouse: read-only SQL that cannot touch the pipeline."""
