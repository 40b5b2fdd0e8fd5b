"""The store's totals in memory (bytes, blobs, over the bound?) and batched last-access times."""

from __future__ import annotations

import asyncio

from mirror.reference import Digest


class UsageLedger:
    """What the janitor reads to decide on eviction, kept without asking SQLite.

    Totals move only with rows (the blob keeper adds and subtracts what it wrote or deleted);
    `reserved` counts the announced sizes of running fills, whose temp files are on disk too,
    so that room is made when a fill starts rather than when it lands. Last-access times of
    hits are kept here and flushed in batches, which keeps SQLite off the hot path of a hit.
    """

    def __init__(self, max_size: int, low_water: float = 1.0, *, bounds_here: bool = True) -> None:
        self.max_size = max_size
        # False on a shared bucket: the bound is on the bucket, and one replica evicts from it
        # (upkeep/bucket_eviction.py); this replica's totals never make room or wake it.
        self._bounds_here = bounds_here
        # Eviction goes down to here, so that it does not run again for every new blob.
        self.eviction_target = int(max_size * low_water)
        self.bytes = 0
        self.blobs = 0
        self.reserved = 0  # bytes of running fills (their announced sizes), not yet rows
        self._accessed: dict[Digest, float] = {}
        self.over_limit = asyncio.Event()

    def reset(self, total_bytes: int, blobs: int) -> None:
        self.bytes, self.blobs = total_bytes, blobs
        self._check()

    def added(self, size: int) -> None:
        self.bytes += size
        self.blobs += 1
        self._check()

    def removed(self, size: int) -> None:
        self.bytes = max(0, self.bytes - size)
        self.blobs = max(0, self.blobs - 1)
        self._check()

    def needs_room(self, size: int) -> bool:
        """Storing `size` more bytes would cross the bound (running fills' bytes included)."""
        return (
            self._bounds_here
            and bool(self.max_size)
            and self.bytes + self.reserved + size > self.max_size
        )

    def reserve(self, size: int) -> Reservation:
        """Count a running fill's announced size against the bound until it lands or fails."""
        self.reserved += size
        return Reservation(self, size)

    def landed(self, size: int, reservation: Reservation | None) -> None:
        """A fill's blob is now a row: its bytes move from reserved to stored in one step."""
        if reservation is not None:
            reservation.release()
        self.added(size)

    def too_large(self, size: int) -> bool:
        """A blob larger than the whole bound is served to its readers, never stored."""
        return bool(self.max_size) and size > self.max_size

    def _check(self) -> None:
        if self._bounds_here and self.max_size and self.bytes > self.max_size:
            self.over_limit.set()
        else:
            self.over_limit.clear()

    def touch(self, digest: Digest, when: float) -> None:
        self._accessed[digest] = when

    def take_accessed(self) -> dict[Digest, float]:
        accessed, self._accessed = self._accessed, {}
        return accessed


class Reservation:
    """One running fill's share of `UsageLedger.reserved`; releasing it twice is harmless, so
    the fill can release it in a `finally` whether or not the blob landed."""

    def __init__(self, ledger: UsageLedger, size: int) -> None:
        self._ledger = ledger
        self.size = size

    def release(self) -> None:
        self._ledger.reserved -= self.size
        self.size = 0
