"""Tabular guide families (being written)."""

TABULAR_GUIDES: dict = {}
