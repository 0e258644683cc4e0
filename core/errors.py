"""Errors a person can fix. The CLI prints them as one message and exits 2, no traceback."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad config, name, path or store; raised before any MLflow run exists where possible."""
