"""Unit tests for mirror.services."""
