"""Unit tests for the pure code; the layout mirrors the `mirror` package."""
