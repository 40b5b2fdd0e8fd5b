"""A clock the tests move by hand, so TTLs and cool-downs pass without sleeping."""

from __future__ import annotations


class FakeClock:
    """Callable like `time.time`; only `advance` moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds
