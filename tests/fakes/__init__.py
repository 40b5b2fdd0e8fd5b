"""Test doubles that speak real HTTP on loopback: a fake Docker Hub and an injectable clock."""

from __future__ import annotations

from .clock import FakeClock
from .content import FakeImage
from .faults import Faults
from .hub import FakeHub, RecordedRequest

__all__ = ["FakeClock", "FakeHub", "FakeImage", "Faults", "RecordedRequest"]
