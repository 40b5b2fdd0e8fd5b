"""The one poller: wait, bounded, until an observable says a condition holds; never a sleep.

`eventually` is for async tests (the event loop keeps serving the fakes while it waits);
`wait_until` is the same loop for the blocking code that drives real processes, where no event
loop runs. Both take a check that returns None (or False) while the condition does not hold and
anything else once it does, and give that back; both fail with `what` in the message.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

WITHIN = 10.0
INTERVAL = 0.01


class Deadline:
    """The bookkeeping both faces share: when to give up and what to say then."""

    def __init__(self, within: float, what: str) -> None:
        self.within = within
        self.what = what
        self.end = time.monotonic() + within

    def check(self, result: object) -> bool:
        """True when `result` says the condition holds; raises once the time is up."""
        if result is not None and result is not False:
            return True
        if time.monotonic() > self.end:
            raise AssertionError(f"{self.what}: not met within {self.within:g}s")
        return False


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    what: str = ...,
    interval: float = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T | None],
    *,
    within: float = ...,
    what: str = ...,
    interval: float = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    *,
    within: float = WITHIN,
    what: str = "condition",
    interval: float = INTERVAL,
) -> Any:
    """Poll `check` (sync or async) until it returns something other than None or False."""
    deadline = Deadline(within, what)
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if deadline.check(result):
            return result
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], T | None],
    *,
    within: float = WITHIN,
    what: str = "condition",
    interval: float = INTERVAL,
    alive: Callable[[], bool] | None = None,
) -> T:
    """The blocking face of `eventually`; `alive` going False (a process died) fails at once."""
    deadline = Deadline(within, what)
    while True:
        result = check()
        if deadline.check(result):
            assert result is not None
            return result
        if alive is not None and not alive():
            raise AssertionError(f"{what}: the process exited first")
        time.sleep(interval)
