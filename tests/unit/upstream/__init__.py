"""Unit tests for mirror.upstream."""
