"""Metrics, traces and logs: they watch the request flow, never sit in its way."""
