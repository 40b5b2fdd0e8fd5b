"""UsageLedger's reservations: running fills count against the bound, stored bytes do not move."""

from __future__ import annotations

from mirror.stores.ledger import UsageLedger


def test_a_reservation_counts_against_the_bound_but_not_as_stored_bytes() -> None:
    ledger = UsageLedger(max_size=1000)
    ledger.reset(600, 3)
    ledger.reserve(300)
    assert (ledger.bytes, ledger.reserved) == (600, 300)
    assert not ledger.needs_room(100) and ledger.needs_room(101)
    assert not ledger.over_limit.is_set()  # the janitor's trigger is stored bytes only


def test_landing_moves_the_bytes_in_one_step_and_a_second_release_is_harmless() -> None:
    ledger = UsageLedger(max_size=1000)
    reservation = ledger.reserve(300)
    ledger.landed(300, reservation)
    assert (ledger.bytes, ledger.blobs, ledger.reserved) == (300, 1, 0)
    reservation.release()  # the fill's finally, after it landed
    assert ledger.reserved == 0


def test_a_failed_fill_gives_its_share_back_and_leaves_the_others() -> None:
    ledger = UsageLedger(max_size=1000)
    failed, running = ledger.reserve(200), ledger.reserve(300)
    failed.release()
    failed.release()
    assert ledger.reserved == 300
    running.release()
    assert (ledger.bytes, ledger.reserved) == (0, 0)
