"""Operator tools: status, reconcile, analytics queries, CDC lag, post registry."""
