"""Unit tests for mirror.web."""
