"""The redirect memo (stores/s3_seen.py) on a clock the test moves: an object is trusted for
exactly `redirect_memo` seconds after a HEAD found it, forgotten at once when deleted through
this replica, and never trusted with the memo off (the default)."""

from __future__ import annotations

import pytest

from mirror.reference import Digest
from mirror.stores import s3_seen
from mirror.stores.s3_seen import SeenObjects

DIGEST = Digest.parse("sha256:" + "ab" * 32)
OTHER = Digest.parse("sha256:" + "cd" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_trusted_for_the_window_and_not_a_moment_longer() -> None:
    clock = Clock()
    seen = SeenObjects(2.0, clock)
    assert not seen.recent(DIGEST)
    seen.saw(DIGEST)
    clock.now += 1.999
    assert seen.recent(DIGEST)
    clock.now += 0.001  # 2 s after the HEAD: asked again
    assert not seen.recent(DIGEST)
    assert not seen.recent(DIGEST)


def test_a_delete_through_this_replica_forgets_at_once() -> None:
    seen = SeenObjects(30.0, Clock())
    seen.saw(DIGEST)
    seen.saw(OTHER)
    seen.forget(DIGEST)
    assert not seen.recent(DIGEST)
    assert seen.recent(OTHER)


def test_off_by_default_trusts_nothing() -> None:
    seen = SeenObjects(0.0, Clock())
    seen.saw(DIGEST)
    assert not seen.recent(DIGEST)


def test_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_seen, "MAX_ENTRIES", 2)
    seen = SeenObjects(30.0, Clock())
    digests = [Digest.parse("sha256:" + f"{n:02x}" * 32) for n in range(3)]
    for digest in digests:
        seen.saw(digest)
    assert [seen.recent(d) for d in digests] == [False, True, True]  # the oldest went first
