"""Continuous guide families (being written)."""

CONTINUOUS_GUIDES: dict = {}
