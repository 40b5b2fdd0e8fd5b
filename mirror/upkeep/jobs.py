"""Long admin work (verify, gc, purge everything) as jobs that a client starts and then watches.

A single blocking HTTP call is cut by a reverse proxy's timeout long before a verify of a large
cache ends; a job answers at once and is polled instead. The registry owns the jobs' tasks: they
are cancelled and awaited when the mirror stops, so none outlives the stores it works on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mirror.errors import MirrorError, TooManyRequests

log = logging.getLogger(__name__)

HISTORY = 100  # finished jobs remembered; older ones are forgotten (404)
MAX_RUNNING = 8  # jobs at once: more is a client's loop, not an operator (429 TOOMANYREQUESTS)
RETRY_AFTER = 10  # seconds
ID_BYTES = 12  # 16 url-safe characters: not guessable, short enough to type

Progress = Callable[[int, int], None]
# What a job does: given a progress callback, the result it reports (a JSON object).
Work = Callable[[Progress], Awaitable[dict[str, Any]]]


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(slots=True)
class Job:
    id: str
    kind: str
    started: float
    state: JobState = JobState.RUNNING
    done: int = 0
    total: int | None = None  # unknown until the work says
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "progress": {"done": self.done, "total": self.total},
            "started": _iso(self.started),
            "finished": None if self.finished is None else _iso(self.finished),
            "result": self.result,
            "error": self.error,
        }


def _iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


class JobRegistry:
    """Running jobs and the last HISTORY finished ones, by id."""

    def __init__(self, clock: Callable[[], float] = time.time, history: int = HISTORY) -> None:
        self._clock = clock
        self._history = history
        self._jobs: dict[str, Job] = {}  # in the order they started
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the running ones
        self._finished: deque[str] = deque()  # ids, in the order they finished
        self._closed = False

    def start(self, kind: str, work: Work) -> Job:
        """Run `work` as a job now; the job is returned while it runs."""
        if self._closed:
            raise RuntimeError("the job registry is closed")
        if len(self._tasks) >= MAX_RUNNING:
            raise TooManyRequests(
                f"{len(self._tasks)} admin jobs are running; wait for one to finish", RETRY_AFTER
            )
        job = Job(secrets.token_urlsafe(ID_BYTES), kind, self._clock())
        task = asyncio.create_task(self._run(job, work), name=f"job {kind} {job.id}")
        self._jobs[job.id] = job
        self._tasks[job.id] = task
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        """Every running job and the remembered finished ones, newest first."""
        return list(reversed(self._jobs.values()))

    async def close(self) -> None:
        """Cancel the running jobs and wait for them to end (each is marked failed)."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, job: Job, work: Work) -> None:
        try:
            job.result = await work(job.progress)
            job.state = JobState.SUCCEEDED
        except asyncio.CancelledError:
            job.state, job.error = JobState.FAILED, "cancelled: the mirror stopped"
            raise
        except MirrorError as exc:  # a refusal the synchronous call would have answered
            job.state, job.error = JobState.FAILED, exc.message
        except Exception as exc:
            log.exception("%s job %s failed", job.kind, job.id)
            job.state, job.error = JobState.FAILED, f"internal error: {type(exc).__name__}"
        finally:
            job.finished = self._clock()
            del self._tasks[job.id]
            self._finished.append(job.id)
            while len(self._finished) > self._history:
                del self._jobs[self._finished.popleft()]
